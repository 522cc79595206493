import type { LogChunk } from './execution-client.ts';

/**
 * Cuts a try's log output into numbered chunks for the Execution API: seq 1..n, each at most
 * `maxBytes` bytes of UTF-8 (cut on character boundaries), at most `maxChunks` of them. Output
 * beyond that budget is dropped after a visible marker line. A chunk whose send failed is put
 * back and sent again with the same seq: the log store keeps one copy per seq.
 */
export class LogChunker {
  readonly #maxBytes: number;
  readonly #maxChunks: number;
  readonly #marker: Buffer;
  #parts: Buffer[] = [];
  #bytes = 0;
  #nextSeq = 1;
  #truncated = false;
  readonly #resend: LogChunk[] = [];

  constructor(maxBytes: number, maxChunks: number) {
    this.#maxBytes = Math.max(1, maxBytes);
    this.#maxChunks = Math.max(1, maxChunks);
    const marker = Buffer.from(
      `\n[updraft] This try's log reached its limit (${this.#maxChunks} chunks of ${this.#maxBytes} bytes, set by UPDRAFT_LOG_MAX_BYTES): later output is dropped.\n`,
    );
    this.#marker = marker.subarray(0, Math.min(marker.length, Math.floor(this.#maxBytes / 2)));
  }

  get truncated(): boolean {
    return this.#truncated;
  }

  add(text: string): void {
    if (this.#truncated || text === '') return;
    // Keep no more than the chunks left can carry, plus one byte so the overflow is still seen.
    const room = (this.#maxChunks - this.#nextSeq + 1) * this.#maxBytes + 1 - this.#bytes;
    if (room <= 0) return;
    let bytes = Buffer.from(text, 'utf8');
    if (bytes.length > room) bytes = bytes.subarray(0, room);
    this.#parts.push(bytes);
    this.#bytes += bytes.length;
  }

  /** A full chunk (or one to send again) is waiting: the next heartbeat should go at once. */
  get backlog(): boolean {
    if (this.#resend.length > 0) return true;
    if (this.#truncated) return false;
    // The last chunk is held until it overflows (see take).
    return this.#nextSeq < this.#maxChunks ? this.#bytes >= this.#maxBytes : this.#bytes > this.#maxBytes;
  }

  /** Chunks still to send, counting the buffered text as the chunks it will become. */
  get pendingChunks(): number {
    const buffered = this.#truncated ? 0 : Math.ceil(this.#bytes / this.#maxBytes);
    return this.#resend.length + buffered;
  }

  /**
   * The next chunk, or undefined when there is nothing to send. The last chunk the budget allows
   * is held back until `final` (or until it overflows): only then is it known whether it needs
   * the truncation marker.
   */
  take(final: boolean): LogChunk | undefined {
    const resend = this.#resend.shift();
    if (resend) return resend;
    if (this.#truncated || this.#bytes === 0) return undefined;
    const seq = this.#nextSeq;
    if (seq < this.#maxChunks) {
      this.#nextSeq += 1;
      return { seq, text: this.#cut(this.#maxBytes) };
    }
    if (final && this.#bytes <= this.#maxBytes) {
      this.#nextSeq += 1;
      return { seq, text: this.#cut(this.#maxBytes) };
    }
    if (this.#bytes <= this.#maxBytes) return undefined;
    const text = this.#cut(this.#maxBytes - this.#marker.length) + this.#marker.toString('utf8');
    this.#truncated = true;
    this.#parts = [];
    this.#bytes = 0;
    this.#nextSeq += 1;
    return { seq, text };
  }

  /** A send failed: the chunk goes out again next, unchanged. */
  putBack(chunk: LogChunk): void {
    this.#resend.unshift(chunk);
  }

  /** Up to `limit` bytes from the front of the buffer, never splitting a UTF-8 character. */
  #cut(limit: number): string {
    const buffer = this.#parts.length === 1 ? (this.#parts[0] as Buffer) : Buffer.concat(this.#parts);
    let end = Math.min(limit, buffer.length);
    if (end < buffer.length) {
      while (end > 0 && ((buffer[end] as number) & 0xc0) === 0x80) end -= 1;
    }
    const rest = buffer.subarray(end);
    this.#parts = rest.length > 0 ? [rest] : [];
    this.#bytes = rest.length;
    return buffer.subarray(0, end).toString('utf8');
  }
}

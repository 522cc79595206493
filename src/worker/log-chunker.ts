import type { LogChunk } from './execution-client.ts';

/** A partial chunk goes out once this much new output waits (or the chunk is full, or stale). */
export const LOG_MIN_SEND_BYTES = 4 * 1024;

export interface LogChunkerOptions {
  /** The clock of the waits (the worker's), for `maxDelayMs`. */
  now?: () => number;
  /**
   * New output older than this goes out on the next take even when it is less than
   * `LOG_MIN_SEND_BYTES`: the bound on how late a slow task's lines show up. Absent: never.
   */
  maxDelayMs?: number;
}

/**
 * Cuts a try's log output into numbered chunks for the Execution API: seq 1..n, each at most
 * `maxBytes` bytes of UTF-8 (cut on character boundaries), at most `maxChunks` of them. The
 * budget is counted in bytes (`maxChunks × maxBytes`, UPDRAFT_LOG_MAX_BYTES rounded up to whole
 * chunks), never in calls: a chunk that is not full yet (the open chunk) is sent under its seq,
 * and sent again under the same seq, longer, as output arrives, until it is full and the next seq
 * opens. So a task that prints slowly spends no more seqs than one that prints fast. An update of
 * the open chunk goes out once `LOG_MIN_SEND_BYTES` of new output wait, once they waited
 * `maxDelayMs`, or at the end. Output beyond the budget is dropped after a visible marker line.
 * A full chunk whose send failed is put back and sent again with the same seq: the log store
 * keeps one copy per seq, the latest.
 */
export class LogChunker {
  readonly #maxBytes: number;
  readonly #maxChunks: number;
  readonly #marker: Buffer;
  readonly #now: () => number;
  readonly #maxDelayMs: number;
  readonly #minSendBytes: number;
  /** Output from the start of the open chunk (seq `#seq`) on; more than a chunk when full ones wait. */
  #parts: Buffer[] = [];
  #bytes = 0;
  /** Bytes of the open chunk sent already (its latest version the API has, as far as known). */
  #openSent = 0;
  /** When the oldest output not sent yet arrived. */
  #waitingSince: number | undefined;
  /** Bytes taken in, over the whole try: the budget counts these. */
  #accepted = 0;
  #seq = 1;
  #truncated = false;
  readonly #resend: LogChunk[] = [];

  constructor(maxBytes: number, maxChunks: number, options: LogChunkerOptions = {}) {
    this.#maxBytes = Math.max(1, maxBytes);
    this.#maxChunks = Math.max(1, maxChunks);
    this.#now = options.now ?? Date.now;
    this.#maxDelayMs = options.maxDelayMs ?? Infinity;
    this.#minSendBytes = Math.min(LOG_MIN_SEND_BYTES, this.#maxBytes);
    const marker = Buffer.from(
      `\n[updraft] This try's log reached its limit (${this.#maxChunks * this.#maxBytes} bytes in ${this.#maxChunks} chunks, set by UPDRAFT_LOG_MAX_BYTES): later output is dropped.\n`,
    );
    this.#marker = marker.subarray(0, Math.min(marker.length, Math.floor(this.#maxBytes / 2)));
  }

  get truncated(): boolean {
    return this.#truncated;
  }

  add(text: string): void {
    if (this.#truncated || text === '') return;
    // Keep no more than the budget, plus one byte so the overflow is still seen.
    const room = this.#maxChunks * this.#maxBytes + 1 - this.#accepted;
    if (room <= 0) return;
    let bytes = Buffer.from(text, 'utf8');
    if (bytes.length > room) bytes = bytes.subarray(0, room);
    this.#parts.push(bytes);
    this.#bytes += bytes.length;
    this.#accepted += bytes.length;
    this.#waitingSince ??= this.#now();
  }

  /** A full chunk (or one to send again) is waiting: the next heartbeat should go at once. */
  get backlog(): boolean {
    if (this.#resend.length > 0) return true;
    if (this.#truncated) return false;
    // The last chunk stays open (it may still need the marker): only its overflow is a backlog.
    return this.#seq < this.#maxChunks ? this.#isFull() : this.#bytes > this.#maxBytes;
  }

  /** Chunks still to send, counting the buffered text as the chunks it will become. */
  get pendingChunks(): number {
    const buffered = this.#truncated ? 0 : Math.ceil(this.#bytes / this.#maxBytes);
    return this.#resend.length + buffered;
  }

  /**
   * The next chunk, or undefined when there is nothing (yet) to send: a chunk to send again, a
   * full chunk (the next seq opens), or the open chunk when its update is due (see the class).
   * `final`: the try ended, the open chunk goes as it is.
   */
  take(final: boolean): LogChunk | undefined {
    const resend = this.#resend.shift();
    if (resend) return resend;
    if (this.#truncated || this.#bytes === 0) return undefined;
    const seq = this.#seq;
    if (seq === this.#maxChunks && this.#bytes > this.#maxBytes) {
      // Over the budget: the last chunk ends with the marker.
      const { text } = this.#cut(this.#maxBytes - this.#marker.length);
      this.#truncated = true;
      this.#setBuffer(Buffer.alloc(0));
      this.#closeOpen();
      return { seq, text: text + this.#marker.toString('utf8') };
    }
    if (seq < this.#maxChunks && this.#isFull()) {
      const { text, rest } = this.#cut(this.#maxBytes);
      this.#setBuffer(rest);
      this.#closeOpen();
      if (rest.length === 0) this.#waitingSince = undefined;
      return { seq, text };
    }
    const fresh = this.#bytes - this.#openSent;
    if (fresh <= 0) return undefined;
    const due =
      final ||
      fresh >= this.#minSendBytes ||
      (this.#waitingSince !== undefined && this.#now() - this.#waitingSince >= this.#maxDelayMs);
    if (!due) return undefined;
    this.#openSent = this.#bytes;
    this.#waitingSince = undefined;
    return { seq, text: this.#buffer().toString('utf8') };
  }

  /** A send failed: the chunk goes out again (a full one unchanged; the open one as it is then). */
  putBack(chunk: LogChunk): void {
    if (chunk.seq === this.#seq && !this.#truncated) {
      // The open chunk: not known to be stored, so its next take sends it whole, at once.
      this.#openSent = 0;
      this.#waitingSince = -Infinity;
      return;
    }
    this.#resend.unshift(chunk);
  }

  /** The API refused the chunk as too large: it is dropped, and the next seq opens. */
  drop(chunk: LogChunk): void {
    if (chunk.seq !== this.#seq || this.#truncated) return;
    const sentBytes = Buffer.byteLength(chunk.text, 'utf8');
    this.#setBuffer(this.#buffer().subarray(Math.min(sentBytes, this.#bytes)));
    this.#closeOpen();
    if (this.#bytes === 0) this.#waitingSince = undefined;
  }

  /** The open chunk holds a whole chunk's worth: it cannot grow any more. */
  #isFull(): boolean {
    return this.#bytes >= this.#maxBytes;
  }

  /** The buffered output as one Buffer (joined once, when a chunk is cut). */
  #buffer(): Buffer {
    if (this.#parts.length !== 1) this.#parts = [Buffer.concat(this.#parts)];
    return this.#parts[0] as Buffer;
  }

  #setBuffer(buffer: Buffer): void {
    this.#parts = buffer.length > 0 ? [buffer] : [];
    this.#bytes = buffer.length;
  }

  #closeOpen(): void {
    this.#seq += 1;
    this.#openSent = 0;
  }

  /** Up to `limit` bytes from the front of the buffer, never splitting a UTF-8 character. */
  #cut(limit: number): { text: string; rest: Buffer } {
    const buffer = this.#buffer();
    let end = Math.min(limit, buffer.length);
    if (end < buffer.length) {
      while (end > 0 && ((buffer[end] as number) & 0xc0) === 0x80) end -= 1;
    }
    return { text: buffer.subarray(0, end).toString('utf8'), rest: buffer.subarray(end) };
  }
}

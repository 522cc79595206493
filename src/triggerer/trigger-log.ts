/**
 * One trigger run's log: lines buffered and cut into numbered chunks (from 1, so the API keeps one
 * copy of a repeat), each at most `chunkMaxBytes` UTF-8 bytes. Full chunks and periodic flushes
 * go out through `ship` (the logs route); the rest rides on the final event or failure. A run's
 * log is bounded by `maxBytes`: later lines are dropped after one notice.
 */

export const DEFAULT_TRIGGER_LOG_CHUNK_BYTES = 64 * 1024;
export const DEFAULT_TRIGGER_LOG_MAX_BYTES = 5 * 1024 * 1024;

export interface TriggerLogChunk {
  seq: number;
  text: string;
}

export interface TriggerLogOptions {
  now: () => number;
  ship: (chunk: TriggerLogChunk) => void;
  chunkMaxBytes?: number | undefined;
  maxBytes?: number | undefined;
}

export class TriggerLog {
  readonly #now: () => number;
  readonly #ship: (chunk: TriggerLogChunk) => void;
  readonly #chunkMaxBytes: number;
  readonly #maxBytes: number;
  #buffer = '';
  #bufferBytes = 0;
  #totalBytes = 0;
  #nextSeq = 1;
  #full = false;
  #closed = false;

  constructor(options: TriggerLogOptions) {
    this.#now = options.now;
    this.#ship = options.ship;
    this.#chunkMaxBytes = options.chunkMaxBytes ?? DEFAULT_TRIGGER_LOG_CHUNK_BYTES;
    this.#maxBytes = options.maxBytes ?? DEFAULT_TRIGGER_LOG_MAX_BYTES;
  }

  /** Appends one line, `[time] {LEVEL} text`; ignored once the log is closed or full. */
  write(level: string, text: string): void {
    if (this.#closed || this.#full) return;
    let line = `[${new Date(this.#now()).toISOString()}] {${level}} ${text}\n`;
    let bytes = Buffer.byteLength(line);
    if (bytes > this.#chunkMaxBytes) {
      // A character is at most 4 bytes: this many always fit, with the marker.
      line = `${line.slice(0, Math.floor(this.#chunkMaxBytes / 4) - 20)}… [line cut]\n`;
      bytes = Buffer.byteLength(line);
    }
    if (this.#totalBytes + bytes > this.#maxBytes) {
      this.#full = true;
      line = `[updraft] This trigger's log reached ${this.#maxBytes} bytes: later lines are dropped\n`;
      bytes = Buffer.byteLength(line);
    }
    if (this.#bufferBytes + bytes > this.#chunkMaxBytes) this.flush();
    this.#buffer += line;
    this.#bufferBytes += bytes;
    this.#totalBytes += bytes;
  }

  /** Ships the buffered lines as one chunk, if any. */
  flush(): void {
    const chunk = this.#take();
    if (chunk) this.#ship(chunk);
  }

  /** The buffered lines as the last chunk, for the final report; closes the log. */
  final(): { log?: TriggerLogChunk } {
    const chunk = this.#take();
    this.#closed = true;
    return chunk ? { log: chunk } : {};
  }

  /** Drops the buffered lines and closes the log. */
  discard(): void {
    this.#buffer = '';
    this.#bufferBytes = 0;
    this.#closed = true;
  }

  #take(): TriggerLogChunk | undefined {
    if (this.#buffer === '') return undefined;
    const chunk = { seq: this.#nextSeq, text: this.#buffer };
    this.#nextSeq += 1;
    this.#buffer = '';
    this.#bufferBytes = 0;
    return chunk;
  }
}

import {
  type BatchCall,
  type BatchResult,
  EXECUTION_API_VERSION_HEADER,
  EXECUTION_BATCH_PATH,
  executionBatchResultsSchema,
  isBatchableCall,
  REFRESHED_TOKEN_HEADER,
  TASK_TOKEN_PATTERN,
} from '#contracts/execution-api.ts';
import type { Logger } from '#engine/logger.ts';

/** How long batching stays off after the API answered that it has no batch route. */
export const BATCH_ROUTE_RETRY_MS = 5 * 60_000;
/** What a batch's body adds to its calls' own bodies, per call and once. */
const CALL_ENVELOPE_BYTES = 64;
const BATCH_ENVELOPE_BYTES = 1024;

export interface ExecutionBatcherOptions {
  /** Where every request goes: each batch, and each call that leaves alone. */
  fetch: typeof fetch;
  /** The Execution API's base URL, as the HTTP client prefixes each path with it. */
  baseUrl: string;
  /** Most calls one batch carries (UPDRAFT_EXECUTION_BATCH_MAX_CALLS); 1 sends every call alone. */
  maxCalls: number;
  /** How long a call waits for others (UPDRAFT_EXECUTION_BATCH_WINDOW_MS). */
  windowMs: number;
  /** Largest request body the API takes (UPDRAFT_REQUEST_MAX_BYTES): a batch stays under it. */
  requestMaxBytes: number;
  /**
   * How many calls could be waiting at most right now (the workloads in progress): a batch leaves
   * at once when that many wait, instead of at the end of the window.
   */
  callers?: () => number;
  now?: () => number;
  /** Starts the window's timer (default `setTimeout`); returns its cancel. */
  setTimer?: (ms: number, fire: () => void) => () => void;
  log?: Pick<Logger, 'warn'>;
}

interface Pending {
  call: BatchCall;
  bytes: number;
  /** The call as the client made it, to send alone. */
  input: string;
  init: RequestInit;
  resolve(response: Response): void;
  reject(error: unknown): void;
  done: boolean;
}

/**
 * A `fetch` for the worker's Execution API client that sends the start, heartbeat and report
 * calls of the workloads in progress together, as one `POST /execution/batch`, and hands each
 * caller the answer its call got, as if it had been sent alone: the client's timeouts, retries
 * and error handling are unchanged, and a retry goes through here again. Calls leave when
 * `maxCalls` wait, when every workload in progress waits on one, or `windowMs` after the first.
 * A batch's failure is each of its calls' failure (a network error or a 5xx, retried by the
 * client); a batch the API refuses whole (no batch route, too large, too many calls) is sent
 * again one call a request. Any other request passes through.
 */
export class ExecutionBatcher {
  readonly #options: ExecutionBatcherOptions;
  readonly #now: () => number;
  #waiting: Pending[] = [];
  #cancelTimer: (() => void) | undefined;
  /** Until when batching is off (the API has no batch route). */
  #offUntil = 0;
  /** Most calls a batch takes until `#capUntil`, after the API refused a batch as too large. */
  #cap = Number.POSITIVE_INFINITY;
  #capUntil = 0;

  readonly #setTimer: (ms: number, fire: () => void) => () => void;

  constructor(options: ExecutionBatcherOptions) {
    this.#options = { ...options, baseUrl: options.baseUrl.replace(/\/$/, '') };
    this.#now = options.now ?? Date.now;
    this.#setTimer =
      options.setTimer ??
      ((ms, fire) => {
        const timer = setTimeout(fire, ms);
        return () => clearTimeout(timer);
      });
  }

  readonly fetch: typeof fetch = (input, init = {}) => {
    const pending = this.#batchable(input, init);
    if (!pending) return this.#options.fetch(input, init);
    return new Promise<Response>((resolve, reject) => {
      const signal = init.signal;
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = () => {
        if (entry.done) return;
        this.#waiting = this.#waiting.filter((waiting) => waiting !== entry);
        entry.reject(signal?.reason);
      };
      const settle = () => {
        entry.done = true;
        signal?.removeEventListener('abort', onAbort);
      };
      const entry: Pending = {
        ...pending,
        resolve: (response) => {
          if (entry.done) return;
          settle();
          resolve(response);
        },
        reject: (error) => {
          if (entry.done) return;
          settle();
          reject(error);
        },
        done: false,
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#add(entry);
    });
  };

  /** Sends what waits if every caller now waits (call it when a workload ends). */
  check(): void {
    if (this.#waiting.length > 0 && this.#allWait()) this.#flush();
  }

  #allWait(): boolean {
    const callers = this.#options.callers?.();
    return callers !== undefined && this.#waiting.length >= callers;
  }

  #batchable(
    input: string | URL | Request,
    init: RequestInit,
  ): Omit<Pending, 'resolve' | 'reject' | 'done'> | undefined {
    if (this.#maxCalls() < 2 || this.#now() < this.#offUntil) return undefined;
    if (typeof input !== 'string' || !input.startsWith(this.#options.baseUrl)) return undefined;
    const path = input.slice(this.#options.baseUrl.length);
    const method = (init.method ?? 'GET').toUpperCase();
    if (method !== 'PATCH' && method !== 'PUT') return undefined;
    if (!isBatchableCall(method, path) || typeof init.body !== 'string') return undefined;
    const authorization = new Headers(init.headers).get('authorization') ?? '';
    if (!authorization.startsWith('Bearer ')) return undefined;
    const token = authorization.slice('Bearer '.length);
    // A token the batch route would refuse (and its whole batch with it) goes alone.
    if (!TASK_TOKEN_PATTERN.test(token)) return undefined;
    const bytes = Buffer.byteLength(init.body) + token.length + path.length + CALL_ENVELOPE_BYTES;
    // A large call (an XCom, a long log chunk) leaves alone rather than crowd out the others.
    if (bytes > this.#maxBatchBytes() / 2) return undefined;
    let body: unknown;
    try {
      body = JSON.parse(init.body);
    } catch {
      return undefined;
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) return undefined;
    return { call: { method, path, token, body: body as Record<string, unknown> }, bytes, input, init };
  }

  #maxCalls(): number {
    return this.#now() < this.#capUntil
      ? Math.min(this.#cap, this.#options.maxCalls)
      : this.#options.maxCalls;
  }

  #maxBatchBytes(): number {
    return this.#options.requestMaxBytes - BATCH_ENVELOPE_BYTES;
  }

  #add(entry: Pending): void {
    const bytes = this.#waiting.reduce((sum, waiting) => sum + waiting.bytes, 0);
    if (bytes + entry.bytes > this.#maxBatchBytes()) this.#flush();
    this.#waiting.push(entry);
    if (this.#waiting.length >= this.#maxCalls() || this.#allWait()) {
      this.#flush();
      return;
    }
    this.#cancelTimer ??= this.#setTimer(this.#options.windowMs, () => this.#flush());
  }

  #flush(): void {
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    const waiting = this.#waiting.filter((entry) => !entry.done);
    this.#waiting = [];
    // The cap may have dropped while these waited (a refused batch): no batch goes over it.
    const size = Math.max(1, this.#maxCalls());
    for (let start = 0; start < waiting.length; start += size) {
      const batch = waiting.slice(start, start + size);
      if (batch.length === 1) this.#alone(batch[0] as Pending);
      else void this.#send(batch);
    }
  }

  /** One call sent as the client made it. */
  #alone(entry: Pending): void {
    try {
      this.#options.fetch(entry.input, entry.init).then(entry.resolve, entry.reject);
    } catch (error) {
      entry.reject(error);
    }
  }

  /** Sends a batch; whatever happens, every one of its calls is settled. */
  async #send(batch: Pending[]): Promise<void> {
    try {
      await this.#sendBatch(batch);
    } catch (error) {
      for (const entry of batch) entry.reject(error);
    }
  }

  async #sendBatch(batch: Pending[]): Promise<void> {
    // The batch is abandoned only when every caller gave up on it.
    const abandon = new AbortController();
    const signals = batch.map((entry) => entry.init.signal).filter((signal) => signal != null);
    const check = () => {
      if (signals.every((signal) => signal.aborted)) abandon.abort(signals[0]?.reason);
    };
    const watched = signals.length === batch.length ? signals : [];
    for (const signal of watched) signal.addEventListener('abort', check, { once: true });
    try {
      await this.#exchange(batch, abandon.signal);
    } finally {
      for (const signal of watched) signal.removeEventListener('abort', check);
    }
  }

  async #exchange(batch: Pending[], signal: AbortSignal): Promise<void> {
    const first = new Headers(batch[0]?.init.headers);
    const version = first.get(EXECUTION_API_VERSION_HEADER);
    let response: Response;
    let text: string;
    try {
      response = await this.#options.fetch(`${this.#options.baseUrl}${EXECUTION_BATCH_PATH}`, {
        method: 'POST',
        headers: {
          accept: 'application/json',
          'content-type': 'application/json',
          ...(version ? { [EXECUTION_API_VERSION_HEADER]: version } : {}),
        },
        body: JSON.stringify({ calls: batch.map((entry) => entry.call) }),
        signal,
      });
      text = await response.text();
    } catch (error) {
      for (const entry of batch) entry.reject(error);
      return;
    }
    if (response.status === 404 || response.status === 405) {
      this.#offUntil = this.#now() + BATCH_ROUTE_RETRY_MS;
      this.#options.log?.warn(
        `The Execution API has no batch route (${response.status}): calls go one a request for ${BATCH_ROUTE_RETRY_MS / 60_000} minutes`,
      );
      for (const entry of batch) this.#alone(entry);
      return;
    }
    if (response.status === 413 || response.status === 422) {
      // Its limits are below this worker's: batches stay under half this one's size for a while.
      const halved = Math.floor(batch.length / 2);
      this.#cap = this.#now() < this.#capUntil ? Math.min(this.#cap, halved) : halved;
      this.#capUntil = this.#now() + BATCH_ROUTE_RETRY_MS;
      this.#options.log?.warn(
        `The Execution API refused a batch of ${batch.length} calls (${response.status}: ${text.slice(0, 300)}); they go one a request, and batches take at most ${this.#cap} calls for ${BATCH_ROUTE_RETRY_MS / 60_000} minutes`,
      );
      for (const entry of batch) this.#alone(entry);
      return;
    }
    if (response.status !== 200) {
      // The batch's answer is each call's: the client retries a 5xx or a 429 as usual.
      for (const entry of batch)
        entry.resolve(new Response(text, { status: response.status, headers: response.headers }));
      return;
    }
    const results = resultsOf(text, batch.length);
    if (!results) {
      // Calls may have been applied: sent again, each is answered as a repeat (start id, report id).
      this.#options.log?.warn('The answer to a batch of calls could not be read; they go one a request');
      for (const entry of batch) this.#alone(entry);
      return;
    }
    batch.forEach((entry, index) => {
      const result = results[index] as BatchResult;
      // Applied, but its answer did not fit in the batch's: alone, it is answered again.
      if (result.send_alone === true) {
        this.#alone(entry);
        return;
      }
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (result.refreshed_token) headers[REFRESHED_TOKEN_HEADER] = result.refreshed_token;
      entry.resolve(new Response(JSON.stringify(result.body ?? null), { status: result.status, headers }));
    });
  }
}

/** The batch's results as the contract describes them, one per call, each with a status an answer can have. */
function resultsOf(text: string, count: number): BatchResult[] | undefined {
  let parsed: ReturnType<typeof executionBatchResultsSchema.safeParse>;
  try {
    parsed = executionBatchResultsSchema.safeParse(JSON.parse(text));
  } catch {
    return undefined;
  }
  if (!parsed.success || parsed.data.results.length !== count) return undefined;
  return parsed.data.results.every((result) => isAnswerStatus(result.status))
    ? parsed.data.results
    : undefined;
}

/** A status a call's answer can carry with a body (and `Response` can be made with). */
function isAnswerStatus(status: number): boolean {
  return status >= 200 && status <= 599 && status !== 204 && status !== 205 && status !== 304;
}

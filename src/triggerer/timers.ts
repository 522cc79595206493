import { TimedHeap } from '#queue/timed-heap.ts';

/**
 * One timer structure for every sleeping trigger of a triggerer: a min-heap of wake-up times and
 * one armed `setTimeout`, for the earliest. 100,000 sleeping triggers cost 100,000 heap entries
 * and one timer, not 100,000 timers. An aborted sleep rejects at once and its entry is skipped
 * when it reaches the top (the heap is compacted when dead entries outnumber live ones).
 */

/** setTimeout's largest delay: a longer one fires after 1 ms instead, so long waits are re-armed. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** Dead entries tolerated before a compaction is considered. */
const COMPACT_MIN_DEAD = 1_024;

export interface TimerHost {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const systemTimerHost: TimerHost = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

interface Sleeper {
  resolve: () => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  settled: boolean;
}

export interface TriggerTimersOptions {
  /** Epoch ms. */
  now?: () => number;
  host?: TimerHost;
}

export class TriggerTimers {
  readonly #heap = new TimedHeap<Sleeper>();
  readonly #now: () => number;
  readonly #host: TimerHost;
  #armed: { at: number; handle: unknown } | undefined;
  #live = 0;
  #dead = 0;

  constructor(options: TriggerTimersOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#host = options.host ?? systemTimerHost;
  }

  /** Sleeps not yet over nor aborted. */
  get pending(): number {
    return this.#live;
  }

  /** When the armed timer is meant for (the earliest live entry), undefined when none is armed. */
  get armedAt(): number | undefined {
    return this.#armed?.at;
  }

  /**
   * Resolves once the clock reaches `atMs` (epoch ms), on a timer turn even when `atMs` has
   * passed, so a trigger sleeping in a loop cannot starve the event loop with microtasks. Rejects
   * with the signal's reason when `signal` aborts first.
   */
  sleepUntil(atMs: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const sleeper: Sleeper = { resolve, reject, signal, onAbort: undefined, settled: false };
      if (signal) {
        sleeper.onAbort = () => this.#abort(sleeper);
        // Removed when the sleep settles, however it settles.
        signal.addEventListener('abort', sleeper.onAbort);
      }
      this.#live += 1;
      this.#heap.push(Number.isFinite(atMs) ? atMs : Number.MAX_SAFE_INTEGER, sleeper);
      this.#arm();
    });
  }

  /** Rejects every pending sleep with `reason` and disarms the timer. */
  close(reason: unknown = new Error('The trigger timers are closed')): void {
    for (let entry = this.#heap.pop(); entry; entry = this.#heap.pop()) {
      if (!entry.value.settled) this.#settle(entry.value, false, reason);
    }
    this.#dead = 0;
    this.#disarm();
  }

  #abort(sleeper: Sleeper): void {
    if (sleeper.settled) return;
    this.#settle(sleeper, false, sleeper.signal?.reason);
    this.#dead += 1;
    if (this.#live === 0) {
      this.#heap.retain(() => false);
      this.#dead = 0;
      this.#disarm();
    } else if (this.#dead >= COMPACT_MIN_DEAD && this.#dead > this.#live) {
      this.#heap.retain((entry) => !entry.settled);
      this.#dead = 0;
    }
  }

  #settle(sleeper: Sleeper, woke: boolean, reason?: unknown): void {
    sleeper.settled = true;
    this.#live -= 1;
    if (sleeper.onAbort) sleeper.signal?.removeEventListener('abort', sleeper.onAbort);
    if (woke) sleeper.resolve();
    else sleeper.reject(reason);
  }

  readonly #fire = (): void => {
    this.#armed = undefined;
    const now = this.#now();
    for (let top = this.#heap.peek(); top; top = this.#heap.peek()) {
      if (!top.value.settled && top.at > now) break;
      this.#heap.pop();
      if (top.value.settled) this.#dead -= 1;
      else this.#settle(top.value, true);
    }
    this.#arm();
  };

  /** Arms the one timer for the earliest live entry, unless it is armed for that time or earlier. */
  #arm(): void {
    let top = this.#heap.peek();
    while (top?.value.settled) {
      this.#heap.pop();
      this.#dead -= 1;
      top = this.#heap.peek();
    }
    if (!top) {
      this.#disarm();
      return;
    }
    if (this.#armed && this.#armed.at <= top.at) return;
    this.#disarm();
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, top.at - this.#now()));
    // A wait longer than one timer can hold fires early, finds nothing due, and arms again.
    this.#armed = { at: top.at, handle: this.#host.setTimeout(this.#fire, delay) };
  }

  #disarm(): void {
    if (!this.#armed) return;
    this.#host.clearTimeout(this.#armed.handle);
    this.#armed = undefined;
  }
}

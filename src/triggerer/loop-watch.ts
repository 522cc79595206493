import { performance } from 'node:perf_hooks';
import type { Logger } from '#engine/logger.ts';
import type { Metrics } from '#metrics/port.ts';

/**
 * Finds triggers that hold the triggerer's one event loop, stalling every other trigger. Two
 * ways: the runner times the synchronous part of each step it starts (`step`), which names the
 * trigger; and a periodic lag check catches a block after an `await` inside a trigger, where no
 * step is being timed, naming the triggers that resumed in that window. A block is counted once
 * (`triggers.blocked_main_thread`): a lag that a timed step already explains is not counted again.
 */

const MAX_SUSPECTS = 5;

export interface LoopWatchOptions {
  thresholdMs: number;
  log: Logger;
  metrics?: Metrics | undefined;
  /** Monotonic ms (default `performance.now`). */
  monotonic?: (() => number) | undefined;
  /** Period of the lag check (default: half the threshold, within 10–1,000 ms). */
  intervalMs?: number | undefined;
  /**
   * True while no trigger runs: a lag then, with no trigger resumed in it, is the triggerer's own
   * work (its start, a large answer, garbage collection), logged at info and not counted.
   */
  idle?: (() => boolean) | undefined;
}

export class LoopWatch {
  readonly #options: LoopWatchOptions;
  readonly #monotonic: () => number;
  readonly #interval: ReturnType<typeof setInterval>;
  #count = 0;
  /** When the last timed step over the threshold ended. */
  #lastNamedBlockAt = Number.NEGATIVE_INFINITY;
  #lastCheckAt: number;
  /** Triggers whose code resumed since the last check: the suspects of an unnamed block. */
  #resumed = new Set<string>();

  constructor(options: LoopWatchOptions) {
    this.#options = options;
    this.#monotonic = options.monotonic ?? (() => performance.now());
    const intervalMs =
      options.intervalMs ?? Math.min(1_000, Math.max(10, Math.floor(options.thresholdMs / 2)));
    this.#lastCheckAt = this.#monotonic();
    this.#interval = setInterval(() => this.#check(intervalMs), intervalMs);
    this.#interval.unref();
  }

  /** Blocks found so far. */
  get count(): number {
    return this.#count;
  }

  now(): number {
    return this.#monotonic();
  }

  /** A timed synchronous step of `trigger`; true (logged and counted) when it held the loop too long. */
  step(trigger: string, heldMs: number): boolean {
    if (heldMs <= this.#options.thresholdMs) return false;
    this.#lastNamedBlockAt = this.#monotonic();
    this.#counted();
    const ms = Math.round(heldMs);
    this.#options.log.warn(`Trigger ${trigger} held the event loop for ${ms} ms`, {
      trigger,
      blockedMs: ms,
      thresholdMs: this.#options.thresholdMs,
    });
    return true;
  }

  /** `trigger`'s code runs again now (a step starts, a sleep ends). */
  resumed(trigger: string): void {
    if (this.#resumed.size < MAX_SUSPECTS) this.#resumed.add(trigger);
  }

  close(): void {
    clearInterval(this.#interval);
  }

  #check(intervalMs: number): void {
    const now = this.#monotonic();
    const previous = this.#lastCheckAt;
    const lagMs = now - previous - intervalMs;
    const suspects = [...this.#resumed];
    this.#lastCheckAt = now;
    this.#resumed.clear();
    if (lagMs <= this.#options.thresholdMs || this.#lastNamedBlockAt >= previous) return;
    if (suspects.length === 0 && this.#options.idle?.()) {
      this.#options.log.info(
        `The triggerer's event loop was held for ${Math.round(lagMs)} ms with no trigger running (its own work)`,
        { blockedMs: Math.round(lagMs), thresholdMs: this.#options.thresholdMs },
      );
      return;
    }
    this.#counted();
    this.#options.log.warn(`The triggerer's event loop was blocked for ${Math.round(lagMs)} ms`, {
      blockedMs: Math.round(lagMs),
      thresholdMs: this.#options.thresholdMs,
      ...(suspects.length > 0 ? { resumedTriggers: suspects } : {}),
      ...(suspects.length === 1 ? { trigger: suspects[0] } : {}),
    });
  }

  #counted(): void {
    this.#count += 1;
    this.#options.metrics?.increment('triggers.blocked_main_thread');
  }
}

import type { SlotPoolState } from '#store/port.ts';

/**
 * The passes of one batch (one invocation's scheduling requests, or one tick) take turns on each
 * pool: a pass reserves in a pool only after the one before it in this process has written, and
 * starts from the state that write returned. Without turns, passes of different runs in one batch
 * race on the same pool item, and every lost race is a conditional write DynamoDB bills by the
 * whole item (a busy pool's is several KB) plus a read to try again. Only an optimization: passes
 * of other instances still race, and every write stays conditional, so a state remembered here
 * that another instance has since changed costs one failed write, never a wrong admission.
 */
export class PoolTurns {
  readonly #tails = new Map<string, Promise<unknown>>();
  readonly #latest = new Map<string, SlotPoolState>();

  /** Runs `work` once the turns taken on `pool` before it have ended. */
  async take<T>(pool: string, work: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(pool) ?? Promise.resolve();
    const turn = before.then(work, work);
    const tail = turn.catch(() => undefined);
    this.#tails.set(pool, tail);
    try {
      return await turn;
    } finally {
      if (this.#tails.get(pool) === tail) this.#tails.delete(pool);
    }
  }

  /** The last state of `pool` read or written in this batch. */
  latest(pool: string): SlotPoolState | undefined {
    return this.#latest.get(pool);
  }

  seen(pool: string, state: SlotPoolState): void {
    this.#latest.set(pool, state);
  }
}

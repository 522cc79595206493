/**
 * The passes of one batch (one invocation's scheduling requests, or one tick) take turns on each
 * pool: one pass at a time reads and writes it, so the passes of a batch no longer race each
 * other on the same pool item. Every lost race was a conditional write that DynamoDB bills by the
 * whole item (a busy pool's is several KB), and a read to try again.
 *
 * Turns are numbered per pool. A pass starts a turn from a pool state it read or wrote itself
 * (after its read of the run's head, so it sees every holder the run's item lists) only when no
 * other turn came between (the state is as of the turn before: `asOf === turn - 1`; a read made
 * while a turn was under way is as of none); otherwise it reads the pool again in its turn. So a
 * pass never plans from a state another pass saw, and one reserving in rounds reads the pool
 * once unless other passes' turns come between its rounds. Only an optimization: passes of other
 * instances still race, and every write stays conditional on what the pass read.
 */
export class PoolTurns {
  readonly #tails = new Map<string, Promise<unknown>>();
  readonly #turns = new Map<string, number>();

  /** The number of the last turn begun on `pool` (0 before the first). */
  turn(pool: string): number {
    return this.#turns.get(pool) ?? 0;
  }

  /** Whether no turn on `pool` is under way or waiting: a read now is as of `turn(pool)`. */
  idle(pool: string): boolean {
    return !this.#tails.has(pool);
  }

  /** Runs `work` with its turn's number once the turns taken on `pool` before it have ended. */
  async take<T>(pool: string, work: (turn: number) => Promise<T>): Promise<T> {
    const before = this.#tails.get(pool) ?? Promise.resolve();
    const begin = () => {
      const turn = this.turn(pool) + 1;
      this.#turns.set(pool, turn);
      return work(turn);
    };
    const running = before.then(begin, begin);
    const tail = running.catch(() => undefined);
    this.#tails.set(pool, tail);
    try {
      return await running;
    } finally {
      if (this.#tails.get(pool) === tail) this.#tails.delete(pool);
    }
  }
}

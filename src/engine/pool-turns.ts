/**
 * The passes of one batch (one invocation's scheduling requests, or one tick) take turns on each
 * pool: a pass reads the pool and writes its change in its turn, so it finds the pool as the
 * passes before it in this process left it. Without turns, the passes of a batch race on the same
 * pool item, and every lost race is a conditional write DynamoDB bills by the whole item (a busy
 * pool's is several KB) plus a read to try again; a read in the turn costs a quarter of a failed
 * write. Only an optimization: passes of other instances still race, and every write stays
 * conditional on what the pass read.
 */
export class PoolTurns {
  readonly #tails = new Map<string, Promise<unknown>>();

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
}

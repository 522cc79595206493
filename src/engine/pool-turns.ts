import type { SlotPoolState } from '#store/port.ts';

/**
 * The passes of one batch (one invocation's scheduling requests, or one tick) take turns on each
 * pool: one pass at a time reads and writes it, so the passes of a batch no longer race each
 * other on the same pool item. Every lost race was a conditional write that DynamoDB bills by the
 * whole item (a busy pool's is several KB), and a read to try again.
 *
 * Turns are numbered per pool. A pass starts a turn from a pool state it read or wrote itself
 * (after its read of the run's head, so it sees every holder the run's item lists) only when no
 * other turn came between (the state is as of the turn before: `asOf === turn - 1`; a read made
 * while a turn was under way is as of none); otherwise, in its turn, it starts from the state
 * the turn before it left, or reads the pool. A turn hands on the state it left (what its write
 * returned, or what it started from and left as it was) with when the request that produced it
 * was sent; the next pass starts from it only if that request left after the pass's read of its
 * run's head came back (then it shows every holder the head lists: a pool holder is taken before
 * a run lists it), and no give-back outside the turns (`releaseOwned`) has changed the pool since.
 * So one reserving in rounds reads the pool once, and a batch's passes read a busy pool about
 * half as often as one read each. Only an optimization: passes of other instances still race,
 * and every write stays conditional on what the pass read (a lost race reads again).
 */
/** A pool's state, and when (`performance.now()`) the request that returned it was sent. */
export interface PoolStateSeen {
  state: SlotPoolState;
  sentAt: number;
}

export class PoolTurns {
  readonly #tails = new Map<string, Promise<unknown>>();
  readonly #turns = new Map<string, number>();
  readonly #left = new Map<string, { turn: number; seen: PoolStateSeen }>();

  /** The number of the last turn begun on `pool` (0 before the first). */
  turn(pool: string): number {
    return this.#turns.get(pool) ?? 0;
  }

  /** Whether no turn on `pool` is under way or waiting: a read now is as of `turn(pool)`. */
  idle(pool: string): boolean {
    return !this.#tails.has(pool);
  }

  /** Records the state of `pool` as turn `turn` leaves it. */
  leave(pool: string, turn: number, seen: PoolStateSeen): void {
    this.#left.set(pool, { turn, seen });
  }

  /**
   * A write outside the turns (a give-back) is changing the pool: the state the last turn left is
   * dropped, and the turn count moves on, so every state read or left before now counts as stale
   * (`asOf` and `leftBefore` compare turn numbers). Called before such a write and after it.
   */
  forget(pool: string): void {
    this.#left.delete(pool);
    this.#turns.set(pool, this.turn(pool) + 1);
  }

  /**
   * The state the turn right before `turn` left `pool` in, if it recorded one produced by a
   * request sent at `notBefore` or later (`performance.now()`).
   */
  leftBefore(pool: string, turn: number, notBefore: number): PoolStateSeen | undefined {
    const left = this.#left.get(pool);
    return left?.turn === turn - 1 && left.seen.sentAt >= notBefore ? left.seen : undefined;
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

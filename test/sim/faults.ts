import type { ExecutorFaults } from './ledger.ts';
import type { Prng } from './prng.ts';
import type { MessageFaults } from './sim-queue.ts';

/** Fault rates of one seed, drawn from its PRNG; all zero in the heal phase. */
export interface FaultProfile extends ExecutorFaults {
  messages: MessageFaults;
  /** API call answered 503 before reaching the router. */
  api503: number;
  /** Connection dropped after the router handled the call: the store changed, the caller sees an error. */
  apiDrop: number;
  /** The platform freezes an invocation once it returned: sends it did not await are lost. */
  freezeAfterReturn: number;
  /** A store write (a batch write) held back for up to `slowMaxMs` of sim time. */
  slowWrite: number;
  slowBatchWrite: number;
  slowMaxMs: number;
  /** At a time advance: the clock jumps up to `clockJumpMaxMs` further. */
  clockJump: number;
  clockJumpMaxMs: number;
  clears: number;
  pauses: number;
}

export const NO_FAULTS: FaultProfile = {
  messages: { lose: 0, duplicate: 0, delay: 0, delayMaxMs: 0, reorder: 0, refuse: 0 },
  api503: 0,
  apiDrop: 0,
  freezeAfterReturn: 0,
  slowWrite: 0,
  slowBatchWrite: 0,
  slowMaxMs: 0,
  clockJump: 0,
  clockJumpMaxMs: 0,
  killMidTask: 0,
  killBeforeReport: 0,
  clears: 0,
  pauses: 0,
};

/** One seed in eight runs calm (no faults): the baseline must hold too. */
export function drawFaults(prng: Prng): FaultProfile {
  if (prng.chance(1 / 8)) return NO_FAULTS;
  const rate = (max: number) => (prng.chance(0.75) ? prng.next() * max : 0);
  return {
    messages: {
      lose: rate(0.1),
      duplicate: rate(0.15),
      delay: rate(0.2),
      delayMaxMs: 5_000,
      reorder: rate(0.6),
      refuse: rate(0.05),
    },
    api503: rate(0.12),
    apiDrop: rate(0.08),
    freezeAfterReturn: rate(0.6),
    slowWrite: rate(0.08),
    slowBatchWrite: rate(0.5),
    slowMaxMs: prng.range(500, 3_000),
    clockJump: rate(0.05),
    clockJumpMaxMs: 2_500,
    killMidTask: rate(0.08),
    killBeforeReport: rate(0.08),
    clears: prng.range(0, 3),
    pauses: prng.range(0, 2),
  };
}

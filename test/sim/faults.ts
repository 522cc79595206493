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
  triggerers: TriggererFaults;
}

/** Faults of the triggerers and of what they send (drawn from a stream of their own). */
export interface TriggererFaults {
  /** Triggerers stopped during the fault phase (each replaced by a new one a little later). */
  kills: number;
  /** The share of those stops that are graceful (the job completed, its triggers handed back). */
  graceful: number;
  /** At a heartbeat: the triggerer's heartbeats are lost (before the router) for up to `heartbeatLossMaxMs`. */
  heartbeatLoss: number;
  heartbeatLossMaxMs: number;
  /** An event or failure call sent a second time, up to 3 s later (the answer of the copy is not read). */
  duplicateEvent: number;
  /** An event or failure call held back for up to `delayEventMaxMs` before it leaves. */
  delayEvent: number;
  delayEventMaxMs: number;
}

export const NO_TRIGGERER_FAULTS: TriggererFaults = {
  kills: 0,
  graceful: 0,
  heartbeatLoss: 0,
  heartbeatLossMaxMs: 0,
  duplicateEvent: 0,
  delayEvent: 0,
  delayEventMaxMs: 0,
};

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
  triggerers: NO_TRIGGERER_FAULTS,
};

/**
 * One seed in eight runs calm (no faults): the baseline must hold too. The triggerers' faults come
 * from `triggererPrng`, a stream of their own, so the other rates of a seed stay as they were.
 */
export function drawFaults(prng: Prng, triggererPrng: Prng): FaultProfile {
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
    triggerers: drawTriggererFaults(triggererPrng),
  };
}

function drawTriggererFaults(prng: Prng): TriggererFaults {
  const rate = (max: number) => (prng.chance(0.75) ? prng.next() * max : 0);
  return {
    kills: prng.range(0, 3),
    graceful: rate(0.5),
    heartbeatLoss: rate(0.1),
    heartbeatLossMaxMs: prng.range(2_000, 9_000),
    duplicateEvent: rate(0.3),
    delayEvent: rate(0.3),
    delayEventMaxMs: 5_000,
  };
}

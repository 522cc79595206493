import type { Deferral } from '#contracts/triggers.ts';
import {
  BaseTrigger,
  registerTrigger,
  type TriggerEvent,
  type TriggerRunContext,
  taskFailureEvent,
  taskSuccessEvent,
  triggerEvent,
} from '#sdk/index.ts';
import { serialize } from '#sdk/serde.ts';
import { hashString, Prng } from './prng.ts';

/**
 * What the sim's tasks do, phase by phase: a pure function of (seed, TI, try, phase), never of the
 * schedule. Phase 0 is a try's first start; phase k its resumption after its k-th deferral. A
 * deferrable task's phase may defer on `sim.DelayTrigger`, which fires a few seconds of sim time
 * later with the end the plan chose: resume the task, end it (success or failure), or fail.
 */

/** How a deferral's trigger ends the wait: an event of that type, or (`raise`) the trigger fails. */
export type TriggerEnd = 'resume' | 'success' | 'failure' | 'raise';

export interface PlannedDeferral {
  /** Sim ms from the deferral to the moment the trigger fires. */
  waitMs: number;
  /** The deferral's `timeout_ms`; shorter than `waitMs` for a few, so they time out. */
  timeoutMs: number | null;
  end: TriggerEnd;
}

export interface PhasePlan {
  outcome: 'success' | 'fail' | 'skip' | 'defer';
  durationMs: number;
  /** Set when `outcome` is `defer`. */
  deferral?: PlannedDeferral;
}

export const SIM_TRIGGER_NAME = 'sim.DelayTrigger';
/** A phase defers at most this many times in one try (resume, defer again, resume). */
const MAX_DEFERRALS = 2;

/** Outcome and duration of one try of a task that never defers (the plan the sim always had). */
export function planTry(seed: number, ti: string, tryNumber: number): PhasePlan {
  const prng = new Prng(hashString(`${seed}:${ti}:${tryNumber}`));
  const roll = prng.next();
  return {
    outcome: roll < 0.7 ? 'success' : roll < 0.9 ? 'fail' : 'skip',
    durationMs: prng.range(200, 4_000),
  };
}

/** One phase of one try. A deferrable task mostly defers in phase 0, sometimes again in phase 1. */
export function planPhase(
  seed: number,
  ti: string,
  tryNumber: number,
  phase: number,
  deferrable: boolean,
): PhasePlan {
  if (!deferrable) return planTry(seed, ti, tryNumber);
  const prng = new Prng(hashString(`${seed}:${ti}:${tryNumber}:phase-${phase}`));
  const durationMs = prng.range(200, phase === 0 ? 4_000 : 2_000);
  const defers = phase < MAX_DEFERRALS && prng.chance(phase === 0 ? 0.85 : 0.35);
  if (!defers) {
    const roll = prng.next();
    return { outcome: roll < 0.7 ? 'success' : roll < 0.9 ? 'fail' : 'skip', durationMs };
  }
  const waitMs = prng.range(1_000, 10_000);
  const roll = prng.next();
  const end: TriggerEnd =
    roll < 0.72 ? 'resume' : roll < 0.84 ? 'success' : roll < 0.92 ? 'failure' : 'raise';
  const timeoutMs = prng.chance(0.15)
    ? prng.range(300, waitMs - 700)
    : prng.chance(0.5)
      ? null
      : waitMs + prng.range(60_000, 120_000);
  return { outcome: 'defer', durationMs, deferral: { waitMs, timeoutMs, end } };
}

/** The deferral a phase reports: the sim trigger, firing at `moment` (sim epoch ms). */
export function deferralOf(planned: PlannedDeferral, moment: number): Deferral {
  return {
    trigger: { name: SIM_TRIGGER_NAME, kwargs: serialize({ moment, end: planned.end }, { root: 'kwargs' }) },
    next_method: 'executeComplete',
    next_kwargs: '{}',
    timeout_ms: planned.timeoutMs,
  };
}

/**
 * The sim's trigger: sleeps on the triggerer's timers (the sim clock) until `moment`, then ends the
 * wait as its kwargs say. Its outcome depends on its kwargs only, so a trigger run again after a
 * takeover ends the same way.
 */
export class SimDelayTrigger extends BaseTrigger<{ moment: number; end: TriggerEnd }> {
  static override readonly triggerName: string = SIM_TRIGGER_NAME;

  override async *run(ctx: TriggerRunContext): AsyncGenerator<TriggerEvent, void, void> {
    const { moment, end } = this.kwargs;
    if (ctx.now() < moment) {
      ctx.log.info(`waiting until ${new Date(moment).toISOString()} to ${end}`);
      await ctx.sleepUntil(moment);
    }
    switch (end) {
      case 'raise':
        throw new Error('sim: the trigger failed');
      case 'success':
        yield taskSuccessEvent(moment);
        return;
      case 'failure':
        yield taskFailureEvent('sim: the trigger ended the task as failed');
        return;
      case 'resume':
        yield triggerEvent({ moment });
        return;
    }
  }
}

registerTrigger(SimDelayTrigger);

import {
  BaseOperator,
  DateTimeTrigger,
  dag,
  type OperatorContext,
  type TaskContext,
  TimeDeltaTrigger,
} from 'updraft';
import { EndTrigger } from './end_triggers.ts';

/**
 * The deferral tests' DAG: `wait_twice` defers twice on a time delta (its worker slot is free
 * meanwhile), resuming each time in `executeComplete`, and succeeds with what it saw. A callable
 * task defers once and returns the event it resumed with.
 */
class WaitTwice extends BaseOperator<{ delayMs: number }> {
  async execute(ctx: OperatorContext) {
    ctx.log.info('submitting and deferring');
    return ctx.defer({
      trigger: new TimeDeltaTrigger({ delta: this.options.delayMs }),
      method: 'executeComplete',
      kwargs: { round: 1, startedAt: new Date() },
      timeout: '1m',
    });
  }

  async executeComplete(ctx: OperatorContext, event: unknown, kwargs: { round: number; startedAt: Date }) {
    ctx.log.info('resumed', { round: kwargs.round, deferralSeq: ctx.resume?.deferralSeq });
    if (kwargs.round < 2) {
      return ctx.defer({
        trigger: new TimeDeltaTrigger({ delta: this.options.delayMs }),
        method: 'executeComplete',
        kwargs: { round: kwargs.round + 1, startedAt: kwargs.startedAt },
      });
    }
    return {
      rounds: kwargs.round,
      startedAtIsDate: kwargs.startedAt instanceof Date,
      eventIsDate: event instanceof Date,
    };
  }
}

export default dag(
  {
    id: 'deferring',
    description: 'e2e: deferrable tasks',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    params: { delayMs: 500 },
  },
  (d) => {
    const waited = d.add(new WaitTwice({ id: 'wait_twice', delayMs: 500 }));
    const once = d.task({ id: 'defer_once' }, async (ctx: TaskContext) => {
      if (!ctx.resume) return ctx.defer({ trigger: new TimeDeltaTrigger({ delta: 300 }), method: 'resume' });
      return { resumedWith: ctx.resume.method, seq: ctx.resume.deferralSeq };
    });
    once.after(waited);
  },
);

/** Fifty tasks that each defer for two seconds: with two worker slots they finish only if deferral frees the slots. */
export const many = dag(
  {
    id: 'deferring_many',
    description: 'e2e: many deferred tasks on few worker slots',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
  },
  (d) => {
    for (let index = 0; index < 50; index += 1) {
      d.task({ id: `wait_${index}` }, async (ctx: TaskContext) => {
        if (!ctx.resume)
          return ctx.defer({ trigger: new TimeDeltaTrigger({ delta: '2s' }), method: 'resume' });
        return index;
      });
    }
  },
);

/** A deferral that times out: its trigger waits an hour, its timeout is one second. */
export const timingOut = dag(
  {
    id: 'deferring_timeout',
    description: 'e2e: a deferral timeout',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
  },
  (d) => {
    d.task({ id: 'too_slow', retries: 0 }, async (ctx: TaskContext) =>
      ctx.defer({ trigger: new TimeDeltaTrigger({ delta: '1h' }), method: 'resume', timeout: '1s' }),
    );
  },
);

/** Long enough deferrals for a triggerer to be killed while it holds them. */
export const slowTriggers = dag(
  {
    id: 'deferring_failover',
    description: 'e2e: triggers outliving their triggerer',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
  },
  (d) => {
    for (let index = 0; index < 10; index += 1) {
      d.task({ id: `wait_${index}` }, async (ctx: TaskContext) => {
        if (!ctx.resume)
          return ctx.defer({ trigger: new TimeDeltaTrigger({ delta: '4s' }), method: 'resume' });
        return index;
      });
    }
  },
);

/** Ends from a trigger (success and failure, no worker after the deferral) and a start in a trigger. */
export const ends = dag(
  {
    id: 'deferring_ends',
    description: 'e2e: end from trigger, start from trigger',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
  },
  (d) => {
    d.task({ id: 'end_ok' }, async (ctx: TaskContext) =>
      ctx.defer({ trigger: new EndTrigger({ outcome: 'success' }), method: 'never' }),
    );
    d.task({ id: 'end_bad', retries: 2 }, async (ctx: TaskContext) =>
      ctx.defer({ trigger: new EndTrigger({ outcome: 'failure' }), method: 'never' }),
    );
    d.task(
      {
        id: 'from_trigger',
        startFromTrigger: {
          trigger: new DateTimeTrigger({ moment: '2000-01-01T00:00:00Z' }),
          method: 'resume',
          kwargs: { note: 'started in a trigger' },
        },
      },
      async (ctx: TaskContext) => ({ resumed: ctx.resume?.method, note: ctx.resume?.kwargs.note }),
    );
  },
);

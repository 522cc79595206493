import { BaseTrigger, type TriggerEvent, type TriggerRunContext, triggerEvent } from './base.ts';
import { registerBuiltinTrigger } from './registry.ts';
import { epochMsOf, InvalidTriggerKwargsError, millisecondsOf } from './validation.ts';

export interface DateTimeTriggerKwargs {
  /** ISO-8601, UTC. */
  moment: string;
}

/**
 * Fires once the triggerer's clock reaches `moment`; the event's payload is the moment as a Date.
 * It waits with `ctx.sleepUntil`, so a triggerer holds any number of them on one timer.
 */
export class DateTimeTrigger extends BaseTrigger<DateTimeTriggerKwargs> {
  static override readonly triggerName: string = 'updraft.DateTimeTrigger';

  constructor(kwargs: { moment: string | Date }, options: { queue?: string } = {}) {
    super({ moment: normalizedMoment(kwargs, 'DateTimeTrigger') }, options);
  }

  override async *run(ctx: TriggerRunContext): AsyncGenerator<TriggerEvent, void, void> {
    const at = Date.parse(this.kwargs.moment);
    if (ctx.now() < at) {
      ctx.log.info(`Waiting until ${this.kwargs.moment}`);
      await ctx.sleepUntil(at);
    }
    yield triggerEvent(new Date(at));
  }
}

/**
 * Fires `delta` after the moment it was constructed: like Airflow's, it turns the delta into a
 * moment at once, so its kwargs are `{ moment }` and a trigger restarted on another triggerer
 * keeps the deadline instead of waiting the whole delta again.
 */
export class TimeDeltaTrigger extends DateTimeTrigger {
  static override readonly triggerName: string = 'updraft.TimeDeltaTrigger';

  /** `delta`: milliseconds or a duration such as '30s', '5m'. A triggerer rebuilds it from `{ moment }`. */
  constructor(
    kwargs: { delta: number | string } | { moment: string | Date },
    options: { queue?: string } = {},
  ) {
    const given = kwargs as { delta?: unknown; moment?: unknown };
    rejectUnknownKeys(given, ['delta', 'moment'], 'TimeDeltaTrigger');
    if (given.delta !== undefined && given.moment !== undefined) {
      throw new InvalidTriggerKwargsError('TimeDeltaTrigger takes either delta or moment, not both');
    }
    if (given.moment !== undefined) {
      super({ moment: normalizedMoment(given, 'TimeDeltaTrigger') }, options);
      return;
    }
    let deltaMs: number;
    try {
      deltaMs = millisecondsOf(given.delta, 'TimeDeltaTrigger delta');
    } catch (error) {
      throw new InvalidTriggerKwargsError((error as Error).message, { cause: error });
    }
    super({ moment: new Date(Date.now() + deltaMs) }, options);
  }
}

function normalizedMoment(kwargs: { moment?: unknown }, trigger: string): string {
  if (typeof kwargs !== 'object' || kwargs === null) {
    throw new InvalidTriggerKwargsError(`${trigger} takes kwargs { moment }`);
  }
  if (trigger === 'DateTimeTrigger') rejectUnknownKeys(kwargs, ['moment'], trigger);
  try {
    return new Date(epochMsOf(kwargs.moment, `${trigger} moment`)).toISOString();
  } catch (error) {
    throw new InvalidTriggerKwargsError((error as Error).message, { cause: error });
  }
}

function rejectUnknownKeys(kwargs: object, known: readonly string[], trigger: string): void {
  const unknown = Object.keys(kwargs ?? {}).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    throw new InvalidTriggerKwargsError(
      `${trigger}: unknown kwargs ${unknown.join(', ')} (it takes ${known.join(', ')})`,
    );
  }
}

registerBuiltinTrigger(DateTimeTrigger);
registerBuiltinTrigger(TimeDeltaTrigger);

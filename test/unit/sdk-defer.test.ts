import { describe, expect, it } from 'vitest';
import {
  BaseOperator,
  BaseTrigger,
  DateTimeSensor,
  DateTimeTrigger,
  DeferSignal,
  dag,
  defer,
  HttpSensor,
  isDeferSignal,
  type OperatorContext,
  type TaskContext,
  TimeDeltaSensor,
  type TriggerEvent,
} from '#sdk/index.ts';
import { executeTask } from '#sdk/runtime.ts';
import { signalKindOf } from '#sdk/signals.ts';
import { testContext } from './sdk-fixtures.ts';

const MOMENT = '2030-01-01T00:00:00.000Z';
const trigger = () => new DateTimeTrigger({ moment: MOMENT });
const TRIGGER_SPEC = { name: 'updraft.DateTimeTrigger', kwargs: { moment: MOMENT } };

class Unnamed extends BaseTrigger<{ n: number }> {
  override async *run(): AsyncGenerator<TriggerEvent, void, void> {}
}

class WaitForJob extends BaseOperator<{ job: string }> {
  async execute(ctx: OperatorContext): Promise<unknown> {
    return ctx.defer({ trigger: trigger(), kwargs: { job: this.options.job }, timeout: '5m' });
  }

  async executeComplete(
    ctx: OperatorContext,
    event: unknown,
    kwargs: Record<string, unknown>,
  ): Promise<unknown> {
    return { event: (event as Date).toISOString(), kwargs, args: ctx.args, seq: ctx.resume?.deferralSeq };
  }
}

class DefersToNowhere extends BaseOperator {
  async execute(ctx: OperatorContext): Promise<unknown> {
    return ctx.defer({ trigger: trigger(), method: 'onDone' });
  }
}

class ReturnsForeignDefer extends BaseOperator {
  async execute(): Promise<unknown> {
    // A module-level defer() is not checked against the operator: the runtime checks the outcome.
    return defer({ trigger: trigger(), method: 'onDone' });
  }
}

const deferring = dag({ id: 'deferring' }, (d) => {
  d.task('returns_defer', async (ctx: TaskContext) => ctx.defer({ trigger: trigger(), timeout: 30_000 }));
  d.task('throws_defer', async (ctx: TaskContext) => {
    throw ctx.defer({ trigger: trigger(), method: 'afterWait', kwargs: { n: 1 } });
  });
  d.task('imported_defer', async () => defer({ trigger: trigger() }));
  d.task('resumable', async (rows: number[], ctx: TaskContext) => {
    if (!ctx.resume) return ctx.defer({ trigger: trigger(), kwargs: { count: rows.length } });
    return { rows, method: ctx.resume.method, kwargs: ctx.resume.kwargs, seq: ctx.resume.deferralSeq };
  });
  d.add(new WaitForJob({ id: 'wait_for_job', job: 'j-1' }));
  d.add(new DefersToNowhere({ id: 'defers_to_nowhere' }));
  d.add(new ReturnsForeignDefer({ id: 'foreign_defer' }));
  d.add(new TimeDeltaSensor({ id: 'delta_sensor', delta: '1h' }));
  d.add(new DateTimeSensor({ id: 'past_sensor', targetTime: '2000-01-01T00:00:00Z' }));
  d.add(new HttpSensor({ id: 'http_sensor', url: 'http://127.0.0.1:9/status', timeout: '10m' }));
});

describe('defer()', () => {
  it('returns a branded DeferSignal carrying the trigger spec', () => {
    const signal = defer({ trigger: trigger(), kwargs: { a: 1 } });
    expect(signal).toBeInstanceOf(DeferSignal);
    expect(isDeferSignal(signal)).toBe(true);
    expect(signalKindOf(signal)).toBe('defer');
    expect(signal.trigger).toEqual(TRIGGER_SPEC);
    expect(signal.kwargs).toEqual({ a: 1 });
  });

  it("resumes in 'executeComplete' by default, with no timeout and no kwargs", () => {
    const signal = defer({ trigger: trigger() });
    expect(signal.method).toBe('executeComplete');
    expect(signal.timeoutMs).toBeNull();
    expect(signal.kwargs).toEqual({});
  });

  it('reads a timeout as milliseconds or a duration string', () => {
    expect(defer({ trigger: trigger(), timeout: 1500 }).timeoutMs).toBe(1500);
    expect(defer({ trigger: trigger(), timeout: '1h30m' }).timeoutMs).toBe(5_400_000);
  });

  it('refuses a timeout that is not positive', () => {
    expect(() => defer({ trigger: trigger(), timeout: 0 })).toThrow(
      'defer(): timeout must be positive, got 0',
    );
    expect(() => defer({ trigger: trigger(), timeout: '0s' })).toThrow('timeout must be positive');
    expect(() => defer({ trigger: trigger(), timeout: -5 })).toThrow('timeout must be positive');
  });

  it('refuses an unreadable timeout', () => {
    expect(() => defer({ trigger: trigger(), timeout: 'soon' })).toThrow(
      "Invalid duration for defer() timeout: 'soon'",
    );
  });

  it('refuses a trigger class without a triggerName', () => {
    expect(() => defer({ trigger: new Unnamed({ n: 1 }) })).toThrow(
      'defer(): trigger class Unnamed has no triggerName',
    );
  });

  it('refuses something that is not a trigger', () => {
    expect(() => defer({ trigger: { name: 'x' } as never })).toThrow(
      'defer(): trigger must be an instance of a BaseTrigger subclass, got an instance of Object',
    );
  });

  it("refuses 'execute' as the resume method", () => {
    expect(() => defer({ trigger: trigger(), method: 'execute' })).toThrow(
      "defer(): method 'execute' would start the task over",
    );
  });

  it('refuses a method name that is not an identifier', () => {
    expect(() => defer({ trigger: trigger(), method: 'on-done' })).toThrow(
      'defer(): method "on-done" is not a method name the task can resume in',
    );
    expect(() => defer({ trigger: trigger(), method: '__proto__' })).toThrow('is not a method name');
  });

  it('refuses kwargs that cannot be serialized, naming the path', () => {
    expect(() => defer({ trigger: trigger(), kwargs: { when: () => 1 } })).toThrow(
      'defer(): kwargs.when is a function',
    );
  });

  it('refuses trigger kwargs that cannot be serialized, naming the trigger', () => {
    class Named extends Unnamed {
      static override readonly triggerName: string = 'tests.Named';
    }
    expect(() => defer({ trigger: new Named({ n: Number.NaN }) })).toThrow(
      'defer(): tests.Named kwargs.n is NaN',
    );
  });
});

describe('executeTask with deferral', () => {
  it('turns a returned defer into the deferred outcome', async () => {
    expect(await executeTask(deferring, 'returns_defer', [], testContext())).toEqual({
      kind: 'deferred',
      trigger: TRIGGER_SPEC,
      method: 'executeComplete',
      timeoutMs: 30_000,
      kwargs: {},
    });
  });

  it('turns a thrown defer into the deferred outcome', async () => {
    expect(await executeTask(deferring, 'throws_defer', [], testContext())).toEqual({
      kind: 'deferred',
      trigger: TRIGGER_SPEC,
      method: 'afterWait',
      timeoutMs: null,
      kwargs: { n: 1 },
    });
  });

  it('accepts the module-level defer() as well as ctx.defer()', async () => {
    expect(await executeTask(deferring, 'imported_defer', [], testContext())).toMatchObject({
      kind: 'deferred',
    });
  });

  it('recognises a defer signal from another copy of the module by its brand', async () => {
    const foreign = {
      [Symbol.for('updraft.signal')]: 'defer',
      trigger: TRIGGER_SPEC,
      method: 'executeComplete',
      timeoutMs: null,
      kwargs: {},
    };
    const copied = dag({ id: 'copied' }, (d) => {
      d.task('t', async () => foreign);
    });
    expect(await executeTask(copied, 't', [], testContext())).toMatchObject({
      kind: 'deferred',
      method: 'executeComplete',
    });
  });

  it('defers an operator with its kwargs and timeout', async () => {
    expect(await executeTask(deferring, 'wait_for_job', [], testContext())).toEqual({
      kind: 'deferred',
      trigger: TRIGGER_SPEC,
      method: 'executeComplete',
      timeoutMs: 300_000,
      kwargs: { job: 'j-1' },
    });
  });

  it('resumes an operator in the named method with the event and kwargs', async () => {
    const resume = {
      method: 'executeComplete',
      event: new Date(MOMENT),
      kwargs: { job: 'j-1' },
      deferralSeq: 1,
    };
    expect(await executeTask(deferring, 'wait_for_job', [[1]], testContext(), resume)).toEqual({
      kind: 'success',
      value: { event: MOMENT, kwargs: { job: 'j-1' }, args: [[1]], seq: 1 },
    });
  });

  it('calls a callable again with ctx.resume set', async () => {
    const resume = { method: 'executeComplete', event: 'done', kwargs: { count: 2 }, deferralSeq: 3 };
    expect(await executeTask(deferring, 'resumable', [[5, 6]], testContext(), resume)).toEqual({
      kind: 'success',
      value: { rows: [5, 6], method: 'executeComplete', kwargs: { count: 2 }, seq: 3 },
    });
  });

  it('gives a callable no resume on its first call', async () => {
    expect(await executeTask(deferring, 'resumable', [[5, 6]], testContext())).toMatchObject({
      kind: 'deferred',
      kwargs: { count: 2 },
    });
  });

  it('refuses at defer time a method the operator does not have, naming both', async () => {
    await expect(executeTask(deferring, 'defers_to_nowhere', [], testContext())).rejects.toThrow(
      "Task 'defers_to_nowhere': operator DefersToNowhere has no method 'onDone' to resume in",
    );
  });

  it('refuses a returned deferral whose method the operator does not have', async () => {
    await expect(executeTask(deferring, 'foreign_defer', [], testContext())).rejects.toThrow(
      "operator ReturnsForeignDefer has no method 'onDone'",
    );
  });

  it('refuses to resume in a method the operator does not have', async () => {
    const resume = { method: 'gone', event: null, kwargs: {}, deferralSeq: 1 };
    await expect(executeTask(deferring, 'wait_for_job', [], testContext(), resume)).rejects.toThrow(
      "operator WaitForJob has no method 'gone' to resume in",
    );
  });
});

describe('sensors', () => {
  it('TimeDeltaSensor defers on a DateTimeTrigger at the data interval end plus delta', async () => {
    const ctx = testContext({ dataIntervalEnd: '2999-01-01T00:00:00.000Z' });
    expect(await executeTask(deferring, 'delta_sensor', [], ctx)).toEqual({
      kind: 'deferred',
      trigger: { name: 'updraft.DateTimeTrigger', kwargs: { moment: '2999-01-01T01:00:00.000Z' } },
      method: 'executeComplete',
      timeoutMs: null,
      kwargs: {},
    });
  });

  it('a time sensor whose moment has passed succeeds without deferring', async () => {
    expect(await executeTask(deferring, 'past_sensor', [], testContext())).toEqual({
      kind: 'success',
      value: null,
    });
  });

  it('a time sensor resumes with null', async () => {
    const resume = { method: 'executeComplete', event: new Date(MOMENT), kwargs: {}, deferralSeq: 1 };
    expect(await executeTask(deferring, 'delta_sensor', [], testContext(), resume)).toEqual({
      kind: 'success',
      value: null,
    });
  });

  it('HttpSensor defers on an HttpPollTrigger with its defaults and timeout', async () => {
    expect(await executeTask(deferring, 'http_sensor', [], testContext())).toEqual({
      kind: 'deferred',
      trigger: {
        name: 'updraft.HttpPollTrigger',
        kwargs: {
          url: 'http://127.0.0.1:9/status',
          method: 'GET',
          headers: {},
          intervalMs: 5_000,
          requestTimeoutMs: 10_000,
          condition: { status: [200] },
        },
      },
      method: 'executeComplete',
      timeoutMs: 600_000,
      kwargs: {},
    });
  });

  it('HttpSensor resumes with the event as its XCom', async () => {
    const event = { status: 200, body: { state: 'done' } };
    const resume = { method: 'executeComplete', event, kwargs: {}, deferralSeq: 1 };
    expect(await executeTask(deferring, 'http_sensor', [], testContext(), resume)).toEqual({
      kind: 'success',
      value: event,
    });
  });

  it('HttpSensor refuses bad options when the DAG is defined', () => {
    expect(() => new HttpSensor({ id: 'h', url: 'ftp://127.0.0.1/x' })).toThrow(
      "HttpSensor 'h': HttpPollTrigger: kwarg 'url'",
    );
    expect(() => new HttpSensor({ id: 'h', url: 'http://127.0.0.1/', pokeIntervalMs: 10 })).toThrow(
      "kwarg 'intervalMs'",
    );
  });

  it('a non-deferrable time sensor sleeps in the worker', async () => {
    const soon = new Date(Date.now() + 50).toISOString();
    const local = dag({ id: 'local' }, (d) => {
      d.add(new DateTimeSensor({ id: 'wait', targetTime: soon, deferrable: false }));
    });
    const started = Date.now();
    expect(await executeTask(local, 'wait', [], testContext())).toEqual({ kind: 'success', value: null });
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(soon));
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a non-deferrable sensor stops when the try is aborted', async () => {
    const local = dag({ id: 'local_abort' }, (d) => {
      d.add(new TimeDeltaSensor({ id: 'wait', delta: '1h', deferrable: false }));
    });
    const controller = new AbortController();
    const ctx = testContext({ logicalDate: new Date().toISOString(), signal: controller.signal });
    const outcome = executeTask(local, 'wait', [], ctx);
    setTimeout(() => controller.abort(new Error('execution timeout')), 20);
    await expect(outcome).rejects.toThrow('execution timeout');
  });
});

describe('startFromTrigger', () => {
  class Waits extends BaseOperator<Record<never, never>> {
    async execute() {
      return 1;
    }
  }

  it('refuses an operator that lacks the method its start trigger resumes in, naming both', () => {
    expect(() =>
      dag({ id: 'starts' }, (d) => {
        d.add(
          new Waits({
            id: 'w',
            startFromTrigger: {
              trigger: new DateTimeTrigger({ moment: '2030-01-01T00:00:00Z' }),
              method: 'later',
            },
          }),
        );
      }),
    ).toThrow(/startFromTrigger resumes in 'later', which Waits does not define/);
  });

  it('refuses a start trigger that is not a trigger, naming the task and the option', () => {
    expect(() =>
      dag({ id: 'starts' }, (d) => {
        d.task({ id: 't', startFromTrigger: { trigger: {} as never } }, async () => 1);
      }),
    ).toThrow(
      /task 't': option 'startFromTrigger': defer\(\): trigger must be an instance of a BaseTrigger subclass/,
    );
  });
});

import { describe, expect, it } from 'vitest';
import { placeOfCallback } from '#core/callbacks.ts';
import { serializedDagSchema } from '#core/serialized-dag.ts';
import { CallbackResolutionError, resolveCallback } from '#sdk/callback-resolve.ts';
import {
  BaseOperator,
  type CallbackContext,
  type CallbackInput,
  type DagOptions,
  DagValidationError,
  dag,
  type TaskOptions,
} from '#sdk/index.ts';
import { dagVersionHash, deserializeDag, serializeDag } from '#sdk/serialize.ts';

const noop = async () => null;

function notifyTeam(_ctx: CallbackContext): void {}
async function pageOnCall(_ctx: CallbackContext): Promise<void> {}
function recordMetric(_ctx: CallbackContext): string {
  return 'ignored';
}

class Noop extends BaseOperator<{ setting: number }> {
  async execute(): Promise<unknown> {
    return this.options.setting;
  }
}

/** A DAG with one task 'second' carrying `taskOptions`. */
function build(dagOptions: Partial<DagOptions> = {}, taskOptions: Partial<TaskOptions> = {}) {
  return dag({ id: 'cb', ...dagOptions }, (d) => {
    const first = d.task('first', noop);
    d.task({ id: 'second', ...taskOptions }, noop).after(first);
  });
}

const callbacksOf = (built: ReturnType<typeof build>, taskId = 'second') =>
  built.getTask(taskId)?.options.callbacks;

describe('callback options', () => {
  it('takes a function, a { callback } and a list, keeping the functions in order', () => {
    const built = build(
      { onSuccess: notifyTeam },
      {
        onFailure: [notifyTeam, { callback: pageOnCall, retries: 2, retryDelay: '30s', timeout: 10 }],
        onRetry: { callback: recordMetric },
      },
    );
    const callbacks = callbacksOf(built);
    expect(callbacks?.onFailure?.map((callback) => callback.fn)).toEqual([notifyTeam, pageOnCall]);
    expect(callbacks?.onFailure?.map((callback) => callback.ref)).toEqual([
      { name: 'notifyTeam' },
      { name: 'pageOnCall', async: true, retries: 2, retryDelayMs: 30_000, timeoutMs: 10_000 },
    ]);
    expect(callbacks?.onRetry).toEqual([{ fn: recordMetric, ref: { name: 'recordMetric' } }]);
    expect(built.options.callbacks).toEqual({ onSuccess: [{ fn: notifyTeam, ref: { name: 'notifyTeam' } }] });
  });

  it('leaves out the events without callbacks', () => {
    const built = build({ onFailure: [] }, { onSuccess: notifyTeam, onFailure: [] });
    expect(Object.keys(callbacksOf(built) ?? {})).toEqual(['onSuccess']);
    expect(built.options.callbacks).toEqual({});
    expect(callbacksOf(built, 'first')).toEqual({});
  });

  it("names an anonymous function 'anonymous'", () => {
    const anonymous = [() => {}][0] as () => void;
    expect(anonymous.name).toBe('');
    expect(callbacksOf(build({}, { onSkipped: anonymous }))?.onSkipped?.[0]?.ref).toEqual({
      name: 'anonymous',
    });
  });

  it('accepts a zero retryDelay', () => {
    const ref = callbacksOf(build({}, { onExecute: { callback: notifyTeam, retryDelay: 0 } }))?.onExecute?.[0]
      ?.ref;
    expect(ref).toEqual({ name: 'notifyTeam', retryDelayMs: 0 });
  });
});

describe('callback option validation', () => {
  const taskError = (onFailure: unknown) => () => build({}, { onFailure: onFailure as CallbackInput });

  it('refuses a value that is no callback, naming the DAG, the task and the option', () => {
    expect(taskError('notify')).toThrow(
      `DAG 'cb', task 'second': option 'onFailure': expected a function, { callback }, or an array of them, got "notify"`,
    );
    expect(taskError(null)).toThrow(DagValidationError);
  });

  it('names the position of a bad element in a list', () => {
    expect(taskError([notifyTeam, 42])).toThrow(
      "DAG 'cb', task 'second': option 'onFailure[1]': expected a function or { callback }, got 42",
    );
    expect(taskError([[notifyTeam]])).toThrow("option 'onFailure[0]': expected a function or { callback }");
  });

  it('refuses a { callback } without a function', () => {
    expect(taskError({ callback: 'notifyTeam' })).toThrow(
      `DAG 'cb', task 'second': option 'onFailure': 'callback' must be a function, got "notifyTeam"`,
    );
  });

  it('refuses unknown keys in a { callback }', () => {
    expect(taskError({ callback: notifyTeam, retry: 2 })).toThrow(
      "DAG 'cb', task 'second': option 'onFailure': unknown key 'retry' (a callback takes callback, retries, retryDelay, timeout, runOn)",
    );
  });

  it('refuses retries that are not an integer from 0 to 100, and a timeout over 15 minutes', () => {
    expect(taskError({ callback: notifyTeam, retries: -1 })).toThrow(
      "DAG 'cb', task 'second': option 'onFailure': 'retries' must be an integer from 0 to 100, got -1",
    );
    expect(taskError({ callback: notifyTeam, retries: 1.5 })).toThrow(
      "'retries' must be an integer from 0 to 100",
    );
    expect(taskError({ callback: notifyTeam, retries: 101 })).toThrow(
      "'retries' must be an integer from 0 to 100",
    );
    expect(taskError({ callback: notifyTeam, timeout: '16m' })).toThrow(
      "'timeout' is 960000 ms, over the longest a callback attempt may run, 900000 ms (15 minutes)",
    );
  });

  it('refuses a negative or unreadable retryDelay', () => {
    expect(taskError({ callback: notifyTeam, retryDelay: -5 })).toThrow(
      "Invalid duration for DAG 'cb', task 'second': option 'onFailure' 'retryDelay'",
    );
    expect(taskError({ callback: notifyTeam, retryDelay: 'soon' })).toThrow(DagValidationError);
  });

  it('refuses a retryDelay over a day (the longest wait between attempts), and takes one of a day', () => {
    expect(taskError({ callback: notifyTeam, retryDelay: '1d1ms' })).toThrow(
      "DAG 'cb', task 'second': option 'onFailure': 'retryDelay' must be from 0 to 86400000 ms (a day), got \"1d1ms\"",
    );
    expect(taskError({ callback: notifyTeam, retryDelay: 1e306 })).toThrow(
      "'retryDelay' must be from 0 to 86400000 ms",
    );
    expect(taskError({ callback: notifyTeam, retryDelay: '1d' })).not.toThrow();
  });

  it('refuses a zero timeout', () => {
    expect(taskError({ callback: notifyTeam, timeout: '0s' })).toThrow(
      "DAG 'cb', task 'second': option 'onFailure': 'timeout' must be greater than 0",
    );
  });

  it("names the DAG for a DAG's own callback option", () => {
    expect(() => build({ onSuccess: 7 as unknown as CallbackInput })).toThrow(
      "DAG 'cb': option 'onSuccess': expected a function, { callback }, or an array of them, got 7",
    );
  });

  it('refuses a task event on the DAG', () => {
    expect(() => build({ onRetry: notifyTeam } as Partial<DagOptions>)).toThrow(
      "DAG 'cb': unknown option 'onRetry'",
    );
  });

  it('blames defaultArgs for a bad default callback', () => {
    expect(() => build({ defaultArgs: { onRetry: { callback: notifyTeam, timeout: 0 } } })).toThrow(
      "DAG 'cb' defaultArgs: option 'onRetry': 'timeout' must be greater than 0",
    );
  });
});

describe('callback defaultArgs', () => {
  it("gives a task that does not set an event the defaults' callbacks", () => {
    const built = build(
      { defaultArgs: { onFailure: notifyTeam, onRetry: [recordMetric] } },
      { onRetry: pageOnCall },
    );
    expect(callbacksOf(built, 'first')).toEqual({
      onFailure: [{ fn: notifyTeam, ref: { name: 'notifyTeam' } }],
      onRetry: [{ fn: recordMetric, ref: { name: 'recordMetric' } }],
    });
    expect(callbacksOf(built)).toEqual({
      onFailure: [{ fn: notifyTeam, ref: { name: 'notifyTeam' } }],
      onRetry: [{ fn: pageOnCall, ref: { name: 'pageOnCall', async: true } }],
    });
  });

  it('gives none to a task that sets [] for the event', () => {
    const built = build({ defaultArgs: { onFailure: notifyTeam } }, { onFailure: [] });
    expect(callbacksOf(built)).toEqual({});
  });

  it("does not make defaultArgs' task callbacks the DAG's own", () => {
    expect(build({ defaultArgs: { onFailure: notifyTeam } }).options.callbacks).toEqual({});
  });
});

describe('operator callbacks', () => {
  it('carries callback options of an operator, and defaultArgs', () => {
    const built = dag({ id: 'ops', defaultArgs: { onRetry: recordMetric } }, (d) => {
      d.add(new Noop({ id: 'op', setting: 1, onFailure: { callback: pageOnCall, retries: 1 } }));
    });
    expect(built.getTask('op')?.options.callbacks).toEqual({
      onFailure: [{ fn: pageOnCall, ref: { name: 'pageOnCall', async: true, retries: 1 } }],
      onRetry: [{ fn: recordMetric, ref: { name: 'recordMetric' } }],
    });
    expect(serializeDag(built, 'ops.ts').tasks[0]?.callbacks).toEqual({
      onFailure: [{ name: 'pageOnCall', async: true, retries: 1 }],
      onRetry: [{ name: 'recordMetric' }],
    });
  });

  it("checks an operator's callback options", () => {
    expect(() =>
      dag({ id: 'ops' }, (d) => {
        d.add(new Noop({ id: 'op', setting: 1, onSuccess: 'x' as unknown as CallbackInput }));
      }),
    ).toThrow("DAG 'ops', task 'op': option 'onSuccess': expected a function");
  });
});

describe('callback serialization', () => {
  const roundTrip = (built: ReturnType<typeof build>) => {
    const serialized = serializeDag(built, 'cb.ts');
    return { serialized, back: deserializeDag(JSON.parse(JSON.stringify(serialized))) };
  };

  it('keeps the references of task callbacks through a round trip', () => {
    const { serialized, back } = roundTrip(
      build(
        {},
        {
          onSuccess: notifyTeam,
          onFailure: [notifyTeam, { callback: pageOnCall, retries: 3, retryDelay: '1m', timeout: '2m' }],
          onRetry: recordMetric,
          onExecute: { callback: recordMetric, retries: 0 },
          onSkipped: notifyTeam,
        },
      ),
    );
    const second = back.tasks.find((task) => task.taskId === 'second');
    expect(second?.callbacks).toEqual({
      onSuccess: [{ name: 'notifyTeam' }],
      onFailure: [
        { name: 'notifyTeam' },
        { name: 'pageOnCall', async: true, retries: 3, retryDelayMs: 60_000, timeoutMs: 120_000 },
      ],
      onRetry: [{ name: 'recordMetric' }],
      onExecute: [{ name: 'recordMetric', retries: 0 }],
      onSkipped: [{ name: 'notifyTeam' }],
    });
    expect(back).toEqual(serialized);
  });

  it('keeps the references of DAG callbacks through a round trip', () => {
    const { serialized, back } = roundTrip(
      build({ onSuccess: notifyTeam, onFailure: [{ callback: pageOnCall, timeout: 30 }, recordMetric] }),
    );
    expect(back.callbacks).toEqual({
      onSuccess: [{ name: 'notifyTeam' }],
      onFailure: [{ name: 'pageOnCall', async: true, timeoutMs: 30_000 }, { name: 'recordMetric' }],
    });
    expect(back).toEqual(serialized);
    expect(serializedDagSchema.parse(serialized)).toEqual(serialized);
  });

  it('writes only the events that have callbacks', () => {
    const serialized = serializeDag(
      build({ onFailure: [] }, { onFailure: [], onRetry: notifyTeam }),
      'cb.ts',
    );
    expect(serialized.tasks.find((task) => task.taskId === 'second')?.callbacks).toEqual({
      onRetry: [{ name: 'notifyTeam' }],
    });
    expect('callbacks' in serialized).toBe(false);
  });

  it('leaves the serialized DAG and its version unchanged when no event has callbacks', () => {
    const plain = serializeDag(build(), 'cb.ts');
    const empty = serializeDag(
      build({ onSuccess: [], onFailure: [], defaultArgs: { onFailure: [] } }, { onRetry: [], onSkipped: [] }),
      'cb.ts',
    );
    expect('callbacks' in plain).toBe(false);
    expect(plain.tasks.some((task) => 'callbacks' in task)).toBe(false);
    expect(empty).toEqual(plain);
    expect(dagVersionHash(empty)).toBe(dagVersionHash(plain));
  });

  it('changes the version when a callback is added or renamed', () => {
    const hash = (options: Partial<TaskOptions>) => dagVersionHash(serializeDag(build({}, options), 'cb.ts'));
    expect(hash({ onFailure: notifyTeam })).not.toBe(hash({}));
    expect(hash({ onFailure: notifyTeam })).not.toBe(hash({ onFailure: pageOnCall }));
  });
});

describe('resolveCallback', () => {
  const built = build(
    { onFailure: [notifyTeam, pageOnCall] },
    { onFailure: [notifyTeam, { callback: pageOnCall, retries: 1 }] },
  );

  it("finds a task's callback by event and position", () => {
    expect(
      resolveCallback(built, { taskId: 'second', event: 'onFailure', index: 1, name: 'pageOnCall' }),
    ).toBe(pageOnCall);
  });

  it("finds a DAG's callback when there is no task", () => {
    expect(resolveCallback(built, { taskId: null, event: 'onFailure', index: 0, name: 'notifyTeam' })).toBe(
      notifyTeam,
    );
  });

  it('refuses a function whose name changed since the run’s version', () => {
    expect(() =>
      resolveCallback(built, { taskId: 'second', event: 'onFailure', index: 1, name: 'oldPager' }),
    ).toThrow(
      "the DAG file changed since the run's version: callback 1 of onFailure of task 'second' is now 'pageOnCall', the run expects 'oldPager'",
    );
  });

  it('refuses a position past the end of the list', () => {
    expect(() =>
      resolveCallback(built, { taskId: null, event: 'onFailure', index: 2, name: 'gone' }),
    ).toThrow(
      "the DAG file changed since the run's version: onFailure of DAG 'cb' has 2 callbacks, the run expects callback 2 ('gone')",
    );
  });

  it('refuses an event without callbacks', () => {
    expect(() =>
      resolveCallback(built, { taskId: 'first', event: 'onFailure', index: 0, name: 'x' }),
    ).toThrow("onFailure of task 'first' has 0 callbacks");
  });

  it('refuses a task the DAG no longer has', () => {
    expect(() =>
      resolveCallback(built, { taskId: 'ghost', event: 'onFailure', index: 0, name: 'x' }),
    ).toThrow("the DAG file changed since the run's version: DAG 'cb' has no task 'ghost'");
  });

  it('refuses an event that is not a callback event of the owner', () => {
    expect(() => resolveCallback(built, { taskId: null, event: 'onRetry', index: 0, name: 'x' })).toThrow(
      CallbackResolutionError,
    );
    expect(() => resolveCallback(built, { taskId: 'second', event: 'onDone', index: 0, name: 'x' })).toThrow(
      "task 'second' has no callback event 'onDone'",
    );
  });
});

describe('async callbacks and where callbacks run', () => {
  it('marks functions declared async, and only those, as async', () => {
    const promising = (_ctx: CallbackContext) => Promise.resolve();
    const built = build(
      {},
      { onFailure: [notifyTeam, pageOnCall, async () => undefined, promising, { callback: pageOnCall }] },
    );
    expect(callbacksOf(built)?.onFailure?.map((callback) => callback.ref.async ?? false)).toEqual([
      false,
      true,
      true,
      false,
      true,
    ]);
  });

  it("keeps an author's runOn, and refuses any other value", () => {
    const built = build(
      {},
      {
        onSuccess: [
          { callback: pageOnCall, runOn: 'worker' },
          { callback: notifyTeam, runOn: 'triggerer' },
        ],
      },
    );
    expect(callbacksOf(built)?.onSuccess?.map((callback) => callback.ref)).toEqual([
      { name: 'pageOnCall', async: true, runOn: 'worker' },
      { name: 'notifyTeam', runOn: 'triggerer' },
    ]);
    expect(() => build({}, { onSuccess: { callback: notifyTeam, runOn: 'lambda' as 'worker' } })).toThrow(
      "DAG 'cb', task 'second': option 'onSuccess': 'runOn' must be 'worker' or 'triggerer', got \"lambda\"",
    );
  });

  it('places a callback where its author said, an async one where the deployment says, any other on a worker', () => {
    const onTriggerer = { asyncCallbacksRunOn: 'triggerer' as const, triggererEnabled: true };
    const onWorker = { asyncCallbacksRunOn: 'worker' as const, triggererEnabled: true };
    const noTriggerer = { asyncCallbacksRunOn: 'triggerer' as const, triggererEnabled: false };
    expect(placeOfCallback({ async: true }, onTriggerer)).toBe('triggerer');
    expect(placeOfCallback({}, onTriggerer)).toBe('worker');
    expect(placeOfCallback({ async: true }, onWorker)).toBe('worker');
    expect(placeOfCallback({ runOn: 'triggerer' }, onWorker)).toBe('triggerer');
    expect(placeOfCallback({ async: true, runOn: 'worker' }, onTriggerer)).toBe('worker');
    expect(placeOfCallback({ async: true, runOn: 'triggerer' }, noTriggerer)).toBe('worker');
  });
});

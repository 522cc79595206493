import { describe, expect, it } from 'vitest';
import { chain, DagValidationError, dag, type TaskHandle } from '#sdk/index.ts';

const noop = async () => null;

describe('dag() ids', () => {
  it('refuses an invalid DAG id, naming it', () => {
    expect(() => dag({ id: 'bad id!' }, () => {})).toThrow(
      "DAG: DAG id \"bad id!\" is invalid (expected 1 to 250 letters, digits, '_', '.' or '-')",
    );
  });

  it('refuses a DAG id longer than 250 characters', () => {
    expect(() => dag({ id: 'a'.repeat(251) }, () => {})).toThrow(DagValidationError);
  });

  it('refuses an invalid task id, naming the DAG and the task', () => {
    expect(() => dag({ id: 'd' }, (d) => d.task('no spaces', noop))).toThrow(
      'DAG \'d\': task id "no spaces" is invalid',
    );
  });

  it('refuses a duplicate task id', () => {
    expect(() =>
      dag({ id: 'd' }, (d) => {
        d.task('a', noop);
        d.task('a', noop);
      }),
    ).toThrow("DAG 'd': task id 'a' is defined twice");
  });
});

describe('dag() dependencies', () => {
  it('refuses an upstream id that names no task', () => {
    expect(() => dag({ id: 'd' }, (d) => d.task('a', noop).after('ghost'))).toThrow(
      "DAG 'd', task 'a': upstream task 'ghost' does not exist",
    );
  });

  it('refuses an upstream option id that names no task', () => {
    expect(() => dag({ id: 'd' }, (d) => d.task({ id: 'a', upstream: ['ghost'] }, noop))).toThrow(
      "DAG 'd', task 'a': upstream task 'ghost' does not exist",
    );
  });

  it('refuses a .before() id that names no task', () => {
    expect(() => dag({ id: 'd' }, (d) => d.task('a', noop).before('ghost'))).toThrow(
      "DAG 'd', task 'a': downstream task 'ghost' does not exist",
    );
  });

  it('accepts ids of tasks defined later', () => {
    const built = dag({ id: 'd' }, (d) => {
      d.task('a', noop).before('b');
      d.task({ id: 'c', upstream: 'b' }, noop);
      d.task('b', noop);
    });
    expect(built.taskIds).toEqual(['a', 'b', 'c']);
    expect(built.getTask('c')?.upstream).toEqual(['b']);
  });

  it('names the cycle path', () => {
    expect(() =>
      dag({ id: 'd' }, (d) => {
        const a = d.task('a', noop);
        const b = d.task('b', noop).after(a);
        const c = d.task('c', noop).after(b);
        a.after(c);
      }),
    ).toThrow("DAG 'd' has a cycle: a -> b -> c -> a");
  });

  it('refuses a task that depends on itself', () => {
    expect(() => dag({ id: 'd' }, (d) => d.task('a', noop).after('a'))).toThrow(
      "DAG 'd', task 'a': a task cannot depend on itself",
    );
  });

  it('refuses a handle from another DAG', () => {
    let foreign: TaskHandle | undefined;
    dag({ id: 'other' }, (d) => {
      foreign = d.task('x', noop);
    });
    expect(() => dag({ id: 'd' }, (d) => d.task('a', noop).after(foreign!))).toThrow(
      "DAG 'd', task 'a': task 'x' belongs to DAG 'other'",
    );
  });

  it('refuses changes after the builder returned', () => {
    let handle: TaskHandle | undefined;
    dag({ id: 'd' }, (d) => {
      handle = d.task('a', noop);
      d.task('b', noop);
    });
    expect(() => handle!.before('b')).toThrow("DAG 'd' is already built");
  });

  it('refuses a branch with no downstream tasks', () => {
    expect(() => dag({ id: 'd' }, (d) => d.branch('choose', async () => 'x'))).toThrow(
      "DAG 'd', task 'choose': a branch needs downstream tasks to choose from",
    );
  });

  it('refuses an asynchronous builder', () => {
    expect(() => dag({ id: 'd' }, (async () => {}) as () => void)).toThrow(
      "DAG 'd': the dag() builder must be synchronous",
    );
  });

  it('orders tasks topologically, ties in definition order', () => {
    const built = dag({ id: 'd' }, (d) => {
      const load = d.task('load', noop);
      const extract = d.task('extract', noop);
      load.after(d.task('transform', noop).after(extract));
    });
    expect(built.taskIds).toEqual(['extract', 'transform', 'load']);
  });
});

describe('chain()', () => {
  it('fans out and in around a list', () => {
    const built = dag({ id: 'd' }, (d) => {
      chain(d.task('a', noop), [d.task('b', noop), d.task('c', noop)], d.task('e', noop));
    });
    expect(built.getTask('b')?.upstream).toEqual(['a']);
    expect(built.getTask('c')?.upstream).toEqual(['a']);
    expect(built.getTask('e')?.upstream).toEqual(['b', 'c']);
  });

  it('links adjacent lists pairwise', () => {
    const built = dag({ id: 'd' }, (d) => {
      chain([d.task('a', noop), d.task('b', noop)], [d.task('x', noop), d.task('y', noop)]);
    });
    expect(built.getTask('x')?.upstream).toEqual(['a']);
    expect(built.getTask('y')?.upstream).toEqual(['b']);
  });

  it('refuses adjacent lists of different lengths', () => {
    expect(() =>
      dag({ id: 'd' }, (d) => {
        chain([d.task('a', noop)], [d.task('x', noop), d.task('y', noop)]);
      }),
    ).toThrow('chain(): adjacent lists must have the same length to be linked pairwise, got 1 and 2');
  });
});

describe('dag() options', () => {
  it('refuses negative retries, naming the task and the option', () => {
    expect(() => dag({ id: 'd' }, (d) => d.task({ id: 'a', retries: -1 }, noop))).toThrow(
      "DAG 'd', task 'a': option 'retries':",
    );
  });

  it('refuses poolSlots below 1', () => {
    expect(() => dag({ id: 'd' }, (d) => d.task({ id: 'a', poolSlots: 0 }, noop))).toThrow(
      "DAG 'd', task 'a': option 'poolSlots':",
    );
  });

  it('refuses an unknown trigger rule', () => {
    expect(() =>
      dag({ id: 'd' }, (d) => d.task({ id: 'a', triggerRule: 'sometimes' as 'all_done' }, noop)),
    ).toThrow(/DAG 'd', task 'a': option 'triggerRule': .*all_success/);
  });

  it('refuses an unknown task option key', () => {
    expect(() =>
      dag({ id: 'd' }, (d) => d.task({ id: 'a', retry: 3 } as unknown as { id: string }, noop)),
    ).toThrow("DAG 'd', task 'a': unknown option 'retry'");
  });

  it('refuses an unknown DAG option key', () => {
    expect(() =>
      dag({ id: 'd', schedule_interval: '@daily' } as unknown as { id: string }, () => {}),
    ).toThrow("DAG 'd': unknown option 'schedule_interval'");
  });

  it('refuses an unknown defaultArgs key, naming the DAG', () => {
    expect(() =>
      dag({ id: 'd', defaultArgs: { retires: 1 } as unknown as { retries: number } }, () => {}),
    ).toThrow("DAG 'd' defaultArgs: unknown option 'retires'");
  });

  it('refuses a bad duration, naming the task and the option', () => {
    expect(() => dag({ id: 'd' }, (d) => d.task({ id: 'a', retryDelay: 'soon' }, noop))).toThrow(
      "Invalid duration for DAG 'd', task 'a' option 'retryDelay': 'soon'",
    );
  });

  it('refuses a zero execution timeout', () => {
    expect(() => dag({ id: 'd' }, (d) => d.task({ id: 'a', executionTimeout: 0 }, noop))).toThrow(
      "DAG 'd', task 'a': option 'executionTimeout' must be greater than 0",
    );
  });

  it('refuses an invalid schedule, naming the DAG, the expression and why', () => {
    expect(() => dag({ id: 'd', schedule: 'rate(1 hours)' }, () => {})).toThrow(
      "DAG 'd': Invalid schedule 'rate(1 hours)': use the singular unit with 1",
    );
  });

  it('refuses a start date that is not a date', () => {
    expect(() => dag({ id: 'd', startDate: 'someday' }, () => {})).toThrow(
      'DAG \'d\': startDate "someday" is not an ISO-8601 date-time',
    );
  });

  it('refuses params that are not JSON', () => {
    expect(() => dag({ id: 'd', params: { when: new Date() } }, () => {})).toThrow(
      "DAG 'd': option 'params.when'",
    );
  });

  it('refuses something that is not a function as a task', () => {
    expect(() => dag({ id: 'd' }, (d) => d.task('a', 42 as unknown as () => null))).toThrow(
      "DAG 'd', task 'a': expected a function, got number",
    );
  });

  it('applies defaultArgs to every task unless the task overrides them', () => {
    const built = dag({ id: 'd', defaultArgs: { retries: 3, pool: 'etl', maxRetryDelay: '10m' } }, (d) => {
      d.task('a', noop);
      d.task({ id: 'b', retries: 0, maxRetryDelay: null }, noop);
    });
    expect(built.getTask('a')?.options).toMatchObject({ retries: 3, pool: 'etl', maxRetryDelayMs: 600_000 });
    expect(built.getTask('b')?.options).toMatchObject({ retries: 0, pool: 'etl', maxRetryDelayMs: null });
  });

  it('resolves Airflow-like defaults', () => {
    const built = dag({ id: 'd' }, (d) => d.task('a', noop));
    expect(built.getTask('a')?.options).toEqual({
      retries: 0,
      retryDelayMs: 300_000,
      retryExponentialBackoff: false,
      maxRetryDelayMs: null,
      executionTimeoutMs: null,
      triggerRule: 'all_success',
      priorityWeight: 1,
      weightRule: 'downstream',
      queue: 'default',
      pool: 'default_pool',
      poolSlots: 1,
      doc: null,
      memoryLimitMb: null,
      startTrigger: null,
      callbacks: {},
    });
    expect(built.options).toMatchObject({
      catchup: false,
      maxActiveRuns: 16,
      maxActiveTasks: 16,
      schedule: null,
    });
  });
});

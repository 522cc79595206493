import { describe, expect, it } from 'vitest';
import { type SerializedDag, serializedDagSchema, serializedTaskSchema } from '#core/serialized-dag.ts';
import { BaseOperator, type DagOptions, DateTimeTrigger, dag, type TaskOptions } from '#sdk/index.ts';
import { canonicalJson, dagVersionHash, deserializeDag, serializeDag } from '#sdk/serialize.ts';

class Noop extends BaseOperator<{ setting: number }> {
  async execute(): Promise<unknown> {
    return this.options.setting;
  }
}

type Variant = 'plain' | 'branch' | 'operator' | 'noArgs';

/** A small DAG; `second` carries the task options under test. */
function build(
  dagOptions: Partial<DagOptions> = {},
  taskOptions: Partial<TaskOptions> = {},
  variant: Variant = 'plain',
) {
  return dag({ id: 'full', ...dagOptions }, (d) => {
    const first = d.task('first', async () => 1);
    const options = { id: 'second', ...taskOptions };
    const second =
      variant === 'operator'
        ? d.add(new Noop({ ...options, setting: 1 }))
        : variant === 'branch'
          ? d.branch(options, async () => 'third')
          : d.task(options, async () => 2);
    if (variant === 'noArgs') second.after(first);
    else second.args(first);
    d.task('third', async () => 3).after(second);
  });
}

function roundTrip(serialized: SerializedDag): SerializedDag {
  return deserializeDag(JSON.parse(JSON.stringify(serialized)));
}

const second = (serialized: SerializedDag) => serialized.tasks.find((task) => task.taskId === 'second');

describe('serializeDag', () => {
  it('resolves every default', () => {
    const serialized = serializeDag(build(), 'sub/full.ts');
    expect(serialized).toEqual({
      formatVersion: 1,
      dagId: 'full',
      description: null,
      fileloc: 'sub/full.ts',
      schedule: null,
      startDate: null,
      endDate: null,
      catchup: false,
      maxActiveRuns: 16,
      maxActiveTasks: 16,
      params: {},
      tags: [],
      tasks: expect.any(Array),
    });
    expect(second(serialized)).toEqual({
      taskId: 'second',
      operator: 'task',
      isBranch: false,
      upstream: ['first'],
      args: [{ taskId: 'first', key: 'return_value' }],
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
    });
  });

  it('lists tasks in topological order', () => {
    const built = dag({ id: 'order' }, (d) => {
      const c = d.task('c', async () => 0);
      const b = d.task('b', async () => 0);
      c.after(b);
      b.after(d.task('a', async () => 0));
    });
    expect(serializeDag(built, 'order.ts').tasks.map((task) => task.taskId)).toEqual(['a', 'b', 'c']);
  });

  it('gives the same hash for the same DAG built twice', () => {
    expect(dagVersionHash(serializeDag(build(), 'f.ts'))).toBe(dagVersionHash(serializeDag(build(), 'f.ts')));
    expect(dagVersionHash(serializeDag(build(), 'f.ts'))).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe('round trip of each authored field', () => {
  const dagCases: [string, Partial<DagOptions>, keyof SerializedDag, unknown][] = [
    ['dagId', { id: 'other_id' }, 'dagId', 'other_id'],
    ['description', { description: 'does things' }, 'description', 'does things'],
    [
      'schedule (cron)',
      { schedule: { cron: '0 6 * * *', timezone: 'Europe/Paris' } },
      'schedule',
      { type: 'cron', expression: '0 6 * * *', timezone: 'Europe/Paris' },
    ],
    [
      'schedule (rate)',
      { schedule: 'rate(2 hours)' },
      'schedule',
      { type: 'rate', expression: 'rate(2 hours)', everyMs: 7_200_000 },
    ],
    ['startDate', { startDate: '2026-01-01T00:00:00+02:00' }, 'startDate', '2025-12-31T22:00:00.000Z'],
    ['endDate', { endDate: new Date('2027-01-01T00:00:00Z') }, 'endDate', '2027-01-01T00:00:00.000Z'],
    ['catchup', { catchup: true }, 'catchup', true],
    ['maxActiveRuns', { maxActiveRuns: 3 }, 'maxActiveRuns', 3],
    ['maxActiveTasks', { maxActiveTasks: 7 }, 'maxActiveTasks', 7],
    [
      'params',
      { params: { batch: 10, nested: { list: [1, 'a', null] } } },
      'params',
      { batch: 10, nested: { list: [1, 'a', null] } },
    ],
    ['tags', { tags: ['etl', 'daily'] }, 'tags', ['etl', 'daily']],
    [
      'callbacks',
      {
        onSuccess: function notify() {},
        onFailure: [{ callback: function page() {}, retries: 2, timeout: 10 }],
      },
      'callbacks',
      { onSuccess: [{ name: 'notify' }], onFailure: [{ name: 'page', retries: 2, timeoutMs: 10_000 }] },
    ],
    ['dagRunTimeoutMs', { dagRunTimeout: '2h' }, 'dagRunTimeoutMs', 7_200_000],
    [
      'deadlines',
      {
        deadline: [
          { within: '30m', of: 'logical_date', callback: function late() {} },
          { within: 90, of: 'queued_at', callback: { callback: function late() {}, retries: 1 } },
          { by: '2026-03-01T06:00:00+01:00', callback: [function late() {}, function page() {}] },
          { within: '1.5x', of: 'average_duration', over: 5, callback: function late() {} },
        ],
      },
      'deadlines',
      [
        { reference: 'logical_date', withinMs: 1_800_000, callbacks: [{ name: 'late' }] },
        { reference: 'queued_at', withinMs: 90_000, callbacks: [{ name: 'late', retries: 1 }] },
        {
          reference: 'fixed_time',
          by: '2026-03-01T05:00:00.000Z',
          callbacks: [{ name: 'late' }, { name: 'page' }],
        },
        { reference: 'average_duration', times: 1.5, over: 5, callbacks: [{ name: 'late' }] },
      ],
    ],
  ];

  it.each(dagCases)('DAG field %s', (_name, options, field, expected) => {
    const serialized = serializeDag(build(options), 'full.ts');
    expect(serialized[field]).toEqual(expected);
    expect(roundTrip(serialized)).toEqual(serialized);
  });

  it('DAG field fileloc', () => {
    const serialized = serializeDag(build(), 'nested/dir/full.ts');
    expect(roundTrip(serialized).fileloc).toBe('nested/dir/full.ts');
  });

  const taskCases: [string, Partial<TaskOptions>, Variant, Partial<Record<string, unknown>>][] = [
    ['taskId', { id: 'renamed' }, 'plain', { taskId: 'renamed' }],
    ['operator', {}, 'operator', { operator: 'Noop' }],
    ['isBranch', {}, 'branch', { isBranch: true, operator: 'branch' }],
    // Upstream lists need tasks of their own: covered by the test after this table.
    ['upstream', {}, 'plain', {}],
    ['args', {}, 'noArgs', { args: [] }],
    ['retries', { retries: 4 }, 'plain', { retries: 4 }],
    ['retryDelayMs', { retryDelay: '1m30s' }, 'plain', { retryDelayMs: 90_000 }],
    [
      'retryExponentialBackoff',
      { retryExponentialBackoff: true },
      'plain',
      { retryExponentialBackoff: true },
    ],
    ['maxRetryDelayMs', { maxRetryDelay: '1h' }, 'plain', { maxRetryDelayMs: 3_600_000 }],
    ['executionTimeoutMs', { executionTimeout: 30 }, 'plain', { executionTimeoutMs: 30_000 }],
    [
      'triggerRule',
      { triggerRule: 'none_failed_min_one_success' },
      'plain',
      { triggerRule: 'none_failed_min_one_success' },
    ],
    ['priorityWeight', { priorityWeight: -5 }, 'plain', { priorityWeight: -5 }],
    ['weightRule', { weightRule: 'absolute' }, 'plain', { weightRule: 'absolute' }],
    ['queue', { queue: 'high' }, 'plain', { queue: 'high' }],
    ['pool', { pool: 'etl_pool' }, 'plain', { pool: 'etl_pool' }],
    ['poolSlots', { poolSlots: 3 }, 'plain', { poolSlots: 3 }],
    ['doc', { doc: 'Loads the rows' }, 'plain', { doc: 'Loads the rows' }],
    ['memoryLimitMb', { memoryLimitMb: 256 }, 'plain', { memoryLimitMb: 256 }],
    [
      'startTrigger',
      {
        startFromTrigger: {
          trigger: new DateTimeTrigger({ moment: '2030-01-01T00:00:00Z' }, { queue: 'edge' }),
          method: 'resume',
          timeout: '10m',
          kwargs: { at: new Date('2030-01-01T00:00:00Z') },
        },
      },
      'plain',
      {
        startTrigger: {
          name: 'updraft.DateTimeTrigger',
          kwargs: '{"moment":"2030-01-01T00:00:00.000Z"}',
          queue: 'edge',
          nextMethod: 'resume',
          nextKwargs: '{"at":{"__updraft_type":"updraft.Date","value":"2030-01-01T00:00:00.000Z"}}',
          timeoutMs: 600_000,
        },
      },
    ],
    [
      'callbacks',
      { onRetry: function notify() {}, onFailure: { callback: function page() {}, retryDelay: '1m' } },
      'plain',
      { callbacks: { onRetry: [{ name: 'notify' }], onFailure: [{ name: 'page', retryDelayMs: 60_000 }] } },
    ],
  ];

  it.each(taskCases.filter(([name]) => name !== 'upstream'))(
    'task field %s',
    (_name, options, variant, expected) => {
      const serialized = serializeDag(build({}, options, variant), 'full.ts');
      const task = serialized.tasks.find((candidate) => candidate.taskId === (options.id ?? 'second'));
      expect(task).toMatchObject(expected);
      expect(roundTrip(serialized)).toEqual(serialized);
    },
  );

  it('task field upstream', () => {
    const built = dag({ id: 'up' }, (d) => {
      d.task('b', async () => 0);
      d.task('a', async () => 0);
      d.task({ id: 'c', upstream: ['b', 'a'] }, async () => 0);
    });
    const serialized = serializeDag(built, 'up.ts');
    expect(serialized.tasks[2]).toMatchObject({ taskId: 'c', upstream: ['a', 'b'] });
    expect(roundTrip(serialized)).toEqual(serialized);
  });

  it('covers every field of the serialized format', () => {
    const covered = [...dagCases.map(([, , field]) => field), 'fileloc', 'formatVersion', 'tasks'];
    expect(new Set(covered)).toEqual(new Set(Object.keys(serializedDagSchema.shape)));
    expect(new Set(taskCases.map(([name]) => name))).toEqual(
      new Set(Object.keys(serializedTaskSchema.shape)),
    );
  });
});

describe('dagVersionHash', () => {
  const baseline = serializeDag(build({}, {}), 'full.ts');
  const baselineHash = dagVersionHash(baseline);
  const dagChanges: Record<string, unknown> = {
    dagId: 'x',
    description: 'x',
    fileloc: 'x.ts',
    schedule: { type: 'rate', expression: 'rate(1 hour)', everyMs: 3_600_000 },
    startDate: '2026-01-01T00:00:00.000Z',
    endDate: '2026-01-01T00:00:00.000Z',
    catchup: true,
    maxActiveRuns: 2,
    maxActiveTasks: 2,
    params: { a: 1 },
    tags: ['x'],
    tasks: [],
    callbacks: { onFailure: [{ name: 'x' }] },
    dagRunTimeoutMs: 1,
    deadlines: [{ reference: 'queued_at', withinMs: 1, callbacks: [{ name: 'x' }] }],
  };
  const taskChanges: Record<string, unknown> = {
    taskId: 'x',
    operator: 'X',
    isBranch: true,
    upstream: [],
    args: [],
    retries: 9,
    retryDelayMs: 1,
    retryExponentialBackoff: true,
    maxRetryDelayMs: 1,
    executionTimeoutMs: 1,
    triggerRule: 'always',
    priorityWeight: 9,
    weightRule: 'upstream',
    queue: 'low',
    pool: 'x',
    poolSlots: 9,
    doc: 'x',
    memoryLimitMb: 512,
    startTrigger: { name: 'x.T', kwargs: '{}', nextMethod: 'go', nextKwargs: '{}', timeoutMs: null },
    callbacks: { onRetry: [{ name: 'x' }] },
  };

  it.each(Object.entries(dagChanges))('changes when the DAG field %s changes', (field, value) => {
    const changed = deserializeDag({ ...baseline, [field]: value });
    expect(dagVersionHash(changed)).not.toBe(baselineHash);
  });

  it.each(Object.entries(taskChanges))('changes when the task field %s changes', (field, value) => {
    const tasks = baseline.tasks.map((task) =>
      task.taskId === 'second' ? { ...task, [field]: value } : task,
    );
    const changed = deserializeDag({ ...baseline, tasks });
    expect(dagVersionHash(changed)).not.toBe(baselineHash);
  });

  it('has a change case for every field', () => {
    expect(new Set([...Object.keys(dagChanges), 'formatVersion'])).toEqual(
      new Set(Object.keys(serializedDagSchema.shape)),
    );
    expect(new Set(Object.keys(taskChanges))).toEqual(new Set(Object.keys(serializedTaskSchema.shape)));
  });

  it('does not depend on key order', () => {
    const reordered = Object.fromEntries(Object.entries(baseline).reverse()) as SerializedDag;
    expect(dagVersionHash(reordered)).toBe(baselineHash);
    expect(canonicalJson({ b: 1, a: { d: 2, c: 3 } })).toBe('{"a":{"c":3,"d":2},"b":1}');
  });
});

describe('deserializeDag', () => {
  it('refuses an unknown key, naming the DAG', () => {
    const serialized = serializeDag(build(), 'full.ts');
    expect(() => deserializeDag({ ...serialized, owner: 'me' })).toThrow(
      "Invalid serialized DAG 'full': unknown field 'owner'",
    );
  });

  it('refuses a bad task field with its path', () => {
    const serialized = serializeDag(build(), 'full.ts');
    const tasks = serialized.tasks.map((task) => ({ ...task, poolSlots: 0 }));
    expect(() => deserializeDag({ ...serialized, tasks })).toThrow(
      "Invalid serialized DAG 'full': field 'tasks.0.poolSlots':",
    );
  });

  it('refuses something that is not an object', () => {
    expect(() => deserializeDag('nope')).toThrow('Invalid serialized DAG: ');
  });
});

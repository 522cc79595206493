import { describe, expect, it } from 'vitest';
import { callbackEventOf, decodeOwed } from '#core/callbacks.ts';
import {
  averageDurationMs,
  callbacksOwedOnDeadlineMissed,
  deadlineOfCallback,
  deadlinesOnFinish,
  dueDeadlines,
  historyNeeded,
  nextDeadlineAtMs,
  runDeadlinesOf,
  type SerializedDeadline,
} from '#core/deadlines.ts';
import type { DagRun, RunDeadline } from '#core/models.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import { callbackIdOf } from '#engine/callbacks.ts';
import { missDueDeadlines, owedOnDeadlineMissed } from '#engine/deadlines.ts';
import { silentLogger } from '#engine/logger.ts';
import { ConditionFailedError } from '#store/errors.ts';

const callbacks = [{ name: 'late' }];
const run = { logicalDate: '2026-03-01T00:00:00.000Z', queuedAt: '2026-03-01T00:05:00.000Z' };
const finished = (startDate: string, endDate: string, state: DagRun['state'] = 'success') => ({
  state,
  startDate,
  endDate,
});
const deadline = (at: string, state: RunDeadline['state'] = 'pending', index = 0): RunDeadline => ({
  index,
  reference: 'queued_at',
  at,
  state,
});

describe('the time of a deadline', () => {
  it('counts within from the logical date, or from when the run was queued', () => {
    const deadlines: SerializedDeadline[] = [
      { reference: 'logical_date', withinMs: 1_800_000, callbacks },
      { reference: 'queued_at', withinMs: 60_000, callbacks },
    ];
    expect(runDeadlinesOf(deadlines, run, [])).toEqual([
      { index: 0, reference: 'logical_date', at: '2026-03-01T00:30:00.000Z', state: 'pending' },
      { index: 1, reference: 'queued_at', at: '2026-03-01T00:06:00.000Z', state: 'pending' },
    ]);
  });

  it('is the fixed time itself for a fixed-time deadline', () => {
    const deadlines: SerializedDeadline[] = [
      { reference: 'fixed_time', by: '2026-03-02T06:00:00.000Z', callbacks },
    ];
    expect(runDeadlinesOf(deadlines, run, [])[0]?.at).toBe('2026-03-02T06:00:00.000Z');
  });

  it('is the multiple of the average duration of the latest succeeded runs after the queued time', () => {
    const history = [
      finished('2026-02-28T00:00:00.000Z', '2026-02-28T00:10:00.000Z'),
      finished('2026-02-27T00:00:00.000Z', '2026-02-27T01:00:00.000Z', 'failed'),
      finished('2026-02-26T00:00:00.000Z', '2026-02-26T00:20:00.000Z'),
      finished('2026-02-25T00:00:00.000Z', '2026-02-25T05:00:00.000Z'),
    ];
    const deadlines: SerializedDeadline[] = [{ reference: 'average_duration', times: 2, over: 2, callbacks }];
    // The failed run does not count, nor the third succeeded one (over 2): (10 + 20) / 2 minutes, times 2.
    expect(runDeadlinesOf(deadlines, run, history)).toEqual([
      { index: 0, reference: 'average_duration', at: '2026-03-01T00:35:00.000Z', state: 'pending' },
    ]);
  });

  it('is not armed for an average-duration deadline without a succeeded run to measure, keeping the others', () => {
    const deadlines: SerializedDeadline[] = [
      { reference: 'average_duration', times: 2, over: 10, callbacks },
      { reference: 'queued_at', withinMs: 60_000, callbacks },
    ];
    const history = [finished('2026-02-27T00:00:00.000Z', '2026-02-27T01:00:00.000Z', 'failed')];
    expect(runDeadlinesOf(deadlines, run, history).map((d) => d.index)).toEqual([1]);
  });

  it('reads history only for average-duration deadlines, as many runs as the largest over', () => {
    expect(historyNeeded([{ reference: 'queued_at', withinMs: 1, callbacks }])).toBe(0);
    expect(
      historyNeeded([
        { reference: 'average_duration', times: 1, over: 3, callbacks },
        { reference: 'average_duration', times: 1, over: 7, callbacks },
      ]),
    ).toBe(7);
    expect(averageDurationMs([], 10)).toBeUndefined();
  });

  it('waits for `over` succeeded runs before it measures (one quick run is no measure)', () => {
    const two = [
      finished('2026-02-28T00:00:00.000Z', '2026-02-28T00:10:00.000Z'),
      finished('2026-02-26T00:00:00.000Z', '2026-02-26T00:20:00.000Z'),
    ];
    expect(averageDurationMs(two, 3)).toBeUndefined();
    expect(averageDurationMs(two, 2)).toBe(15 * 60_000);
  });
});

describe('deciding deadlines', () => {
  const deadlines = [
    deadline('2026-03-01T00:06:00.000Z', 'pending', 0),
    deadline('2026-03-01T00:05:00.000Z', 'missed', 1),
    deadline('2026-03-01T00:10:00.000Z', 'pending', 2),
  ];

  it('finds the pending deadlines whose time has come, at their time included', () => {
    expect(dueDeadlines({ deadlines }, Date.parse('2026-03-01T00:05:59.999Z'))).toEqual([]);
    expect(dueDeadlines({ deadlines }, Date.parse('2026-03-01T00:06:00.000Z'))).toEqual([
      { position: 0, deadline: deadlines[0] },
    ]);
  });

  it('wakes at the next pending deadline to come', () => {
    expect(nextDeadlineAtMs({ deadlines }, Date.parse('2026-03-01T00:00:00.000Z'))).toBe(
      Date.parse('2026-03-01T00:06:00.000Z'),
    );
    expect(nextDeadlineAtMs({ deadlines }, Date.parse('2026-03-01T00:06:00.000Z'))).toBe(
      Date.parse('2026-03-01T00:10:00.000Z'),
    );
    expect(nextDeadlineAtMs({ deadlines }, Date.parse('2026-03-01T00:10:00.000Z'))).toBeUndefined();
  });

  it('meets at finish the pending deadlines still to come and misses those come, leaving decided ones', () => {
    expect(
      deadlinesOnFinish({ deadlines }, Date.parse('2026-03-01T00:08:00.000Z')).map((d) => [
        d.position,
        d.state,
      ]),
    ).toEqual([
      [0, 'missed'],
      [2, 'met'],
    ]);
  });

  it('owes each callback of a missed deadline once, naming the deadline and its position', () => {
    const serialized: SerializedDeadline = {
      reference: 'queued_at',
      withinMs: 60_000,
      callbacks: [{ name: 'late' }, { name: 'page' }],
    };
    const owed = callbacksOwedOnDeadlineMissed(
      serialized,
      deadline('2026-03-01T00:06:00.000Z', 'pending', 3),
      {
        clearCount: 0,
        at: '2026-03-01T00:06:02.000Z',
      },
    );
    expect(owed.map(({ k, d, i, n }) => ({ k, d, i, n }))).toEqual([
      { k: 'deadline_missed', d: 3, i: 0, n: 0 },
      { k: 'deadline_missed', d: 3, i: 1, n: 0 },
    ]);
    expect(owed[0]?.e).toBe(
      'The DAG run did not finish by its deadline 2026-03-01T00:06:00.000Z (1m after it was queued)',
    );
  });

  it('encodes what a missed deadline owes so the store keeps it and reads it back', () => {
    const dag = { deadlines: [{ reference: 'queued_at' as const, withinMs: 60_000, callbacks }] };
    const [element] = owedOnDeadlineMissed(dag, deadline('2026-03-01T00:06:00.000Z'), {
      clearCount: 2,
      atMs: Date.parse('2026-03-01T00:07:00.000Z'),
    });
    expect(decodeOwed(element as string)).toMatchObject({ k: 'deadline_missed', d: 0, i: 0, n: 2 });
  });
});

describe('deadline callbacks', () => {
  const owner = { dagId: 'd', runId: 'r' };

  it('have one id per run, deadline and position, apart from the DAG callbacks at the same position', () => {
    const ids = new Set([
      callbackIdOf(owner, { k: 'deadline_missed', i: 0, n: 0, d: 0 }),
      callbackIdOf(owner, { k: 'deadline_missed', i: 0, n: 0, d: 1 }),
      callbackIdOf(owner, { k: 'deadline_missed', i: 1, n: 0, d: 0 }),
      callbackIdOf(owner, { k: 'dag_failure', i: 0, n: 0 }),
      callbackIdOf({ ...owner, runId: 'other' }, { k: 'deadline_missed', i: 0, n: 0, d: 0 }),
    ]);
    expect(ids.size).toBe(5);
  });

  it("name their deadline's list as their event", () => {
    expect(callbackEventOf({ kind: 'deadline_missed', deadlineIndex: 2 })).toBe('deadline[2]');
    expect(callbackEventOf({ kind: 'dag_failure' })).toBe('onFailure');
  });

  it('are told when the deadline was and how late the run was when it was missed', () => {
    const deadlines = [deadline('2026-03-01T00:06:00.000Z', 'missed', 1)];
    expect(
      deadlineOfCallback({ deadlineIndex: 1, owedAt: '2026-03-01T00:06:30.000Z' }, { deadlines }),
    ).toEqual({ at: '2026-03-01T00:06:00.000Z', reference: 'queued_at', lateByMs: 30_000 });
    expect(deadlineOfCallback({ owedAt: '2026-03-01T00:06:30.000Z' }, { deadlines })).toBeUndefined();
  });
});

describe('missing a deadline while clears race the pass', () => {
  const nowMs = Date.parse('2026-01-01T00:10:00Z');
  const runAt = (clearCount: number) =>
    ({
      dagId: 'd',
      runId: 'r',
      state: 'running',
      clearCount,
      deadlines: [
        { index: 0, reference: 'queued_at', at: '2026-01-01T00:05:00.000Z', state: 'pending' },
        { index: 1, reference: 'queued_at', at: '2026-01-01T00:20:00.000Z', state: 'pending' },
      ],
    }) as unknown as DagRun;

  it('gives up after its attempts, says so, counts it, and wakes the run a second later', async () => {
    let clears = 0;
    let writes = 0;
    const wakes: number[] = [];
    const warnings: string[] = [];
    const counters: string[] = [];
    const deps = {
      now: () => nowMs,
      store: {
        transitionDagRun: async () => {
          writes += 1;
          clears += 1;
          throw new ConditionFailedError('a clear changed the run');
        },
        getDagRun: async () => runAt(clears * 2),
      },
      timers: { wakeAt: async (_run: unknown, atMs: number) => void wakes.push(atMs) },
      metrics: { increment: (name: string) => void counters.push(name) },
      log: { ...silentLogger, warn: (message: string) => void warnings.push(message) },
    } as unknown as Parameters<typeof missDueDeadlines>[0];
    const dag = { dagId: 'd', deadlines: [{ callbacks: [] }, { callbacks: [] }] } as unknown as SerializedDag;
    const after = await missDueDeadlines(deps, runAt(0), dag);
    expect(writes).toBe(3);
    expect(after.deadlines?.[0]?.state).toBe('pending');
    expect(counters).toEqual(['deadlines.miss_deferred']);
    expect(warnings).toHaveLength(1);
    expect(wakes).toEqual([nowMs + 1_000]);
  });
});

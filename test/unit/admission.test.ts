import { describe, expect, it } from 'vitest';
import {
  type AdmissionCandidate,
  type AdmissionInput,
  admitTaskInstances,
  runOccupancyKey,
} from '#core/admission.ts';
import type { TaskInstance } from '#core/models.ts';
import { DAG_ID, LOGICAL_DATE, RUN_ID, taskInstance } from './helpers/factories.ts';

function candidate(
  taskId: string,
  options: {
    weight?: number;
    logicalDate?: string;
    pool?: string;
    poolSlots?: number;
    dagId?: string;
    runId?: string;
    maxActiveTasks?: number;
  } = {},
): AdmissionCandidate {
  const ti = taskInstance(taskId, {
    pool: options.pool ?? 'default_pool',
    poolSlots: options.poolSlots ?? 1,
    dagId: options.dagId ?? DAG_ID,
    ...(options.runId ? { runId: options.runId } : {}),
  });
  return {
    ti,
    priorityWeight: options.weight ?? 1,
    logicalDate: options.logicalDate ?? LOGICAL_DATE,
    maxActiveTasks: options.maxActiveTasks ?? 16,
  };
}

function admit(candidates: AdmissionCandidate[], overrides: Partial<AdmissionInput> = {}) {
  return admitTaskInstances({
    candidates,
    pools: { default_pool: 128 },
    poolOccupancy: {},
    runOccupancy: {},
    maxToAdmit: 100,
    ...overrides,
  });
}

const ids = (tis: TaskInstance[]) => tis.map((ti) => ti.taskId);
const starvingOf = (result: ReturnType<typeof admit>) => result.starving.map((s) => [s.ti.taskId, s.reason]);

describe('admitTaskInstances', () => {
  it('admits the highest priority weight first', () => {
    const result = admit([
      candidate('low', { weight: 1 }),
      candidate('high', { weight: 5 }),
      candidate('mid', { weight: 3 }),
    ]);
    expect(ids(result.admitted)).toEqual(['high', 'mid', 'low']);
  });

  it('admits the oldest logical date first at equal weight', () => {
    const result = admit([
      candidate('newer', { logicalDate: '2025-01-02T00:00:00.000Z', runId: 'r2' }),
      candidate('older', { logicalDate: '2025-01-01T00:00:00.000Z', runId: 'r1' }),
    ]);
    expect(ids(result.admitted)).toEqual(['older', 'newer']);
  });

  it('breaks remaining ties by dag id, run id, task id and map index', () => {
    const result = admit([
      candidate('b', { dagId: 'z' }),
      candidate('b'),
      candidate('a', { dagId: 'z' }),
      candidate('a'),
    ]);
    expect(result.admitted.map((ti) => `${ti.dagId}.${ti.taskId}`)).toEqual([
      `${DAG_ID}.a`,
      `${DAG_ID}.b`,
      'z.a',
      'z.b',
    ]);
  });

  it('reports TIs that do not fit an exhausted pool as starving', () => {
    const result = admit([candidate('first', { weight: 2 }), candidate('second')], {
      pools: { default_pool: 2 },
      poolOccupancy: { default_pool: 1 },
    });
    expect(ids(result.admitted)).toEqual(['first']);
    expect(starvingOf(result)).toEqual([['second', 'pool_full']]);
  });

  it('counts the slots of TIs admitted earlier in the pass', () => {
    const result = admit(
      [candidate('first', { weight: 2, poolSlots: 2 }), candidate('second', { poolSlots: 2 })],
      {
        pools: { default_pool: 3 },
      },
    );
    expect(ids(result.admitted)).toEqual(['first']);
    expect(starvingOf(result)).toEqual([['second', 'pool_full']]);
  });

  it('reports a TI asking more slots than its pool has as pool_too_small', () => {
    const result = admit([candidate('huge', { poolSlots: 3 })], { pools: { default_pool: 2 } });
    expect(result.admitted).toEqual([]);
    expect(starvingOf(result)).toEqual([['huge', 'pool_too_small']]);
  });

  it('reports a TI naming an unknown pool as unknown_pool', () => {
    const result = admit([candidate('lost', { pool: 'no_such_pool' })]);
    expect(result.admitted).toEqual([]);
    expect(starvingOf(result)).toEqual([['lost', 'unknown_pool']]);
  });

  it('holds a run at its maxActiveTasks while admitting other runs, of the same DAG too', () => {
    const result = admit(
      [
        candidate('a', { weight: 3, maxActiveTasks: 16 }),
        candidate('b', { weight: 2, maxActiveTasks: 16 }),
        candidate('other', { dagId: 'other_dag', maxActiveTasks: 16 }),
        candidate('next_run', { runId: 'manual__next', maxActiveTasks: 16 }),
      ],
      { runOccupancy: { [runOccupancyKey({ dagId: DAG_ID, runId: RUN_ID })]: 15 } },
    );
    expect(ids(result.admitted)).toEqual(['a', 'next_run', 'other']);
    expect(starvingOf(result)).toEqual([['b', 'max_active_tasks']]);
  });

  it('admits a lower-priority TI of another pool when a higher one does not fit', () => {
    const result = admit(
      [candidate('blocked', { weight: 10, pool: 'small' }), candidate('free', { pool: 'large' })],
      {
        pools: { small: 1, large: 1 },
        poolOccupancy: { small: 1 },
      },
    );
    expect(ids(result.admitted)).toEqual(['free']);
    expect(starvingOf(result)).toEqual([['blocked', 'pool_full']]);
  });

  it('stops at the pass limit and reports the rest as pass_limit', () => {
    const result = admit(
      [candidate('a', { weight: 3 }), candidate('b', { weight: 2 }), candidate('c', { weight: 1 })],
      {
        maxToAdmit: 2,
      },
    );
    expect(ids(result.admitted)).toEqual(['a', 'b']);
    expect(starvingOf(result)).toEqual([['c', 'pass_limit']]);
  });

  it('reports an unknown pool rather than the pass limit, since waiting never fixes it', () => {
    const result = admit([candidate('a', { weight: 2 }), candidate('lost', { pool: 'nope' })], {
      maxToAdmit: 1,
    });
    expect(starvingOf(result)).toEqual([['lost', 'unknown_pool']]);
  });

  it('does not change the occupancy records it was given', () => {
    const poolOccupancy = { default_pool: 1 };
    const runOccupancy = { [runOccupancyKey({ dagId: DAG_ID, runId: RUN_ID })]: 1 };
    admit([candidate('a')], { poolOccupancy, runOccupancy });
    expect([poolOccupancy, Object.values(runOccupancy)]).toEqual([{ default_pool: 1 }, [1]]);
  });
});

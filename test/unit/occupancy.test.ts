import { describe, expect, it } from 'vitest';
import { runOccupancyKey } from '#core/admission.ts';
import { OccupancyLedger } from '#engine/occupancy.ts';
import { WaitingRuns } from '#engine/waiting-runs.ts';
import { RUN_ID, taskInstance } from './helpers/factories.ts';

const run = (runId: string) => ({ dagId: 'example_dag', runId });

describe('OccupancyLedger', () => {
  it('counts slots of queued and running TIs by pool and by DAG', () => {
    const ledger = new OccupancyLedger();
    ledger.observe([
      taskInstance('a', { state: 'queued', pool: 'p', poolSlots: 2 }),
      taskInstance('b', { state: 'running', pool: 'p' }),
      taskInstance('c', { state: 'success', pool: 'p' }),
      taskInstance('d', { state: 'none', pool: 'p' }),
    ]);
    expect(ledger.poolOccupancy()).toEqual({ p: 3 });
    expect(ledger.runOccupancy()).toEqual({ [runOccupancyKey({ dagId: 'example_dag', runId: RUN_ID })]: 2 });
    expect(ledger.stateCounts()).toEqual({ queued: 1, running: 1, deferred: 0 });
  });

  it('is idempotent: seeing the same TI twice changes nothing', () => {
    const ledger = new OccupancyLedger();
    const ti = taskInstance('a', { state: 'running' });
    ledger.observe([ti]);
    ledger.observe([ti]);
    expect(ledger.size).toBe(1);
  });

  it('frees the slot when the TI finishes and forgets a finished run', () => {
    const ledger = new OccupancyLedger();
    ledger.observe([taskInstance('a', { state: 'running' }), taskInstance('b', { state: 'queued' })]);
    ledger.observe([taskInstance('a', { state: 'success' })]);
    expect(ledger.poolOccupancy()).toEqual({ default_pool: 1 });
    ledger.forgetRun('example_dag', RUN_ID);
    expect(ledger.size).toBe(0);
  });

  it('counts deferred TIs without giving them a slot', () => {
    const ledger = new OccupancyLedger();
    ledger.observe([taskInstance('a', { state: 'deferred' })]);
    expect(ledger.stateCounts()).toEqual({ queued: 0, running: 0, deferred: 1 });
    expect(ledger.poolOccupancy()).toEqual({});
  });
});

describe('WaitingRuns', () => {
  const starving = (pool: string, reason: 'pool_full' | 'max_active_tasks' = 'pool_full') => [
    { ti: taskInstance('w', { pool }), reason },
  ];

  it('offers a small pool to a waiting run as soon as one slot is free', () => {
    const ledger = new OccupancyLedger();
    const waiting = new WaitingRuns();
    waiting.update(run('b'), starving('small', 'pool_full'));
    ledger.observe([taskInstance('x', { runId: 'a', state: 'running', pool: 'small' })]);
    expect(waiting.due(ledger, { small: 2 }, new Set())).toEqual([run('b')]);
  });

  it('waits for a batch of free slots in a large pool while the executor has a backlog', () => {
    const ledger = new OccupancyLedger();
    const waiting = new WaitingRuns();
    waiting.update(run('b'), starving('big', 'pool_full'));
    const busy = Array.from({ length: 126 }, (_, i) =>
      taskInstance(`t${i}`, { runId: 'a', state: i < 100 ? 'queued' : 'running', pool: 'big' }),
    );
    ledger.observe(busy);
    expect(waiting.due(ledger, { big: 128 }, new Set())).toEqual([]);
    ledger.observe(busy.slice(0, 6).map((ti) => ({ ...ti, state: 'success' as const })));
    expect(waiting.due(ledger, { big: 128 }, new Set())).toEqual([run('b')]);
  });

  it('offers a single free slot when nothing is queued any more', () => {
    const ledger = new OccupancyLedger();
    const waiting = new WaitingRuns();
    waiting.update(run('b'), starving('big', 'pool_full'));
    ledger.observe(
      Array.from({ length: 127 }, (_, i) =>
        taskInstance(`t${i}`, { runId: 'a', state: 'running', pool: 'big' }),
      ),
    );
    expect(waiting.due(ledger, { big: 128 }, new Set())).toEqual([run('b')]);
  });

  it('leaves runs held by max_active_tasks to their own reports', () => {
    const ledger = new OccupancyLedger();
    const waiting = new WaitingRuns();
    waiting.update(run('b'), starving('default_pool', 'max_active_tasks'));
    expect(waiting.due(ledger, { default_pool: 128 }, new Set())).toEqual([]);
  });

  it('skips runs already processed in this batch', () => {
    const ledger = new OccupancyLedger();
    const waiting = new WaitingRuns();
    waiting.update(run('b'), starving('small'));
    expect(waiting.due(ledger, { small: 2 }, new Set(['example_dag\u0000b']))).toEqual([]);
  });

  it('drops a run once nothing of it starves', () => {
    const ledger = new OccupancyLedger();
    const waiting = new WaitingRuns();
    waiting.update(run('b'), starving('small', 'pool_full'));
    waiting.update(run('b'), []);
    expect(waiting.due(ledger, { small: 2 }, new Set())).toEqual([]);
  });
});

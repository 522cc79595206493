import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { BatchResult } from '#contracts/execution-api.ts';
import type { SchedulingRequest } from '#contracts/messages.ts';
import type { TaskInstanceKey } from '#core/models.ts';
import { dag } from '#sdk/index.ts';
import { type ApiHarness, startApiHarness, tiKey, tiPath, WORKER } from './api-harness.ts';

/**
 * `createFreshEngineApi` (src/api/stack.ts), as the Lambda-shape benchmark and the simulation
 * serve the API: one route table, a fresh engine instance (empty caches) for every request, one
 * shared by the calls of a batch.
 */

const three = dag({ id: 'three' }, (d) => {
  for (const id of ['a', 'b', 'c']) d.task(id, async () => 1);
});

let api: ApiHarness;

beforeAll(async () => {
  api = await startApiHarness({}, { freshEngine: true });
  await api.registerDags([three]);
});
afterAll(async () => {
  await api?.close();
});

type Queued = { key: TaskInstanceKey; token: string };

async function queuedRun(runId: string): Promise<Queued[]> {
  expect((await api.request('POST', '/api/v2/dags/three/dagRuns', { dag_run_id: runId })).status).toBe(201);
  await schedulingRequests(); // the trigger's
  return Promise.all(
    ['a', 'b', 'c'].map(async (id) => {
      const key = tiKey('three', runId, id);
      return { key, token: await api.queueTaskInstance(key) };
    }),
  );
}

async function schedulingRequests(): Promise<SchedulingRequest[]> {
  const messages = await api.queues.scheduler.receive({ maxMessages: 10, waitTimeMs: 0 });
  await api.queues.scheduler.delete(messages.map((m) => m.receiptHandle));
  return messages.map((m) => JSON.parse(m.body) as SchedulingRequest);
}

describe('the API with a fresh engine instance per request', () => {
  it('reads the DAG version again for every call: no cache outlives its request', async () => {
    const [a, b] = (await queuedRun('alone')) as [Queued, Queued, Queued];
    const dagReads = vi.spyOn(api.store, 'getSerializedDag');
    try {
      for (const { key, token } of [a, b]) {
        const started = await api.request('PATCH', tiPath(key, 'run'), WORKER, token);
        expect(started.status).toBe(200);
        // A token from an older scheduler (no DAG version): the refreshed one names it.
        expect((await api.tokens.check(token, api.clock.nowMs)).claims.kind).toBe('task_instance');
        expect('dagVersion' in (await api.tokens.check(token, api.clock.nowMs)).claims).toBe(false);
        const refreshed = started.headers.get('updraft-refreshed-token') ?? '';
        expect((await api.tokens.check(refreshed, api.clock.nowMs)).claims).toMatchObject({
          ...key,
          dagVersion: (started.body as { dag_version: string }).dag_version,
        });
      }
      expect(dagReads).toHaveBeenCalledTimes(2);
      const report = await api.request(
        'PATCH',
        tiPath(a.key, 'state'),
        { state: 'success', report_id: randomUUID(), xcom: '1' },
        a.token,
      );
      expect(report.status).toBe(200);
      expect(dagReads).toHaveBeenCalledTimes(3);
    } finally {
      dagReads.mockRestore();
    }
    // The report's scheduling request was sent before its answer, by the request's own notifier.
    expect(await schedulingRequests()).toEqual([
      expect.objectContaining({ dag_id: 'three', run_id: 'alone' }),
    ]);
  });

  it("shares one instance among a batch's calls: one DAG read, one scheduling request", async () => {
    const tis = await queuedRun('batched');
    const dagReads = vi.spyOn(api.store, 'getSerializedDag');
    try {
      const starts = await api.request<{ results: BatchResult[] }>(
        'POST',
        '/execution/batch',
        {
          calls: tis.map(({ key, token }) => ({
            method: 'PATCH',
            path: tiPath(key, 'run'),
            token,
            body: WORKER,
          })),
        },
        null,
      );
      expect(starts.status).toBe(200);
      expect(starts.body.results.map((result) => result.status)).toEqual([200, 200, 200]);
      expect(dagReads).toHaveBeenCalledTimes(1);
      const reports = await api.request<{ results: BatchResult[] }>(
        'POST',
        '/execution/batch',
        {
          calls: tis.map(({ key, token }) => ({
            method: 'PATCH',
            path: tiPath(key, 'state'),
            token,
            body: { state: 'success', report_id: randomUUID(), xcom: '1' },
          })),
        },
        null,
      );
      expect(reports.body.results.map((result) => result.status)).toEqual([200, 200, 200]);
      expect(dagReads).toHaveBeenCalledTimes(2);
    } finally {
      dagReads.mockRestore();
    }
    const requests = await schedulingRequests();
    expect(requests).toHaveLength(1);
    expect(requests[0]).toMatchObject({ dag_id: 'three', run_id: 'batched' });
  });

  it("reads no run item for a report when the token names the run's DAG version", async () => {
    const [a, b] = (await queuedRun('versioned')) as [Queued, Queued, Queued];
    const run = await api.store.getDagRun({ dagId: 'three', runId: 'versioned' });
    const version = run!.dagVersion;
    // As the scheduler's WorkloadSender issues them: with the run's DAG version.
    const named = await api.tokens.issue({ ...a.key, tryNumber: 1, dagVersion: version }, api.clock.nowMs);
    // A token naming another version (never signed by this API): the run's version wins.
    const wrong = await api.tokens.issue(
      { ...b.key, tryNumber: 1, dagVersion: 'f'.repeat(64) },
      api.clock.nowMs,
    );
    const runReads = vi.spyOn(api.store, 'getDagRun');
    const dagReads = vi.spyOn(api.store, 'getSerializedDag');
    const bothReads = vi.spyOn(api.store, 'getDagRunsWithDagVersions');
    const counts = () => [
      bothReads.mock.calls.length,
      runReads.mock.calls.length,
      dagReads.mock.calls.length,
    ];
    try {
      // The start reads the run and the DAG version in one request.
      const started = await api.request('PATCH', tiPath(a.key, 'run'), WORKER, named);
      expect(started.status).toBe(200);
      expect(started.body).toMatchObject({ dag_version: version, task_id: 'a' });
      expect(counts()).toEqual([1, 0, 0]);
      const refreshed = started.headers.get('updraft-refreshed-token');
      expect(refreshed).toBeTruthy();
      const report = await api.request(
        'PATCH',
        tiPath(a.key, 'state'),
        { state: 'success', report_id: randomUUID(), xcom: '1' },
        refreshed,
      );
      expect(report.status).toBe(200);
      // The refreshed token kept the version: the report read the DAG and no run.
      expect(counts()).toEqual([1, 0, 1]);
      expect(await api.store.getTaskInstance(a.key)).toMatchObject({ state: 'success' });

      const other = await api.request('PATCH', tiPath(b.key, 'run'), WORKER, wrong);
      expect(other.status).toBe(200);
      expect(other.body).toMatchObject({ dag_version: version, task_id: 'b' });
      expect(bothReads.mock.calls.at(-1)?.[1]).toEqual([{ dagId: 'three', versionHash: 'f'.repeat(64) }]);
      expect(dagReads.mock.calls.at(-1)?.[1]).toBe(version);
    } finally {
      runReads.mockRestore();
      dagReads.mockRestore();
      bothReads.mockRestore();
    }
  });

  it("reads a batch's runs and DAG version in one request when its calls name the version", async () => {
    const tis = await queuedRun('named_batch');
    const run = await api.store.getDagRun({ dagId: 'three', runId: 'named_batch' });
    const tokens = await Promise.all(
      tis.map(({ key }) =>
        api.tokens.issue({ ...key, tryNumber: 1, dagVersion: run!.dagVersion }, api.clock.nowMs),
      ),
    );
    const runReads = vi.spyOn(api.store, 'getDagRun');
    const dagReads = vi.spyOn(api.store, 'getSerializedDag');
    const bothReads = vi.spyOn(api.store, 'getDagRunsWithDagVersions');
    try {
      const starts = await api.request<{ results: BatchResult[] }>(
        'POST',
        '/execution/batch',
        {
          calls: tis.map(({ key }, index) => ({
            method: 'PATCH',
            path: tiPath(key, 'run'),
            token: tokens[index],
            body: WORKER,
          })),
        },
        null,
      );
      expect(starts.body.results.map((result) => result.status)).toEqual([200, 200, 200]);
      // The calls, served side by side, ask in the same turn: one request for the run and the version.
      expect([bothReads.mock.calls.length, dagReads.mock.calls.length, runReads.mock.calls.length]).toEqual([
        1, 0, 0,
      ]);
      expect(bothReads.mock.calls[0]?.[0]).toEqual([{ dagId: 'three', runId: 'named_batch' }]);
      expect(bothReads.mock.calls[0]?.[1]).toEqual([{ dagId: 'three', versionHash: run!.dagVersion }]);
    } finally {
      runReads.mockRestore();
      dagReads.mockRestore();
      bothReads.mockRestore();
    }
  });
});

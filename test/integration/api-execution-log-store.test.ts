import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskInstanceKey } from '#core/models.ts';
import { pathSegmentOf } from '#logs/file-store.ts';
import { dag } from '#sdk/index.ts';
import { type ApiHarness, startApiHarness, tiKey, tiPath, WORKER } from './api-harness.ts';

/**
 * A log store that fails a chunk after the call's task instance write succeeded: the call was
 * recorded, so it is answered 200 with `log_accepted: false` (never a 5xx, which the worker
 * takes for an unreachable API and, on heartbeats, answers by stopping a healthy task).
 */
let api: ApiHarness;
let runs = 0;

beforeAll(async () => {
  api = await startApiHarness();
  await api.registerDags([
    dag({ id: 'logged', defaultArgs: { retries: 3 } }, (d) => d.task('work', async () => 1)),
  ]);
});
afterAll(async () => {
  await api?.close();
});

async function startedTry(): Promise<{ key: TaskInstanceKey; token: string }> {
  const runId = `r${++runs}`;
  expect((await api.request('POST', '/api/v2/dags/logged/dagRuns', { dag_run_id: runId })).status).toBe(201);
  const key = tiKey('logged', runId, 'work');
  const token = await api.queueTaskInstance(key);
  expect((await api.request('PATCH', tiPath(key, 'run'), WORKER, token)).status).toBe(200);
  return { key, token };
}

/** Makes the try's log folder impossible to create: a file where the folder should be. */
async function breakLogFolder(key: TaskInstanceKey): Promise<void> {
  const runFolder = join(
    api.settings.home,
    'logs',
    `dag_id=${pathSegmentOf(key.dagId)}`,
    `run_id=${pathSegmentOf(key.runId)}`,
  );
  await mkdir(runFolder, { recursive: true });
  await writeFile(join(runFolder, `task_id=${pathSegmentOf(key.taskId)}`), 'not a folder');
}

const failedLogWrites = async () => (await api.metrics.snapshot()).counters['api.log_writes_failed'] ?? 0;

describe('a log store failure after the call was recorded', () => {
  it('a heartbeat is answered 200 with log_accepted false, recorded, and counted', async () => {
    const { key, token } = await startedTry();
    await breakLogFolder(key);
    const counted = await failedLogWrites();
    api.clock.advance(10_000);
    const beat = await api.request(
      'PUT',
      tiPath(key, 'heartbeat'),
      { log: { seq: 1, text: 'hello\n' } },
      token,
    );
    expect(beat.status).toBe(200);
    expect(beat.body).toEqual({ ok: true, log_accepted: false });
    expect((await api.store.getTaskInstance(key))?.heartbeatAt).toBe(api.clock.iso());
    expect(await failedLogWrites()).toBe(counted + 1);
  });

  it('a heartbeat without a chunk does not mention log_accepted', async () => {
    const { key, token } = await startedTry();
    await breakLogFolder(key);
    const beat = await api.request('PUT', tiPath(key, 'heartbeat'), {}, token);
    expect(beat).toMatchObject({ status: 200, body: { ok: true } });
    expect(beat.body).not.toHaveProperty('log_accepted');
  });

  it('a report is answered 200 with log_accepted false and its outcome is recorded', async () => {
    const { key, token } = await startedTry();
    await breakLogFolder(key);
    const counted = await failedLogWrites();
    const report = { state: 'success', xcom: '1', report_id: randomUUID(), log: { seq: 1, text: 'bye\n' } };
    const first = await api.request('PATCH', tiPath(key, 'state'), report, token);
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ ok: true, log_accepted: false });
    expect((await api.store.getTaskInstance(key))?.state).toBe('success');
    // A retry of the same report (its answer lost) is a duplicate, and says the same of its chunk.
    const again = await api.request('PATCH', tiPath(key, 'state'), report, token);
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ ok: true, duplicate: true, log_accepted: false });
    expect(await failedLogWrites()).toBe(counted + 2);
  });

  it('a call refused by its state check is still a 409, its chunk not written', async () => {
    const { key, token } = await startedTry();
    await breakLogFolder(key);
    await api.store.transitionTaskInstance(
      key,
      { state: 'running', tryNumber: 1 },
      { state: 'failed' },
      { owed: [] },
    );
    const beat = await api.request(
      'PUT',
      tiPath(key, 'heartbeat'),
      { log: { seq: 1, text: 'late\n' } },
      token,
    );
    expect(beat.status).toBe(409);
  });
});

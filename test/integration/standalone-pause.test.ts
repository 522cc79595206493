import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '#config/settings.ts';
import type { DagRun, TaskInstanceCollection } from '#contracts/public-api.ts';
import { silentLogger } from '#engine/logger.ts';
import { type Standalone, startStandalone } from '#standalone/services.ts';

/** Pause applies from the moment the API acknowledged it, not one scheduler tick later. */
describe('pause then trigger at once', () => {
  let home: string;
  let standalone: Standalone;
  const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const response = await fetch(`${standalone.apiUrl}/api/v2${path}`, {
      method,
      headers: {
        authorization: `Bearer ${standalone.apiToken}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  };

  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'updraft-pause-'));
    const settings = loadSettings({
      UPDRAFT_HOME: home,
      PORT: '0',
      UPDRAFT_DAGS_FOLDER: resolve('dags'),
      UPDRAFT_DAG_REFRESH_INTERVAL_MS: '0',
      UPDRAFT_METRICS_LOG_INTERVAL_MS: '0',
      UPDRAFT_SCHEDULER_TICK_MS: '200',
    });
    standalone = await startStandalone(settings, { log: silentLogger, inMemoryStore: true });
  }, 60_000);

  afterAll(async () => {
    await standalone?.stop();
    await rm(home, { recursive: true, force: true });
  });

  it('keeps the new run queued, with no task queued, until the DAG is unpaused', async () => {
    await api('PATCH', '/dags/example_branching', { is_paused: true });
    await api('POST', '/dags/example_branching/dagRuns', { dag_run_id: 'right_after_pause' });
    await sleep(2_000); // ten ticks, and the scheduling request the trigger sent

    const run = await api<DagRun>('GET', '/dags/example_branching/dagRuns/right_after_pause');
    expect(run.state).toBe('queued');
    const tis = await api<TaskInstanceCollection>(
      'GET',
      '/dags/example_branching/dagRuns/right_after_pause/taskInstances',
    );
    expect(tis.task_instances.every((ti) => ti.state === null)).toBe(true);

    await api('PATCH', '/dags/example_branching', { is_paused: false });
    const deadline = Date.now() + 45_000;
    let finished: DagRun | undefined;
    while (Date.now() < deadline && !finished) {
      const current = await api<DagRun>('GET', '/dags/example_branching/dagRuns/right_after_pause');
      if (current.state === 'success' || current.state === 'failed') finished = current;
      else await sleep(100);
    }
    expect(finished?.state).toBe('success');
  }, 90_000);
});

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { loadSettings } from '#config/settings.ts';
import type { DagRun } from '#contracts/public-api.ts';
import { silentLogger } from '#engine/logger.ts';
import { type Standalone, startStandalone } from '#standalone/services.ts';

/**
 * Standalone's Lambda shape (`freshInstances`, the benchmark's `lambda_shape`) sends the task
 * workers' Execution API calls in batches, as the worker function does; in process they go one by one.
 */
describe('standalone in the Lambda shape', () => {
  let home: string | undefined;
  let standalone: Standalone | undefined;

  afterEach(async () => {
    await standalone?.stop();
    if (home) await rm(home, { recursive: true, force: true });
    [standalone, home] = [undefined, undefined];
  });

  async function runFanOut(freshInstances: boolean): Promise<Record<string, number>> {
    home = await mkdtemp(join(tmpdir(), 'updraft-lambda-shape-'));
    const settings = loadSettings({
      UPDRAFT_HOME: home,
      PORT: '0',
      UPDRAFT_DAGS_FOLDER: resolve('bench/dags'),
      UPDRAFT_DAG_REFRESH_INTERVAL_MS: '0',
      UPDRAFT_METRICS_LOG_INTERVAL_MS: '0',
      UPDRAFT_DAGS_ARE_PAUSED_AT_CREATION: 'false',
      UPDRAFT_WORKER_SLOTS: '4',
    });
    const started = await startStandalone(settings, {
      log: silentLogger,
      inMemoryStore: true,
      freshInstances,
      triggerer: false,
    });
    standalone = started;
    const headers = { authorization: `Bearer ${started.apiToken}`, 'content-type': 'application/json' };
    const base = `${started.apiUrl}/api/v2/dags/bench_fanout/dagRuns`;
    const created = await fetch(base, {
      method: 'POST',
      headers,
      body: JSON.stringify({ dag_run_id: 'r1' }),
    });
    expect(created.status).toBe(201);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const run = (await (await fetch(`${base}/r1`, { headers })).json()) as DagRun;
      if (run.state === 'success') break;
      expect(run.state).not.toBe('failed');
      if (Date.now() > deadline) throw new Error(`run still ${run.state}`);
      await sleep(100);
    }
    return (await started.metrics.snapshot()).counters;
  }

  it("runs a 100-task fan-out with the workers' calls batched", async () => {
    const counters = await runFanOut(true);
    expect(counters['execution_api.batches']).toBeGreaterThan(0);
    // Starts and reports of 100 tries: most travel with others.
    expect(counters['execution_api.batched_calls']).toBeGreaterThan(100);
  }, 90_000);

  it('sends them one by one in process', async () => {
    const counters = await runFanOut(false);
    expect(counters['execution_api.batches'] ?? 0).toBe(0);
  }, 90_000);
});

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadSettings, type Settings } from '#config/settings.ts';
import type { DagRunKey } from '#core/models.ts';
import { createLogger } from '#engine/logger.ts';
import { type Standalone, startStandalone } from '#standalone/services.ts';
import { CallerCounter } from './counter.ts';

/**
 * `in_process`: one long-lived engine, as `updraft standalone` runs.
 * `lambda_shape`: every scheduling batch, tick and API call in a fresh engine instance with empty
 * caches, as separate Lambda invocations would run them (the API's stateless route table is built
 * once: see `createFreshEngineApi`).
 */
export const MODES = ['in_process', 'lambda_shape'] as const;
export type Mode = (typeof MODES)[number];

export interface BenchInstance {
  mode: Mode;
  standalone: Standalone;
  counter: CallerCounter;
  settings: Settings;
  trigger(dagId: string, runId: string): Promise<DagRunKey>;
  /** Triggers the runs and resolves when all of them finished (throws when one failed or timed out). */
  runAll(runs: DagRunKey[], timeoutMs: number): Promise<void>;
  /** Reads each run back (after the costs were taken, so these reads are not counted). */
  verifySucceeded(runs: DagRunKey[]): Promise<void>;
  stop(): Promise<void>;
}

/** A standalone instance in its own temporary home, with the same settings for every mode. */
export async function startInstance(mode: Mode, options: { onDisk: boolean }): Promise<BenchInstance> {
  const home = await mkdtemp(join(tmpdir(), `updraft-bench-${mode}-`));
  const settings = loadSettings({
    ...process.env,
    UPDRAFT_HOME: home,
    PORT: '0',
    UPDRAFT_DAGS_FOLDER: resolve('bench/dags'),
    UPDRAFT_DAG_REFRESH_INTERVAL_MS: '0',
    UPDRAFT_METRICS_LOG_INTERVAL_MS: '0',
    UPDRAFT_LOG_LEVEL: 'warn',
  });
  const counter = new CallerCounter();
  const standalone = await startStandalone(settings, {
    log: createLogger({ level: 'warn' }),
    inMemoryStore: !options.onDisk,
    requestCounter: counter,
    freshInstances: mode === 'lambda_shape',
  });
  counter.watchSnapshots(standalone.store);
  const headers = { authorization: `Bearer ${standalone.apiToken}`, 'content-type': 'application/json' };

  async function trigger(dagId: string, runId: string): Promise<DagRunKey> {
    const response = await fetch(`${standalone.apiUrl}/api/v2/dags/${dagId}/dagRuns`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ dag_run_id: runId }),
    });
    if (response.status !== 201)
      throw new Error(`trigger ${dagId}: ${response.status} ${await response.text()}`);
    return { dagId, runId };
  }

  /**
   * Waits on the scheduler's run counters rather than polling the store, so the benchmark's own
   * reads neither load the store nor show up in the costs. The counters are read before the
   * runs are triggered, so a run that finishes at once is not missed.
   */
  async function runAll(runs: DagRunKey[], timeoutMs: number): Promise<void> {
    const counters = async () => (await standalone.metrics.snapshot()).counters;
    const before = await counters();
    await Promise.all(runs.map((run) => trigger(run.dagId, run.runId)));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const now = await counters();
      if ((now['dag_runs.failed'] ?? 0) > (before['dag_runs.failed'] ?? 0))
        throw new Error(`${mode}: a benchmark run failed`);
      const finished = (now['dag_runs.success'] ?? 0) - (before['dag_runs.success'] ?? 0);
      if (finished >= runs.length) break;
      if (Date.now() > deadline)
        throw new Error(`${mode}: ${runs.length - finished} runs still not finished after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async function verifySucceeded(runs: DagRunKey[]): Promise<void> {
    for (const run of runs) {
      if ((await standalone.store.getDagRun(run))?.state !== 'success')
        throw new Error(`${mode}: run ${run.runId} did not succeed`);
    }
  }

  return {
    mode,
    standalone,
    counter,
    settings,
    trigger,
    runAll,
    verifySucceeded,
    async stop() {
      await standalone.stop();
      await rm(home, { recursive: true, force: true });
    },
  };
}

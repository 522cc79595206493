import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '#config/settings.ts';
import type { Dag, DagCollection, DagRun, TaskInstance, XComEntry } from '#contracts/public-api.ts';
import { silentLogger } from '#engine/logger.ts';
import { type Standalone, startStandalone } from '#standalone/services.ts';

/**
 * DAG versions with their code bundles, end to end in standalone: a run executes the code of the
 * version it was created with, whatever the DAG file and its helper modules are now.
 */

const REPO_ROOT = resolve('.');
/** Inside the repository (in its ignored `.updraft`), so the DAG files' `import 'updraft'` resolves. */
let dagsFolder: string;
let home: string;
let standalone: Standalone;

/** A DAG whose `wait` task holds the run until the file named by `conf.go` exists. */
const dagFile = (dagId: string, imports: string, report: string) =>
  [
    "import { existsSync } from 'node:fs';",
    "import { setTimeout as sleep } from 'node:timers/promises';",
    "import { dag } from 'updraft';",
    imports,
    `export default dag({ id: '${dagId}' }, (d) => {`,
    "  d.task('wait', async (ctx) => { while (!existsSync(String(ctx.conf.go))) await sleep(50); });",
    `  d.task('report', async () => ${report}).after('wait');`,
    '});',
    '',
  ].join('\n');

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${standalone.apiUrl}/api/v2${path}`, {
    method,
    headers: {
      authorization: `Bearer ${standalone.apiToken}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
  return JSON.parse(text) as T;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await sleep(100);
  }
  throw new Error(`Timed out waiting for ${what}`);
}

const trigger = (dagId: string, runId: string, go: string) =>
  api<DagRun>('POST', `/dags/${dagId}/dagRuns`, { dag_run_id: runId, conf: { go } });
const taskState = async (dagId: string, runId: string, taskId: string) =>
  (await api<TaskInstance>('GET', `/dags/${dagId}/dagRuns/${runId}/taskInstances/${taskId}`)).state;
const finished = (dagId: string, runId: string) =>
  waitFor(`run ${runId} to finish`, async () => {
    const run = await api<DagRun>('GET', `/dags/${dagId}/dagRuns/${runId}`);
    return run.state === 'success' || run.state === 'failed' ? run : undefined;
  });
const reported = async (dagId: string, runId: string) =>
  (
    await api<XComEntry>(
      'GET',
      `/dags/${dagId}/dagRuns/${runId}/taskInstances/report/xcomEntries/return_value`,
    )
  ).value;

beforeAll(async () => {
  await mkdir(join(REPO_ROOT, '.updraft'), { recursive: true });
  dagsFolder = await mkdtemp(join(REPO_ROOT, '.updraft', 'test-dag-bundles-'));
  home = await mkdtemp(join(tmpdir(), 'updraft-bundles-home-'));
  await writeFile(join(dagsFolder, 'pinned.ts'), dagFile('pinned', '', "'report from v1'"));
  await writeFile(join(dagsFolder, '_greeting.ts'), "export const greeting = 'one';\n");
  await writeFile(
    join(dagsFolder, 'helpered.ts'),
    dagFile('helpered', "import { greeting } from './_greeting.ts';", 'greeting'),
  );
  await writeFile(join(dagsFolder, 'quits.ts'), 'process.exit(3);\n');
  const settings = loadSettings({
    UPDRAFT_HOME: home,
    PORT: '0',
    UPDRAFT_DAGS_FOLDER: dagsFolder,
    UPDRAFT_DAG_REFRESH_INTERVAL_MS: '0',
    UPDRAFT_METRICS_LOG_INTERVAL_MS: '0',
    UPDRAFT_HEARTBEAT_INTERVAL_MS: '500',
    UPDRAFT_SCHEDULER_TICK_MS: '500',
    UPDRAFT_WORKER_SLOTS: '4',
  });
  standalone = await startStandalone(settings, { log: silentLogger, inMemoryStore: true, cwd: REPO_ROOT });
}, 90_000);

afterAll(async () => {
  await standalone?.stop();
  await rm(dagsFolder, { recursive: true, force: true });
  await rm(home, { recursive: true, force: true });
});

describe('DAG parsing in standalone', () => {
  it('lists a file that exits at import as an import error and registers the other DAGs', async () => {
    const collection = await api<DagCollection>('GET', '/dags');
    expect(collection.dags.map((dag) => dag.dag_id).sort()).toEqual(['helpered', 'pinned']);
    expect(collection.import_errors.map((error) => [error.filename, error.stack_trace])).toEqual([
      ['quits.ts', expect.stringContaining('exited with code 3 during import')],
    ]);
  });
});

describe('DAG versions with code bundles', () => {
  it('runs a run on its version when the DAG file breaks while the run executes', async () => {
    const go = join(home, 'go-pinned');
    const run = await trigger('pinned', 'before_break', go);
    await waitFor('wait to run', async () =>
      (await taskState('pinned', 'before_break', 'wait')) === 'running' ? true : undefined,
    );

    await writeFile(
      join(dagsFolder, 'pinned.ts'),
      "import { dag } from 'updraft';\nexport default {{ broken\n",
    );
    await standalone.refreshDags();
    const collection = await api<DagCollection>('GET', '/dags');
    expect(collection.import_errors.find((error) => error.filename === 'pinned.ts')?.stack_trace).toMatch(
      /SyntaxError.*pinned\.ts:2/,
    );
    expect(collection.dags.find((dag) => dag.dag_id === 'pinned')?.dag_version).toBe(run.dag_version);
    await writeFile(go, '');

    expect((await finished('pinned', 'before_break')).state).toBe('success');
    expect(await reported('pinned', 'before_break')).toBe('report from v1');
  }, 60_000);

  it('runs each run with the helper module of its own version', async () => {
    const go = join(home, 'go-helpered');
    const first = await trigger('helpered', 'with_one', go);
    await waitFor('wait to run', async () =>
      (await taskState('helpered', 'with_one', 'wait')) === 'running' ? true : undefined,
    );

    await writeFile(join(dagsFolder, '_greeting.ts'), "export const greeting = 'two';\n");
    await standalone.refreshDags();
    const changed = await api<Dag>('GET', '/dags/helpered');
    expect(changed.dag_version).not.toBe(first.dag_version);
    const second = await trigger('helpered', 'with_two', go);
    expect(second.dag_version).toBe(changed.dag_version);
    await writeFile(go, '');

    expect((await finished('helpered', 'with_one')).state).toBe('success');
    expect((await finished('helpered', 'with_two')).state).toBe('success');
    expect(await reported('helpered', 'with_one')).toBe('one');
    expect(await reported('helpered', 'with_two')).toBe('two');
    const runs = await api<{ dag_runs: DagRun[] }>('GET', '/dags/helpered/dagRuns');
    expect(Object.fromEntries(runs.dag_runs.map((run) => [run.dag_run_id, run.dag_version]))).toEqual({
      with_one: first.dag_version,
      with_two: changed.dag_version,
    });
  }, 60_000);
});

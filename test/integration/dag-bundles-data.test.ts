import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleStore } from '#bundles/store.ts';
import type { StartedTask } from '#contracts/execution-api.ts';
import { DagFileParser } from '#standalone/parse-dags.ts';
import { ProcessTaskExecutor } from '#worker/executor.ts';
import { startedTaskFixture } from '../unit/helpers/worker-fakes.ts';

/**
 * A DAG file that reads a sibling data file at import time (a common pattern for config): the
 * parser records the read, copies the data file into the bundle and hashes it into the version,
 * so the bundle's copy of the DAG file imports in a task runner and a change to the data file is
 * a new version.
 */
const REPO_ROOT = resolve('.');
let dagsFolder: string;
let home: string;
let parser: DagFileParser;
let executor: ProcessTaskExecutor;

beforeAll(async () => {
  await mkdir(join(REPO_ROOT, '.updraft'), { recursive: true });
  dagsFolder = await mkdtemp(join(REPO_ROOT, '.updraft', 'dag-bundles-data-'));
  home = await mkdtemp(join(tmpdir(), 'updraft-bundles-data-home-'));
  await writeFile(join(dagsFolder, 'tables.json'), '["a","b"]\n');
  await writeFile(
    join(dagsFolder, 'configured.ts'),
    [
      "import { readFileSync } from 'node:fs';",
      "import { dag } from 'updraft';",
      "const tables: string[] = JSON.parse(readFileSync(new URL('./tables.json', import.meta.url), 'utf8'));",
      "export default dag({ id: 'configured' }, (d) => {",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the DAG file's own template literal
      '  for (const table of tables) d.task(`load_${table}`, async () => table);',
      '});',
      '',
    ].join('\n'),
  );
  parser = new DagFileParser({
    dagsFolder,
    cwd: REPO_ROOT,
    fileTimeoutMs: 10_000,
    bundles: new BundleStore(join(home, 'bundles')),
  });
  executor = new ProcessTaskExecutor({ dagsFolder, cwd: REPO_ROOT, bundlesFolder: join(home, 'bundles') });
}, 60_000);

afterAll(async () => {
  parser?.close();
  executor?.close();
  await rm(dagsFolder, { recursive: true, force: true });
  await rm(home, { recursive: true, force: true });
});

const startedTask = (versionHash: string, taskId: string): StartedTask =>
  startedTaskFixture({
    dag_id: 'configured',
    dag_run_id: `r_${taskId}`,
    task_id: taskId,
    fileloc: 'configured.ts',
    dag_version: versionHash,
    memory_limit_mb: null,
    max_tries: 1,
    log_chunk_max_bytes: 262_144,
  });

async function runTask(versionHash: string, taskId: string) {
  const logs: string[] = [];
  const outcome = await executor.run(startedTask(versionHash, taskId), [], {
    onLog: (text) => logs.push(text),
    pullXCom: async () => null,
    signal: new AbortController().signal,
  });
  return { outcome, logs: logs.join('') };
}

describe('a DAG file that reads a sibling data file at import', () => {
  let firstVersion: string;

  it('parses, and its bundle holds the data file, so its tasks run', async () => {
    const parsed = await parser.parse();
    expect(parsed.errors).toEqual([]);
    firstVersion = parsed.dags[0]!.versionHash;
    const bundle = await new BundleStore(join(home, 'bundles')).locate('configured', firstVersion);
    expect(bundle?.manifest.files.map((file) => file.path)).toEqual(['configured.ts', 'tables.json']);
    const { outcome, logs } = await runTask(firstVersion, 'load_a');
    expect(outcome, logs).toMatchObject({ kind: 'success' });
  }, 60_000);

  it('is parsed again into a new version when the data file changes', async () => {
    await writeFile(join(dagsFolder, 'tables.json'), '["a","b","c"]\n');
    const parsed = await parser.parse();
    expect(parsed.errors).toEqual([]);
    const [current] = parsed.dags;
    expect(current?.versionHash).not.toBe(firstVersion);
    expect(current?.dag.tasks.map((task) => task.taskId).sort()).toEqual(['load_a', 'load_b', 'load_c']);
    const { outcome, logs } = await runTask(current!.versionHash, 'load_c');
    expect(outcome, logs).toMatchObject({ kind: 'success' });
  }, 60_000);
});

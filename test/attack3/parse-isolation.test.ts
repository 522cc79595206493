import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BundleStore } from '#bundles/store.ts';
import type { ParsedDagsFolder } from '#engine/dag-registry.ts';
import { DagFileParser } from '#standalone/parse-dags.ts';

const REPO_ROOT = resolve('.');
const SDK_URL = pathToFileURL(resolve('src/sdk/index.ts')).href;
const goodDag = (id: string, extra = '') =>
  `import { dag } from '${SDK_URL}';\n${extra}\nexport default dag({ id: '${id}' }, (d) => { d.task('only', async () => 1); });\n`;
/** A good DAG file that takes ~ms of synchronous work to import. */
const slowGoodDag = (id: string, ms: number) =>
  goodDag(id, `{ const end = Date.now() + ${ms}; while (Date.now() < end) {} }`);

let folder: string;
let home: string;
let parser: DagFileParser | undefined;

const idsOf = (parsed: ParsedDagsFolder) => parsed.dags.map(({ dag }) => dag.dagId).sort();
const erroredFiles = (parsed: ParsedDagsFolder) => parsed.errors.map((error) => error.fileloc).sort();

beforeEach(async () => {
  folder = await mkdtemp(join(tmpdir(), 'attack3-parse-'));
  home = await mkdtemp(join(tmpdir(), 'attack3-parse-home-'));
});

afterEach(async () => {
  parser?.close();
  parser = undefined;
  await rm(folder, { recursive: true, force: true });
  await rm(home, { recursive: true, force: true });
});

const makeParser = (fileTimeoutMs: number, processes = 1) =>
  new DagFileParser({
    dagsFolder: folder,
    cwd: REPO_ROOT,
    fileTimeoutMs,
    bundles: new BundleStore(join(home, 'bundles')),
    processes,
  });

describe('attack: parser process reuse lets one file blame another', () => {
  it('a file that schedules process.exit() after its import is the one named, not the next file', async () => {
    // a_late.ts imports fine (and even defines a DAG), but leaves a timer that ends its process.
    await writeFile(join(folder, 'a_late.ts'), goodDag('a_late', 'setTimeout(() => process.exit(9), 300);'));
    for (const name of ['b1', 'b2', 'b3', 'b4', 'b5']) {
      await writeFile(join(folder, `${name}.ts`), slowGoodDag(name, 150));
    }
    parser = makeParser(10_000, 1);
    const parsed = await parser.parse();
    // Every innocent file must load; the only acceptable import error is a_late.ts itself.
    expect(idsOf(parsed)).toEqual(expect.arrayContaining(['b1', 'b2', 'b3', 'b4', 'b5']));
    expect(erroredFiles(parsed).filter((file) => file !== 'a_late.ts')).toEqual([]);
  }, 60_000);

  it('a file that starts an endless loop in a timer after its import does not make the next file time out', async () => {
    await writeFile(join(folder, 'a_late_loop.ts'), goodDag('a_late_loop', 'setTimeout(() => { while (true) {} }, 100);'));
    for (const name of ['b1', 'b2']) await writeFile(join(folder, `${name}.ts`), slowGoodDag(name, 200));
    parser = makeParser(2_000, 1);
    const parsed = await parser.parse();
    expect(idsOf(parsed)).toEqual(expect.arrayContaining(['b1', 'b2']));
    expect(erroredFiles(parsed).filter((file) => file !== 'a_late_loop.ts')).toEqual([]);
  }, 60_000);
});

describe('attack: a bad file fixed later', () => {
  it('a DAG file whose relative import was missing loads once the module is created', async () => {
    await writeFile(
      join(folder, 'needs_helper.ts'),
      goodDag('needs_helper', "import { value } from './_helper.ts';\nconsole.log(value);"),
    );
    parser = makeParser(10_000, 1);
    const first = await parser.parse();
    expect(erroredFiles(first)).toEqual(['needs_helper.ts']);

    // The user creates the missing helper; the DAG file itself is unchanged.
    await writeFile(join(folder, '_helper.ts'), 'export const value = 42;\n');
    const second = await parser.parse();
    expect(second.errors).toEqual([]);
    expect(idsOf(second)).toEqual(['needs_helper']);
  }, 60_000);
});

describe('attack: processes started by a DAG file at import', () => {
  it('a child process spawned at import does not outlive a parser killed for its time limit', async () => {
    const seconds = 100_000 + Math.floor(Math.random() * 800_000);
    const marker = `sleep ${seconds}`;
    await writeFile(
      join(folder, 'spawner.ts'),
      `import { spawn } from 'node:child_process';\nspawn('sleep', ['${seconds}'], { stdio: 'ignore' });\nwhile (true) {}\n`,
    );
    parser = makeParser(1_500, 1);
    const parsed = await parser.parse();
    expect(erroredFiles(parsed)).toEqual(['spawner.ts']);
    await sleep(500);
    const survivors = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => line.includes(marker) && !line.includes('ps -eo'));
    for (const line of survivors) {
      try {
        process.kill(Number(line.trim().split(/\s+/)[0]), 'SIGKILL');
      } catch {}
    }
    expect(survivors).toEqual([]);
  }, 60_000);
});

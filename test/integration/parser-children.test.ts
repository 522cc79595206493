import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BundleStore } from '#bundles/store.ts';
import { DagFileParser } from '#standalone/parse-dags.ts';

/** Processes a DAG file starts at import end with its parser process. */

const REPO_ROOT = resolve('.');

let folder: string;
let home: string;
let parser: DagFileParser | undefined;

beforeEach(async () => {
  folder = await mkdtemp(join(tmpdir(), 'parser-children-'));
  home = await mkdtemp(join(tmpdir(), 'parser-children-home-'));
});

afterEach(async () => {
  parser?.close();
  parser = undefined;
  await rm(folder, { recursive: true, force: true });
  await rm(home, { recursive: true, force: true });
});

/** The live processes running `sleep <seconds>`, killed so a failure leaves none behind. */
function killSurvivors(seconds: number): string[] {
  const survivors = execFileSync('ps', ['-eo', 'pid=,stat=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.endsWith(`sleep ${seconds}`) && !/^\s*\d+\s+Z/.test(line));
  for (const line of survivors) {
    try {
      process.kill(Number(line.trim().split(/\s+/)[0]), 'SIGKILL');
    } catch {}
  }
  return survivors;
}

describe('processes started by a DAG file at import', () => {
  it('a child process spawned at import does not outlive a parser killed for its time limit', async () => {
    const seconds = 100_000 + Math.floor(Math.random() * 800_000);
    await writeFile(
      join(folder, 'spawner.ts'),
      `import { spawn } from 'node:child_process';\nspawn('sleep', ['${seconds}'], { stdio: 'ignore' });\nwhile (true) {}\n`,
    );
    parser = new DagFileParser({
      dagsFolder: folder,
      cwd: REPO_ROOT,
      fileTimeoutMs: 1_500,
      bundles: new BundleStore(join(home, 'bundles')),
      processes: 1,
    });
    const parsed = await parser.parse();
    expect(parsed.errors.map((error) => error.fileloc)).toEqual(['spawner.ts']);
    await sleep(500);
    expect(killSurvivors(seconds)).toEqual([]);
  }, 60_000);
});

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleStore } from '#bundles/store.ts';
import type { ParsedDagsFolder } from '#engine/dag-registry.ts';
import { DagFileParser } from '#standalone/parse-dags.ts';

/**
 * The DAG processor parses each file in a parser process of its own with a time limit: a file
 * that exits, loops or throws at import is an import error naming it, and the others load.
 */

const REPO_ROOT = resolve('.');
const SDK_URL = pathToFileURL(resolve('src/sdk/index.ts')).href;
const TIMEOUT_MS = 3_000;
const goodDag = (id: string, value = 'one') =>
  `import { dag } from '${SDK_URL}';\nexport default dag({ id: '${id}' }, (d) => { d.task('only', async () => '${value}'); });\n`;

let folder: string;
let home: string;
let parser: DagFileParser;
let first: ParsedDagsFolder;

const messageOf = (parsed: ParsedDagsFolder, fileloc: string) =>
  parsed.errors.find((error) => error.fileloc === fileloc)?.message;
const idsOf = (parsed: ParsedDagsFolder) => parsed.dags.map(({ dag }) => dag.dagId);

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'updraft-parse-'));
  home = await mkdtemp(join(tmpdir(), 'updraft-parse-home-'));
  await writeFile(join(folder, 'a_good.ts'), goodDag('a_good'));
  await writeFile(join(folder, 'exits.ts'), "console.log('leaving now');\nprocess.exit(3);\n");
  await writeFile(join(folder, 'loops.ts'), 'while (true) {}\n');
  await writeFile(
    join(folder, 'throws.ts'),
    `import { dag } from '${SDK_URL}';\nconst ready = false;\nif (!ready) throw new Error('no config at import');\nexport default dag({ id: 'never' }, () => {});\n`,
  );
  await writeFile(join(folder, 'typo.ts'), "const a = 1;\nexport default {{ 'not TypeScript'\n");
  await writeFile(join(folder, 'z_good.ts'), goodDag('z_good'));
  parser = new DagFileParser({
    dagsFolder: folder,
    cwd: REPO_ROOT,
    fileTimeoutMs: TIMEOUT_MS,
    bundles: new BundleStore(join(home, 'bundles')),
  });
  first = await parser.parse();
}, 60_000);

afterAll(async () => {
  parser?.close();
  await rm(folder, { recursive: true, force: true });
  await rm(home, { recursive: true, force: true });
});

describe('DagFileParser with bad DAG files', () => {
  it('loads every good file', () => {
    expect(idsOf(first)).toEqual(['a_good', 'z_good']);
  });

  it('reports each bad file as an import error of its own', () => {
    expect(first.errors.map((error) => error.fileloc)).toEqual([
      'exits.ts',
      'loops.ts',
      'throws.ts',
      'typo.ts',
    ]);
  });

  it('names the exit code of a file that calls process.exit() at import, with its output', () => {
    expect(messageOf(first, 'exits.ts')).toContain(
      `Cannot load DAG file ${join(folder, 'exits.ts')}: exited with code 3 during import`,
    );
    expect(messageOf(first, 'exits.ts')).toContain('leaving now');
  });

  it('names the time limit and its setting for a file that never finishes importing', () => {
    expect(messageOf(first, 'loops.ts')).toContain(
      `did not finish importing within ${TIMEOUT_MS} ms (UPDRAFT_DAG_FILE_PARSE_TIMEOUT_MS)`,
    );
  });

  it('names the error and its line for a file that throws at import', () => {
    expect(messageOf(first, 'throws.ts')).toContain(
      `Error: no config at import (at ${join(folder, 'throws.ts')}:3)`,
    );
  });

  it('names the file and line of a syntax error', () => {
    expect(messageOf(first, 'typo.ts')).toMatch(/SyntaxError.* at .*typo\.ts:2\n/);
  });

  it('still picks up a changed good file and a fixed bad one on the next parse', async () => {
    await writeFile(join(folder, 'z_good.ts'), goodDag('z_good_renamed'));
    await writeFile(join(folder, 'loops.ts'), goodDag('was_looping'));
    const next = await parser.parse();
    expect(idsOf(next)).toEqual(['a_good', 'was_looping', 'z_good_renamed']);
    expect(next.errors.map((error) => error.fileloc)).toEqual(['exits.ts', 'throws.ts', 'typo.ts']);
  }, 60_000);
});

describe('DagFileParser versions', () => {
  let dagsFolder: string;
  let versions: DagFileParser;

  beforeAll(async () => {
    dagsFolder = await mkdtemp(join(tmpdir(), 'updraft-parse-versions-'));
    await writeFile(join(dagsFolder, '_helper.ts'), "export const greeting = 'one';\n");
    await writeFile(
      join(dagsFolder, 'greet.ts'),
      `import { dag } from '${SDK_URL}';\nimport { greeting } from './_helper.ts';\nexport default dag({ id: 'greet' }, (d) => { d.task('hello', async () => greeting); });\n`,
    );
    versions = new DagFileParser({
      dagsFolder,
      cwd: REPO_ROOT,
      fileTimeoutMs: 10_000,
      bundles: new BundleStore(join(home, 'bundles')),
    });
  });

  afterAll(async () => {
    versions?.close();
    await rm(dagsFolder, { recursive: true, force: true });
  });

  it('keeps the version of an unchanged folder and changes it when a helper module changes', async () => {
    const [before] = (await versions.parse()).dags;
    const [again] = (await versions.parse()).dags;
    expect(again?.versionHash).toBe(before?.versionHash);

    await writeFile(join(dagsFolder, '_helper.ts'), "export const greeting = 'two';\n");
    const [after] = (await versions.parse()).dags;
    expect(after?.dag).toEqual(before?.dag);
    expect(after?.versionHash).not.toBe(before?.versionHash);
  }, 60_000);

  it('snapshots each version with the DAG file and its helper module', async () => {
    const [current] = (await versions.parse()).dags;
    const bundle = await new BundleStore(join(home, 'bundles')).locate('greet', current!.versionHash);
    expect(bundle?.manifest.entry).toBe('greet.ts');
    expect(bundle?.manifest.files.map((file) => file.path)).toEqual(['_helper.ts', 'greet.ts']);
  }, 30_000);
});

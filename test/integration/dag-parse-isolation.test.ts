import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BundleStore } from '#bundles/store.ts';
import type { ParsedDagsFolder } from '#engine/dag-registry.ts';
import { DagFileParser, DagParserClosedError } from '#standalone/parse-dags.ts';

/**
 * The DAG processor parses each file in a parser process of its own with a time limit: a file
 * that exits, loops or throws at import is an import error naming it, and the others load.
 */

const REPO_ROOT = resolve('.');
const SDK_URL = pathToFileURL(resolve('src/sdk/index.ts')).href;
const TIMEOUT_MS = 3_000;
const goodDag = (id: string, value = 'one') =>
  `import { dag } from '${SDK_URL}';\nexport default dag({ id: '${id}' }, (d) => { d.task('only', async () => '${value}'); });\n`;
/** A good DAG file with `extra` code at its top. */
const dagWith = (id: string, extra: string) =>
  `import { dag } from '${SDK_URL}';\n${extra}\nexport default dag({ id: '${id}' }, (d) => { d.task('only', async () => 1); });\n`;
/** A good DAG file that takes about `ms` of synchronous work to import. */
const slowDag = (id: string, ms: number) =>
  dagWith(id, `{ const end = Date.now() + ${ms}; while (Date.now() < end) {} }`);

let folder: string;
let home: string;
let parser: DagFileParser;
let first: ParsedDagsFolder;

const messageOf = (parsed: ParsedDagsFolder, fileloc: string) =>
  parsed.errors.find((error) => error.fileloc === fileloc)?.message;
const idsOf = (parsed: ParsedDagsFolder) => parsed.dags.map(({ dag }) => dag.dagId);
const erroredFiles = (parsed: ParsedDagsFolder) => parsed.errors.map((error) => error.fileloc).sort();

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

  it("reports a DAG the SDK let through but the schema refuses as its file's error, and loads the rest", async () => {
    // Changed after dag() checked it: the options object is not frozen.
    await writeFile(
      join(folder, 'mutated.ts'),
      `import { dag } from '${SDK_URL}';\nconst made = dag({ id: 'mutated' }, (d) => { d.task('only', async () => 1); });\n(made.options as { description: unknown }).description = 42;\nexport default made;\n`,
    );
    try {
      const next = await parser.parse();
      expect(messageOf(next, 'mutated.ts')).toMatch(/^DAG mutated cannot be serialized: description: /);
      expect(idsOf(next)).not.toContain('mutated');
      expect(idsOf(next)).toContain('a_good');
    } finally {
      await rm(join(folder, 'mutated.ts'), { force: true });
    }
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

describe('DagFileParser blames the file whose process failed', () => {
  let dagsFolder: string;
  let bundlesHome: string;
  let own: DagFileParser | undefined;

  beforeEach(async () => {
    dagsFolder = await mkdtemp(join(tmpdir(), 'updraft-parse-blame-'));
    bundlesHome = await mkdtemp(join(tmpdir(), 'updraft-parse-blame-home-'));
  });

  afterEach(async () => {
    own?.close();
    own = undefined;
    await rm(dagsFolder, { recursive: true, force: true });
    await rm(bundlesHome, { recursive: true, force: true });
  });

  const makeParser = (fileTimeoutMs: number, idleProcesses = 8) => {
    own = new DagFileParser({
      dagsFolder,
      cwd: REPO_ROOT,
      fileTimeoutMs,
      bundles: new BundleStore(join(bundlesHome, 'bundles')),
      processes: 1,
      idleProcesses,
    });
    return own;
  };

  it('a timer that exits after its import fails its own file, on the next parse, not the next file', async () => {
    await writeFile(
      join(dagsFolder, 'a_late.ts'),
      dagWith('a_late', 'setTimeout(() => process.exit(9), 300);'),
    );
    for (const name of ['b1', 'b2', 'b3'])
      await writeFile(join(dagsFolder, `${name}.ts`), slowDag(name, 150));
    const parser = makeParser(10_000);
    const parsed = await parser.parse();
    expect(idsOf(parsed)).toEqual(expect.arrayContaining(['b1', 'b2', 'b3']));
    expect(erroredFiles(parsed).filter((file) => file !== 'a_late.ts')).toEqual([]);

    await new Promise((resolve) => setTimeout(resolve, 500));
    const next = await parser.parse();
    expect(idsOf(next).sort()).toEqual(['b1', 'b2', 'b3']);
    expect(erroredFiles(next)).toEqual(['a_late.ts']);
    expect(messageOf(next, 'a_late.ts')).toContain('exited with code 9 after its import');
  }, 90_000);

  it('a timer that loops after its import does not make the next file time out', async () => {
    await writeFile(
      join(dagsFolder, 'a_late_loop.ts'),
      dagWith('a_late_loop', 'setTimeout(() => { while (true) {} }, 100);'),
    );
    for (const name of ['b1', 'b2']) await writeFile(join(dagsFolder, `${name}.ts`), slowDag(name, 200));
    const parser = makeParser(2_000);
    const parsed = await parser.parse();
    expect(idsOf(parsed)).toEqual(expect.arrayContaining(['b1', 'b2']));
    expect(erroredFiles(parsed).filter((file) => file !== 'a_late_loop.ts')).toEqual([]);

    const next = await parser.parse();
    expect(erroredFiles(next)).toEqual(['a_late_loop.ts']);
    expect(messageOf(next, 'a_late_loop.ts')).toContain('stopped answering after its import');
  }, 90_000);

  it('a file whose relative import was missing loads once the module is created', async () => {
    await writeFile(
      join(dagsFolder, 'needs_helper.ts'),
      dagWith('needs_helper', "import { value } from './_helper.ts';\nconsole.log(value);"),
    );
    const parser = makeParser(10_000);
    expect(erroredFiles(await parser.parse())).toEqual(['needs_helper.ts']);

    // The helper is created; the DAG file itself is unchanged.
    await writeFile(join(dagsFolder, '_helper.ts'), 'export const value = 42;\n');
    const second = await parser.parse();
    expect(second.errors).toEqual([]);
    expect(idsOf(second)).toEqual(['needs_helper']);
  }, 60_000);

  it('does not spend the time limit again on a file that timed out until a module it loaded changes', async () => {
    await writeFile(join(dagsFolder, '_spin.ts'), 'while (true) {}\nexport const value = 1;\n');
    await writeFile(
      join(dagsFolder, 'spins.ts'),
      dagWith('spins', "import { value } from './_spin.ts';\nconsole.log(value);"),
    );
    await writeFile(join(dagsFolder, 'good.ts'), goodDag('good'));
    const parser = makeParser(1_500);
    const first = await parser.parse();
    expect(erroredFiles(first)).toEqual(['spins.ts']);
    expect(messageOf(first, 'spins.ts')).toContain('did not finish importing within 1500 ms');

    const started = Date.now();
    const again = await parser.parse();
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(idsOf(again)).toEqual(['good']);
    expect(messageOf(again, 'spins.ts')).toContain('did not finish importing within 1500 ms');
    expect(messageOf(again, 'spins.ts')).toContain('not imported again until it, or a module or data file');

    // The helper the file hung in is fixed; the DAG file itself is unchanged.
    await writeFile(join(dagsFolder, '_spin.ts'), 'export const value = 2;\n');
    const fixed = await parser.parse();
    expect(fixed.errors).toEqual([]);
    expect(idsOf(fixed)).toEqual(['good', 'spins']);
  }, 60_000);

  it('answers an unchanged file from its last result once its idle process was ended', async () => {
    await writeFile(join(dagsFolder, '_helper.ts'), "export const value = 'one';\n");
    await writeFile(
      join(dagsFolder, 'a.ts'),
      dagWith('a', "import { value } from './_helper.ts';\nconsole.log(value);"),
    );
    await writeFile(join(dagsFolder, 'b.ts'), goodDag('b'));
    const parser = makeParser(10_000, 0);
    const first = await parser.parse();
    expect(idsOf(first)).toEqual(['a', 'b']);

    const started = Date.now();
    const again = await parser.parse();
    expect(Date.now() - started).toBeLessThan(500);
    expect(again.dags.map(({ versionHash }) => versionHash)).toEqual(
      first.dags.map(({ versionHash }) => versionHash),
    );

    await writeFile(join(dagsFolder, '_helper.ts'), "export const value = 'two';\n");
    const changed = await parser.parse();
    expect(changed.dags[0]?.versionHash).not.toBe(first.dags[0]?.versionHash);
    expect(changed.dags[1]?.versionHash).toBe(first.dags[1]?.versionHash);
  }, 60_000);
});

describe('DagFileParser closed while it parses', () => {
  it('ends the file being parsed and rejects the parse, instead of reporting the files it cut short as import errors', async () => {
    const dagsFolder = await mkdtemp(join(tmpdir(), 'updraft-parse-closed-'));
    try {
      await writeFile(join(dagsFolder, 'slow.ts'), slowDag('slow', 8_000));
      const closing = new DagFileParser({ dagsFolder, cwd: REPO_ROOT, fileTimeoutMs: 20_000 });
      const parsing = closing.parse();
      await new Promise((resolve) => setTimeout(resolve, 500));
      const closedAt = Date.now();
      closing.close();
      await expect(parsing).rejects.toThrow(DagParserClosedError);
      expect(Date.now() - closedAt).toBeLessThan(3_000);
    } finally {
      await rm(dagsFolder, { recursive: true, force: true });
    }
  }, 30_000);
});

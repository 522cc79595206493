import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DagImportError } from '#sdk/errors.ts';
import { collectDags, loadDagFile } from '#sdk/loader.ts';
import { executeTask } from '#sdk/runtime.ts';
import { serializeDag } from '#sdk/serialize.ts';
import { testContext } from '../unit/sdk-fixtures.ts';

const sdkUrl = pathToFileURL(resolve('src/sdk/index.ts')).href;
const goodDag = (id: string) =>
  `import { dag } from '${sdkUrl}';\nexport default dag({ id: '${id}' }, (d) => { d.task('only', async () => 1); });\n`;

describe('collectDags on the example DAGs', () => {
  it('loads the examples without errors', async () => {
    const { dags, errors } = await collectDags(resolve('dags'));
    expect(errors).toEqual([]);
    expect(dags.map(({ dag, fileloc }) => [fileloc, dag.dagId])).toEqual([
      ['example_branching.ts', 'example_branching'],
      ['example_callbacks.ts', 'example_callbacks'],
      ['example_deferrable.ts', 'example_deferrable'],
      ['example_etl.ts', 'example_etl'],
      ['example_schedule.ts', 'example_schedule'],
    ]);
  });

  it('serializes example_etl with its tasks in topological order and the flaky retry', async () => {
    const [etl] = await loadDagFile(resolve('dags/example_etl.ts'));
    const serialized = serializeDag(etl!, 'example_etl.ts');
    expect(serialized.tasks.map((task) => task.taskId)).toEqual([
      'extract',
      'transform_a',
      'transform_b',
      'transform_c',
      'load',
    ]);
    expect(serialized.tasks[2]).toMatchObject({ taskId: 'transform_b', retries: 2, retryDelayMs: 1000 });
    expect(serialized.tasks[4]?.args.map((arg) => arg.taskId)).toEqual([
      'transform_a',
      'transform_b',
      'transform_c',
    ]);
  });

  it('runs example_etl task by task to the documented final XCom', async () => {
    const [etl] = await loadDagFile(resolve('dags/example_etl.ts'));
    const run = async (taskId: string, args: unknown[], tryNumber = 1) => {
      const outcome = await executeTask(etl!, taskId, args, testContext({ taskId, tryNumber }));
      if (outcome.kind !== 'success') throw new Error(`${taskId} ended ${outcome.kind}`);
      return outcome.value;
    };
    const rows = await run('extract', []);
    await expect(run('transform_b', [rows], 1)).rejects.toThrow('simulated flaky source');
    const [a, b, c] = [
      await run('transform_a', [rows]),
      await run('transform_b', [rows], 2),
      await run('transform_c', [rows]),
    ];
    expect(await run('load', [a, b, c])).toEqual({ rows: 12, total: 134 });
  });

  it('example_branching follows fast_path by default and skips publish', async () => {
    const [branching] = await loadDagFile(resolve('dags/example_branching.ts'));
    const params = { path: 'fast', publish: false };
    expect(await executeTask(branching!, 'choose_path', [], testContext({ params }))).toMatchObject({
      followTaskIds: ['fast_path'],
    });
    expect(await executeTask(branching!, 'publish', [], testContext({ params }))).toEqual({
      kind: 'skipped',
      reason: 'publishing is off (params.publish is false)',
    });
  });
});

describe('collectDags on a folder with a broken file', () => {
  let folder = '';

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'updraft-dags-'));
    await writeFile(join(folder, 'good.ts'), goodDag('good_dag'));
    await writeFile(join(folder, 'broken.ts'), 'export default {{ this is not TypeScript\n');
    await writeFile(join(folder, '_helper.ts'), 'throw new Error("must not be imported");\n');
    await mkdir(join(folder, 'nested'));
    await writeFile(join(folder, 'nested', 'again.ts'), goodDag('good_dag'));
    await writeFile(
      join(folder, 'nested', 'invalid.ts'),
      `import { dag } from '${sdkUrl}';\nexport default dag({ id: 'bad' }, (d) => { d.task('a', async () => 1).after('ghost'); });\n`,
    );
  });

  afterAll(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  it('reports the broken file and still loads the good one', async () => {
    const { dags, errors } = await collectDags(folder);
    expect(dags.map(({ dag, fileloc }) => [fileloc, dag.dagId])).toEqual([['good.ts', 'good_dag']]);
    expect(errors.map((error) => error.fileloc)).toEqual([
      'broken.ts',
      'nested/again.ts',
      'nested/invalid.ts',
    ]);
  });

  it('names the file and the cause of a syntax error', async () => {
    const { errors } = await collectDags(folder);
    expect(errors[0]?.message).toContain(`Cannot load DAG file ${join(folder, 'broken.ts')}`);
  });

  it('reports a DAG id already defined in an earlier file', async () => {
    const { errors } = await collectDags(folder);
    expect(errors[1]).toEqual({
      fileloc: 'nested/again.ts',
      message: "DAG id 'good_dag' is already defined in good.ts",
    });
  });

  it('reports a validation error with the DAG and the task', async () => {
    const { errors } = await collectDags(folder);
    expect(errors[2]?.message).toContain(
      "DagValidationError: DAG 'bad', task 'a': upstream task 'ghost' does not exist",
    );
  });

  it('throws DagImportError from loadDagFile with the file and the cause', async () => {
    const file = join(folder, 'broken.ts');
    const error = await loadDagFile(file).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DagImportError);
    expect((error as DagImportError).file).toBe(file);
    expect((error as DagImportError).cause).toBeInstanceOf(Error);
  });

  it('imports an edited file afresh', async () => {
    const file = join(folder, 'edited.ts');
    await writeFile(file, goodDag('before_edit'));
    await utimes(file, new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T00:00:00Z'));
    expect((await loadDagFile(file)).map((dag) => dag.dagId)).toEqual(['before_edit']);
    await writeFile(file, goodDag('after_edit'));
    await utimes(file, new Date('2026-01-02T00:00:00Z'), new Date('2026-01-02T00:00:00Z'));
    expect((await loadDagFile(file)).map((dag) => dag.dagId)).toEqual(['after_edit']);
    await rm(file);
  });
});

import { collectDags } from '#sdk/loader.ts';
import { versionDag } from '#sdk/serialize.ts';

/**
 * The DAG processor: a short-lived child process that imports every DAG file, so user code at
 * import time never runs inside the scheduler or the API. It prints the serialized DAGs and the
 * import errors as one JSON document on stdout.
 */
const folder = process.argv[2];
if (!folder) {
  process.stderr.write('usage: dag-processor <dags folder>\n');
  process.exit(2);
}
// DAG files may print while they load; keep stdout for the result alone.
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr) as typeof process.stdout.write;
const collected = await collectDags(folder);
const dags = [];
const errors = [...collected.errors];
for (const { dag, fileloc } of collected.dags) {
  try {
    dags.push(versionDag(dag, fileloc));
  } catch (error) {
    errors.push({ fileloc, message: `Cannot serialize DAG ${dag.dagId}: ${(error as Error).message}` });
  }
}
write(`${JSON.stringify({ dags, errors })}\n`, () => process.exit(0));

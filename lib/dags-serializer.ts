/**
 * Child process of `serializeDagsFolder` (lib/dags.ts): imports every DAG file of a folder,
 * serializes the DAGs and writes `{ dags, errors }` to the file named by its second argument.
 * It runs apart from the CDK app so that DAG code never runs inside it, and writes to a file so
 * that what a DAG file prints at import cannot corrupt the result.
 *
 * Usage: node lib/dags-serializer.ts <dagsFolder> <outputFile>
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { bundleVersionHash } from '#bundles/version.ts';
import { collectDags } from '#sdk/loader.ts';
import { versionDag } from '#sdk/serialize.ts';
import { dagsFolderFiles } from './dags-folder.ts';

const [folderArgument, outputFile] = process.argv.slice(2);
if (folderArgument === undefined || outputFile === undefined) {
  process.stderr.write('Usage: node lib/dags-serializer.ts <dagsFolder> <outputFile>\n');
  process.exit(2);
}
const folder = resolve(folderArgument);
const collected = await collectDags(folder);
// The deployed worker runs the code of the whole folder as deployed, so every file is part of
// every DAG's version: an edit anywhere in the folder is a new version, as in standalone where a
// DAG's version covers its file and the local modules it imports.
const files = dagsFolderFiles(folder).map(({ path, sha256 }) => ({ path, sha256 }));
const dags = collected.dags.map(({ dag, fileloc }) => {
  const versioned = versionDag(dag, fileloc);
  return { dag: versioned.dag, versionHash: bundleVersionHash(versioned.versionHash, files) };
});
writeFileSync(outputFile, JSON.stringify({ dags, errors: collected.errors }));
// A DAG file may leave a timer or a socket behind; the result is written, so nothing else matters.
process.exit(0);

import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DagModuleLoader } from '#aws/lambda-executor.ts';
import { resolveImportsOfBundle } from '#bundles/runner-hooks.ts';
import { BundleStore } from '#bundles/store.ts';

/**
 * Standalone's triggerer imports a callback's DAG module from the run's version bundle (the code
 * as it was parsed, which never changes), else the DAG file on disk. Each module is imported once
 * per process by its URL: a version's bundle stays loaded while the triggerer lives, as a Lambda
 * worker keeps the modules it ran.
 */
export function bundledDagModules(options: { bundlesFolder: string; dagsFolder: string }): DagModuleLoader {
  const bundles = new BundleStore(options.bundlesFolder);
  return async (fileloc, { dagId, dagVersion }) => {
    const bundle = await bundles.locate(dagId, dagVersion).catch(() => undefined);
    const file = bundle ? bundle.entryFile : resolve(options.dagsFolder, fileloc);
    resolveImportsOfBundle(file);
    return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  };
}

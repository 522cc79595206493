import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DagModuleLoader } from '#aws/lambda-executor.ts';
import { resolveImportsOfBundle } from '#bundles/runner-hooks.ts';
import { BundleStore } from '#bundles/store.ts';
import type { Logger } from '#engine/logger.ts';

/**
 * Standalone's triggerer imports a callback's DAG module from the run's version bundle (the code
 * as it was parsed, which never changes), else (a version parsed before bundles existed) the DAG
 * file on disk as it is at the first import, with a warning. Each module is imported once per
 * process by its URL: the versions' modules stay loaded while the triggerer lives, as a Lambda
 * worker keeps the modules it ran; a restart of the triggerer lets them go.
 */
export function bundledDagModules(options: {
  bundlesFolder: string;
  dagsFolder: string;
  log: Logger;
}): DagModuleLoader {
  const bundles = new BundleStore(options.bundlesFolder);
  const warned = new Set<string>();
  return async (fileloc, { dagId, dagVersion }) => {
    if (isAbsolute(fileloc) || fileloc.split(/[\\/]/).includes('..')) {
      throw new Error(`DAG file ${fileloc} is not inside the DAGs folder`);
    }
    const bundle = await bundles.locate(dagId, dagVersion).catch(() => undefined);
    if (!bundle && !warned.has(`${dagId}@${dagVersion}`)) {
      warned.add(`${dagId}@${dagVersion}`);
      options.log.warn(
        `DAG version ${dagVersion} of ${dagId} has no code bundle in ${bundles.folder}: its callbacks run ${fileloc} as it is on disk`,
      );
    }
    const file = bundle ? bundle.entryFile : resolve(options.dagsFolder, fileloc);
    resolveImportsOfBundle(file);
    return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  };
}

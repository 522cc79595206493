import type { HandlerDeps } from '#aws/handler-deps.ts';
import { HandlerError } from '#aws/handler-errors.ts';
import type { Observability } from '#aws/handler-observability.ts';
import { makeWorkerHandler } from '#aws/handler-worker.ts';

/**
 * The task and callback worker, with this project's `dags/` bundled in. esbuild turns the
 * template import below into a glob import of every `.ts` file under `../dags/` (each evaluated
 * on its first use only), so the DAG code ships with this function and with no other. A CDK app
 * whose DAGs live elsewhere gives the construct an entry of its own, three lines like this one
 * with its own folder in the template.
 */
export function makeHandler(deps: Partial<HandlerDeps & Observability> = {}) {
  return makeWorkerHandler({ loadDagModule: importBundledDag, ...deps });
}

function importBundledDag(fileloc: string): Promise<Record<string, unknown>> {
  if (!fileloc.endsWith('.ts') || fileloc.split('/').includes('..')) {
    return Promise.reject(
      new HandlerError(`DAG file ${fileloc} is not bundled: the worker bundles the .ts files under dags/`),
    );
  }
  return import(`../dags/${fileloc.slice(0, -'.ts'.length)}.ts`);
}

export const handler = makeHandler();

import { AWS_ENV, AwsEnvironmentError, requireEnv } from '#aws/environment.ts';
import { roleCredentials } from '#aws/handler-defaults-execution.ts';
import { createSignedFetch } from '#aws/handler-signed-fetch.ts';
import { loadSettings } from '#config/settings.ts';
import { createLogger, type LogLevel } from '#engine/logger.ts';
import { importTriggerModules, runTriggererProcess, TRIGGERER_TOKEN_ENV } from '#triggerer/program.ts';

/**
 * The triggerer's container entry (ECS Fargate; bundled to main.mjs for the image): the same
 * program as standalone's triggerer (`src/triggerer/program.ts`). It reaches the Execution API's
 * function URL with calls signed by the task role (SigV4, as the worker does; the job token rides
 * in its own header). It registers with the credential in `UPDRAFT_TRIGGERER_TOKEN` when one is
 * set; without it, its signed registration is the credential: the Execution API function issues
 * one to the task role named in its `UPDRAFT_TRIGGERER_ROLE_ID` (the construct sets both sides).
 * Async callbacks placed on the triggerer run from the DAGs bundled below.
 * Exit codes: 0 on a stop (SIGTERM from ECS), 1 on bad configuration or a refused registration.
 */
const log = createLogger({
  level: (process.env.UPDRAFT_LOG_LEVEL ?? 'info') as LogLevel,
  pretty: false,
  fields: { component: 'triggerer' },
});

function executionApiUrl(): string {
  const value = requireEnv(process.env, AWS_ENV.executionApiUrl);
  try {
    return new URL(value).href;
  } catch {
    throw new AwsEnvironmentError(`${AWS_ENV.executionApiUrl} is not a URL: ${value.slice(0, 200)}`);
  }
}

/** Whether the environment names credentials a signed registration can use (no network is asked). */
function hasRoleCredentials(env: NodeJS.ProcessEnv): boolean {
  return Boolean(
    env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI ||
      env.AWS_CONTAINER_CREDENTIALS_FULL_URI ||
      (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY),
  );
}

/**
 * Async callbacks run here, from this project's `dags/` bundled into the image: esbuild turns the
 * template import into a glob import of every `.ts` file under `../../dags/`, as the worker's
 * entry does (`functions/worker.ts`).
 */
function importBundledDag(fileloc: string): Promise<Record<string, unknown>> {
  if (!fileloc.endsWith('.ts') || fileloc.split('/').includes('..')) {
    return Promise.reject(
      new Error(`DAG file ${fileloc} is not bundled: the triggerer bundles the .ts files under dags/`),
    );
  }
  return import(`../../dags/${fileloc.slice(0, -'.ts'.length)}.ts`);
}

let started: Parameters<typeof runTriggererProcess>[0];
try {
  const apiUrl = executionApiUrl();
  const credential = process.env[TRIGGERER_TOKEN_ENV]?.trim() || null;
  if (credential === null && !hasRoleCredentials(process.env)) {
    throw new AwsEnvironmentError(
      `${TRIGGERER_TOKEN_ENV} is not set and there is no task role to register with (ECS sets AWS_CONTAINER_CREDENTIALS_RELATIVE_URI for a task role; AWS_ACCESS_KEY_ID also serves): set one of them`,
    );
  }
  const fetch = createSignedFetch({
    region: requireEnv(process.env, 'AWS_REGION'),
    credentials: roleCredentials(process.env),
  });
  const settings = loadSettings();
  started = {
    apiUrl,
    credential,
    fetch,
    loadDagModule: importBundledDag,
    settings,
    log: createLogger({ level: settings.logLevel, pretty: false, fields: { component: 'triggerer' } }),
  };
  await importTriggerModules(settings);
} catch (error) {
  log.error('The triggerer cannot start', { error });
  process.exit(1);
}
process.exit(await runTriggererProcess(started));

import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Settings } from '#config/settings.ts';
import type { Logger } from '#engine/logger.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
// Registers the built-in triggers (updraft.DateTimeTrigger, …).
import '#sdk/triggers/index.ts';
import { type DagModuleLoader, InProcessTaskExecutor } from '#aws/lambda-executor.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import { TriggererClient } from './client.ts';
import { bundledDagModules } from './dag-modules.ts';
import { RegistrationRefusedError, TriggererConfigurationError } from './errors.ts';
import { watchForStalls } from './stall-watchdog.ts';
import { Triggerer } from './triggerer.ts';

/**
 * The triggerer process, shared by its two entries: `src/triggerer/main.ts` (standalone starts it
 * as a child process) and `functions/triggerer/main.ts` (the ECS container). Each reads its own
 * configuration and calls `runTriggererProcess`; the logic is in triggerer.ts.
 */

/** The triggerer's own credential: it registers a job with it, nothing else. */
export const TRIGGERER_TOKEN_ENV = 'UPDRAFT_TRIGGERER_TOKEN';

export function triggererTokenOf(env: NodeJS.ProcessEnv): string {
  const token = env[TRIGGERER_TOKEN_ENV]?.trim();
  if (!token) {
    throw new TriggererConfigurationError(
      `${TRIGGERER_TOKEN_ENV} is not set: the triggerer needs its credential (a triggerer token issued by the API's signing keyring) to register with the Execution API`,
    );
  }
  return token;
}

/**
 * Imports each of `settings.triggerModules` (relative to the DAGs folder, or absolute) so the
 * user triggers they register can run here. A module that fails to import is a configuration error.
 */
export async function importTriggerModules(
  settings: Pick<Settings, 'triggerModules' | 'dagsFolder'>,
): Promise<void> {
  for (const module of settings.triggerModules) {
    const path = isAbsolute(module) ? module : resolve(settings.dagsFolder, module);
    try {
      await import(pathToFileURL(path).href);
    } catch (error) {
      throw new TriggererConfigurationError(
        `Cannot import the trigger module ${path} (UPDRAFT_TRIGGER_MODULES): ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
  }
}

export interface TriggererProcessOptions {
  /** The Execution API's base URL: routes are under `/execution/…`. */
  apiUrl: string;
  /**
   * The triggerer token it registers with; null on AWS without one: the registration, signed by
   * the task role, is its credential (the Execution API function issues one to that role).
   */
  credential: string | null;
  settings: Settings;
  log: Logger;
  /** The transport (on AWS: SigV4-signed for the function URL); the global `fetch` by default. */
  fetch?: typeof fetch;
  /**
   * Imports a callback's DAG module (async callbacks run here). Default: the run's version bundle
   * under the Updraft home (standalone); on AWS the DAGs bundled with the triggerer.
   */
  loadDagModule?: DagModuleLoader;
}

/**
 * Runs the triggerer until SIGTERM or SIGINT, then stops it gracefully (a second signal ends the
 * process at once). Resolves with the exit code: 0 after a stop, 1 when the API refuses the
 * triggerer's registration (a wrong or expired credential).
 */
export async function runTriggererProcess(options: TriggererProcessOptions): Promise<number> {
  const { settings, log } = options;
  const metrics = new MetricsRegistry();
  const client = new TriggererClient(
    options.apiUrl,
    options.credential,
    options.fetch ? { fetch: options.fetch } : {},
  );
  const loadModule =
    options.loadDagModule ??
    bundledDagModules({
      bundlesFolder: join(settings.home, 'bundles'),
      dagsFolder: settings.dagsFolder,
      log,
    });
  const triggerer = new Triggerer({
    client,
    settings,
    log,
    metrics,
    callbacks: {
      execution: new ExecutionClient(options.apiUrl, options.fetch ? { fetch: options.fetch } : {}),
      executor: new InProcessTaskExecutor({
        loadModule,
        allowedDeserializationClasses: settings.allowedDeserializationClasses,
      }),
    },
  });
  let stopSignal: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopSignal) {
      log.warn('Second stop signal: the triggerer exits without finishing its stop', { signal });
      process.exit(1);
    }
    stopSignal = signal;
    log.info('Stopping the triggerer', { signal });
    void triggerer.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Twice the heartbeat timeout, at least 10 s: long after the job is declared dead anyway.
  const watchdog = watchForStalls(Math.max(10_000, 2 * settings.triggererHeartbeatTimeoutMs));
  const metricsLog =
    settings.metricsLogIntervalMs > 0
      ? setInterval(() => {
          void metrics.snapshot().then((snapshot) => log.info('metrics', snapshot));
        }, settings.metricsLogIntervalMs)
      : undefined;
  log.info('Triggerer starting', {
    executionApiUrl: options.apiUrl,
    capacity: settings.triggererCapacity,
    queues: settings.triggerQueues,
  });
  try {
    await triggerer.run();
    log.info('Triggerer stopped', { signal: stopSignal });
    return 0;
  } catch (error) {
    if (!(error instanceof RegistrationRefusedError)) throw error;
    log.error(error.message);
    return 1;
  } finally {
    watchdog.stop();
    clearInterval(metricsLog);
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

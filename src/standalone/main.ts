import type { Settings } from '#config/settings.ts';
import { createLogger } from '#engine/logger.ts';
import type { StandaloneError } from './errors.ts';
import { startStandalone } from './services.ts';

export interface StandaloneCommandOptions {
  /** `--reset-store`: move the old store and logs aside and start with an empty store. */
  resetStore?: boolean;
}

/** Exit code when a part of standalone fails for good (the store could not be restarted). */
export const EXIT_FATAL = 1;
/** How long a fatal stop may spend stopping the rest before the process exits anyway. */
const FATAL_STOP_MS = 3_000;

/**
 * `updraft standalone` (`npm start`): runs everything in this process until Ctrl-C, then stops
 * gracefully: no new work is taken, running tasks get the grace period to finish and are
 * handed back (to run again, without using a try) if they do not.
 */
export async function runStandalone(
  settings: Settings,
  options: StandaloneCommandOptions = {},
): Promise<void> {
  const log = createLogger({ level: settings.logLevel });
  let stopForGood: ((error: StandaloneError) => void) | undefined;
  const standalone = await startStandalone(settings, {
    log,
    resetStore: options.resetStore ?? false,
    onFatal: (error) => stopForGood?.(error),
  });
  stopForGood = (error) => {
    log.error(error.message);
    process.stderr.write(`Error: ${error.message}\n`);
    const exit = () => process.exit(EXIT_FATAL);
    setTimeout(exit, FATAL_STOP_MS).unref();
    standalone.stop().then(exit, exit);
  };
  const banner = [
    '',
    `  Updraft is running: API and Execution API at ${standalone.apiUrl}`,
    `  DAGs folder:  ${settings.dagsFolder}`,
    `  Data:         ${settings.home} (API token in ${settings.home}/api-token)`,
    `  OpenAPI:      ${standalone.apiUrl}/api/v2/openapi.json`,
    '',
    '  From another terminal in this project:',
    '    npx updraft dags list',
    '    npx updraft dags trigger example_etl --wait',
    '',
    '  Ctrl-C stops it.',
    '',
  ];
  process.stdout.write(`${banner.join('\n')}\n`);

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        log.warn('Second stop signal: exiting now');
        process.exit(130);
      }
      stopping = true;
      log.info(
        `Received ${signal}: stopping (running tasks get ${settings.shutdownGraceSeconds}s to finish)`,
      );
      standalone.stop().then(resolve, (error: unknown) => {
        log.error('Graceful stop failed', { error });
        resolve();
      });
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  log.info('Stopped');
}

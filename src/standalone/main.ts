import type { Settings } from '#config/settings.ts';
import { createLogger } from '#engine/logger.ts';
import { startStandalone } from './services.ts';

/**
 * `updraft standalone` (`npm start`): runs everything in this process until Ctrl-C, then stops
 * gracefully: no new work is taken, running tasks get the grace period to finish and are
 * handed back (to run again, without using a try) if they do not.
 */
export async function runStandalone(settings: Settings): Promise<void> {
  const log = createLogger({ level: settings.logLevel });
  const standalone = await startStandalone(settings, { log });
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

import { apiUrlOf, loadSettings } from '#config/settings.ts';
import { createLogger, type LogLevel } from '#engine/logger.ts';
import { importTriggerModules, runTriggererProcess, triggererTokenOf } from './program.ts';

/**
 * The triggerer process, as standalone starts it: the API's base URL in `UPDRAFT_API_URL` (else
 * the host and port settings), its credential in `UPDRAFT_TRIGGERER_TOKEN`, every other setting
 * from the environment or `updraft.config.json`. JSON log lines on stderr. Exit codes: 0 after
 * SIGTERM or SIGINT, 1 on a bad configuration (one line saying why) or a refused registration.
 */
const log = createLogger({
  level: (process.env.UPDRAFT_LOG_LEVEL ?? 'info') as LogLevel,
  pretty: false,
  fields: { component: 'triggerer' },
});

let started: Parameters<typeof runTriggererProcess>[0];
try {
  const settings = loadSettings();
  started = {
    apiUrl: apiUrlOf(settings),
    credential: triggererTokenOf(process.env),
    settings,
    log: createLogger({ level: settings.logLevel, pretty: false, fields: { component: 'triggerer' } }),
  };
  await importTriggerModules(settings);
} catch (error) {
  log.error(`The triggerer cannot start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
process.exit(await runTriggererProcess(started));

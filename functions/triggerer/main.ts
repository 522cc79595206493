import { AWS_ENV, AwsEnvironmentError, requireEnv } from '#aws/environment.ts';
import { createLogger, type LogLevel } from '#engine/logger.ts';

/**
 * The triggerer's container entry (ECS Fargate; bundled to main.mjs for the image). The triggerer
 * will claim deferred tasks' triggers and report their events over the Execution API, with no
 * access to the table. No trigger kinds exist yet (the deferral issue adds them with the runner),
 * so today it only checks its configuration, says that it claims nothing, and waits for the
 * SIGTERM that ECS sends on a stop or a deploy. Exit codes: 0 on a stop, 1 on bad configuration.
 */
const level = (process.env.UPDRAFT_LOG_LEVEL ?? 'info') as LogLevel;
const log = createLogger({ level, pretty: false, fields: { component: 'triggerer' } });

function executionApiUrl(): string {
  const value = requireEnv(process.env, AWS_ENV.executionApiUrl);
  try {
    return new URL(value).href;
  } catch {
    throw new AwsEnvironmentError(`${AWS_ENV.executionApiUrl} is not a URL: ${value.slice(0, 200)}`);
  }
}

let url: string;
try {
  url = executionApiUrl();
} catch (error) {
  log.error('The triggerer cannot start', { error });
  process.exit(1);
}

log.info(
  'Triggerer started. No trigger kinds are supported yet: it claims no triggers and waits to be stopped',
  {
    executionApiUrl: url,
  },
);
// A pending promise does not keep Node running; a timer does, until the stop.
const keepAlive = setInterval(() => undefined, 2 ** 31 - 1);
const signal = await new Promise<NodeJS.Signals>((resolve) => {
  process.once('SIGTERM', () => resolve('SIGTERM'));
  process.once('SIGINT', () => resolve('SIGINT'));
});
clearInterval(keepAlive);
log.info('Triggerer stopped', { signal });

import { watchParent } from '#worker/parent-watchdog.ts';

/**
 * Loaded (with `--import`) into standalone's triggerer child: it dies with the server, even after
 * a kill -9 of the server, instead of calling a dead API forever. Unlike the task runners' guard
 * it leaves SIGTERM and SIGINT to the triggerer, which stops gracefully on them.
 */
watchParent();

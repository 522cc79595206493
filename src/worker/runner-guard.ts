import { Worker } from 'node:worker_threads';

/**
 * Loaded (with `--import`) into every task runner process before anything else, so a runner
 * dies with its supervisor whatever its task is doing:
 *
 * - The runner shares the supervisor's process group, so a kill of the group (kill -9 of
 *   `npm start`'s group, a closed terminal) reaches it directly. Ctrl-C and SIGTERM sent to the
 *   group are for the supervisor, which lets the try finish or hands it back and then kills the
 *   runner itself: the runner ignores them.
 * - A watchdog thread notices when the supervisor is gone (the runner was re-parented) and kills
 *   the process with SIGKILL. It runs on its own thread, so a task stuck in `while (true) {}`
 *   on the main thread cannot keep it from firing; the IPC `disconnect` event would wait forever
 *   for that loop.
 */

/** How often the watchdog looks at the parent pid. */
const WATCHDOG_INTERVAL_MS = 200;

const WATCHDOG_SOURCE = `
const { workerData } = require('node:worker_threads');
setInterval(() => {
  if (process.ppid !== workerData.parentPid) process.kill(process.pid, 'SIGKILL');
}, workerData.intervalMs);
`;

for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => undefined);

const watchdog = new Worker(WATCHDOG_SOURCE, {
  eval: true,
  workerData: { parentPid: process.ppid, intervalMs: WATCHDOG_INTERVAL_MS },
  // A tiny heap: the thread holds one timer.
  resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 2 },
  stdout: false,
  stderr: false,
});
// The watchdog never keeps the runner alive; the IPC channel does, until the supervisor goes.
watchdog.unref();

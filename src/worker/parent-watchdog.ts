import { Worker } from 'node:worker_threads';

/**
 * A watchdog thread that notices when the process's parent is gone (the process was re-parented:
 * kill -9 of the server or of its group) and kills the process and the group it leads with
 * SIGKILL. It runs on its own thread, so code stuck in `while (true) {}` on the main thread cannot
 * keep it from firing.
 */

/** How often the watchdog looks at the parent pid. */
const WATCHDOG_INTERVAL_MS = 200;

const WATCHDOG_SOURCE = `
const { workerData } = require('node:worker_threads');
setInterval(() => {
  if (process.ppid === workerData.parentPid) return;
  // The group this process leads; a process started outside one (no such group) kills itself.
  try {
    process.kill(-process.pid, 'SIGKILL');
  } catch {}
  process.kill(process.pid, 'SIGKILL');
}, workerData.intervalMs);
`;

/**
 * The parent's pid as the parent passed it: read at start, `process.ppid` would already be 1 when
 * the parent died before the child got this far, and the child would never notice.
 */
export const PARENT_PID_ENV = 'UPDRAFT_PARENT_PID';

/** Starts the watchdog thread: the process (and its group) is killed once its parent is gone. */
export function watchParent(): void {
  const given = Number(process.env[PARENT_PID_ENV]);
  const parentPid = Number.isInteger(given) && given > 1 ? given : process.ppid;
  const watchdog = new Worker(WATCHDOG_SOURCE, {
    eval: true,
    workerData: { parentPid, intervalMs: WATCHDOG_INTERVAL_MS },
    // A tiny heap: the thread holds one timer.
    resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 2 },
    stdout: false,
    stderr: false,
  });
  // The watchdog never keeps the process alive; the IPC channel does, until the server goes.
  watchdog.unref();
}

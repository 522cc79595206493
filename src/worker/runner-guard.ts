import { watchParent } from './parent-watchdog.ts';

/**
 * Loaded (with `--import`) into every task runner and DAG parser process before anything else,
 * so the process and every process its code started die with the server whatever its code is
 * doing:
 *
 * - The process leads a process group of its own (it is spawned `detached`), with the processes
 *   its task or DAG file starts. The terminal's Ctrl-C goes to the server's group, not to it; the
 *   server lets the try finish or hands it back, then kills the group itself (and kills every
 *   group it still has when it exits). SIGINT and SIGTERM sent to the process directly are
 *   ignored all the same: stopping it is the server's call.
 * - A watchdog thread notices when the server is gone (the process was re-parented: kill -9 of
 *   the server or of its group) and kills the whole group with SIGKILL. It runs on its own
 *   thread, so a task stuck in `while (true) {}` on the main thread cannot keep it from firing;
 *   the IPC `disconnect` event would wait forever for that loop.
 */

for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => undefined);

watchParent();

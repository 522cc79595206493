import { Worker } from 'node:worker_threads';

/**
 * A thread that ends the triggerer when its event loop has not turned for `stallMs`: a trigger
 * stuck in a loop that never yields stops every trigger and every heartbeat, and nothing on the
 * blocked thread can notice. Exiting hands the triggers on (another triggerer, or this one once
 * restarted by standalone or ECS, takes them over after the heartbeat timeout; a trigger that
 * takes down triggerers again and again is failed by the API). The main thread bumps a shared
 * counter; the watchdog thread reads it.
 */
const WATCHDOG_SOURCE = `
const { workerData } = process.getBuiltinModule('node:worker_threads');
const { writeSync } = process.getBuiltinModule('node:fs');
const beats = new Int32Array(workerData.buffer);
let seen = Atomics.load(beats, 0);
let since = Date.now();
setInterval(() => {
  const now = Atomics.load(beats, 0);
  if (now !== seen) { seen = now; since = Date.now(); return; }
  if (Date.now() - since < workerData.stallMs) return;
  // Straight to the file descriptor: a thread's stderr goes through the (blocked) main thread.
  writeSync(2, JSON.stringify({
    timestamp: new Date().toISOString(), level: 'error', component: 'triggerer',
    message: 'The triggerer event loop has been blocked for ' + Math.round((Date.now() - since) / 1000) + ' s (a trigger that never yields?): exiting so its triggers are handed on',
  }) + '\\n');
  process.kill(process.pid, 'SIGKILL');
}, workerData.checkMs);
`;

export interface StallWatchdog {
  stop(): void;
}

export function watchForStalls(stallMs: number): StallWatchdog {
  const buffer = new SharedArrayBuffer(4);
  const beats = new Int32Array(buffer);
  const beatMs = Math.max(50, Math.min(1_000, Math.floor(stallMs / 10)));
  const beat = setInterval(() => Atomics.add(beats, 0, 1), beatMs);
  beat.unref();
  const worker = new Worker(WATCHDOG_SOURCE, {
    eval: true,
    workerData: { buffer, stallMs, checkMs: beatMs },
    resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 2 },
    stdout: false,
    stderr: false,
  });
  worker.unref();
  return {
    stop() {
      clearInterval(beat);
      void worker.terminate();
    },
  };
}

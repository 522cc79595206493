import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { dag } from 'updraft';

/** Test fixture of the memory limit tests: tasks at the smallest limit, and a child process's memory. */
export default dag({ id: 'memory_limits', schedule: null }, (d) => {
  // Does next to nothing for a second, under the smallest limit accepted.
  d.task({ id: 'smallest_limit', memoryLimitMb: 256 }, async () => {
    await sleep(1_000);
    return 'fine';
  });
  // Holds 96 MB of Buffers for a second: the runner's own ~110 MB and this stay under 256 MB.
  d.task({ id: 'under_limit', memoryLimitMb: 256 }, async () => {
    const kept = Array.from({ length: 6 }, () => Buffer.alloc(16 * 1024 * 1024, 1));
    await sleep(1_000);
    return kept.length;
  });
  // The memory lives in a child process the task started and waits for.
  d.task({ id: 'child_hog', memoryLimitMb: 256 }, async (ctx) => {
    const child = spawn(
      process.execPath,
      ['-e', 'const b = Buffer.alloc(400 * 1024 * 1024, 1); setTimeout(() => console.log(b.length), 3000);'],
      { stdio: 'ignore' },
    );
    ctx.log.info(`child ${child.pid}`);
    await new Promise((resolve) => child.once('exit', resolve));
    return 'child done';
  });
});

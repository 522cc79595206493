import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { dag } from 'updraft';

/** Fixture of test/attack3/runner.test.ts. */
export default dag({ id: 'attack_runner', schedule: null }, (d) => {
  // Does next to nothing for a second, under the smallest limit the docs accept (64 MB).
  d.task({ id: 'tiny_limit', memoryLimitMb: 64 }, async () => {
    await sleep(1_000);
    return 'fine';
  });
  // The memory lives in a child process the task started and waits for.
  d.task({ id: 'child_hog', memoryLimitMb: 128 }, async (ctx) => {
    const child = spawn(
      process.execPath,
      ['-e', 'const b = Buffer.alloc(400 * 1024 * 1024, 1); setTimeout(() => console.log(b.length), 3000);'],
      { stdio: 'ignore' },
    );
    ctx.log.info(`child ${child.pid}`);
    await new Promise((resolve) => child.once('exit', resolve));
    return 'child done';
  });
  // Starts a long-lived helper process, then is stopped (a timeout, a clear) while it spins.
  d.task('spawns_then_spins', async (ctx) => {
    spawn('sleep', [String(ctx.conf.seconds)], { stdio: 'ignore' });
    for (;;) {
      // CPU-bound: the runner is killed from outside.
    }
  });
});

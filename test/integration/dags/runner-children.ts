import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { dag } from 'updraft';

/** Test fixture of the runner children tests: tasks that start a long-lived helper process. */
export default dag({ id: 'runner_children', schedule: null }, (d) => {
  // Starts a helper, then is stopped (a timeout, a clear) while it spins.
  d.task('spawns_then_spins', async (ctx) => {
    spawn('sleep', [String(ctx.conf.seconds)], { stdio: 'ignore' });
    for (;;) {
      // CPU-bound: the runner is killed from outside.
    }
  });
  // Starts a helper, then ends its own process.
  d.task('spawns_then_exits', async (ctx) => {
    spawn('sleep', [String(ctx.conf.seconds)], { stdio: 'ignore' });
    await sleep(500);
    process.exit(3);
  });
});

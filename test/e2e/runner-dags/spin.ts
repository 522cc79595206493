import { spawn } from 'node:child_process';
import { dag } from 'updraft';

/**
 * Test fixture of the runner orphan test: a task that starts a helper process (`sleep <seconds>`
 * of its run's conf), then never yields its CPU.
 */
export default dag({ id: 'runner_spin', schedule: null }, (d) => {
  d.task('spin', async (ctx) => {
    if (ctx.conf.seconds) spawn('sleep', [String(ctx.conf.seconds)], { stdio: 'ignore' });
    console.log('spinning');
    for (;;) {
      // CPU-bound forever: no await, so the runner's event loop never turns again.
    }
  });
});

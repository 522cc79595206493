import { spawn } from 'node:child_process';
import { dag } from 'updraft';

/**
 * Test fixture of the runner orphan test: a task that starts a helper process (`sleep <seconds>`
 * of its run's conf), then never yields its CPU.
 */
export default dag({ id: 'runner_spin', schedule: null }, (d) => {
  // One retry: after a kill -9 the next start fails the lost try as orphaned and runs it again.
  d.task({ id: 'spin', retries: 1, retryDelay: '1s' }, async (ctx) => {
    if (ctx.conf.seconds) spawn('sleep', [String(ctx.conf.seconds)], { stdio: 'ignore' });
    console.log('spinning');
    for (;;) {
      // CPU-bound forever: no await, so the runner's event loop never turns again.
    }
  });
});

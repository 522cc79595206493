import { dag } from 'updraft';

/** Test fixture of the runner orphan test: a task that never yields its CPU. */
export default dag({ id: 'runner_spin', schedule: null }, (d) => {
  d.task('spin', async () => {
    console.log('spinning');
    for (;;) {
      // CPU-bound forever: no await, so the runner's event loop never turns again.
    }
  });
});

import { setTimeout as sleep } from 'node:timers/promises';
import { dag } from 'updraft';

/**
 * Test fixture of the runner fault tests: tasks that exhaust their memory, spin, exit the process
 * or throw something that is not an Error.
 */
export default dag({ id: 'runner_faults', schedule: null }, (d) => {
  // Keeps every array: the heap grows until V8 gives up at --max-old-space-size.
  d.task({ id: 'heap_hog', memoryLimitMb: 256 }, async () => {
    const kept: number[][] = [];
    for (;;) {
      kept.push(Array.from({ length: 100_000 }, (_, index) => index + kept.length));
      if (kept.length % 20 === 0) await sleep(0);
    }
  });
  // Off-heap: Buffers count in the resident memory, not in the JavaScript heap.
  d.task({ id: 'rss_hog', memoryLimitMb: 256 }, async () => {
    const kept: Buffer[] = [];
    for (let index = 0; index < 64; index++) {
      kept.push(Buffer.alloc(16 * 1024 * 1024, 1));
      await sleep(20);
    }
    await sleep(10_000);
    return kept.length;
  });
  d.task('spin', async () => {
    console.log('spinning');
    for (;;) {
      // CPU-bound forever: no await, so the event loop never turns again.
    }
  });
  d.task('exits', async () => {
    console.log('about to exit');
    process.exit(1);
  });
  d.task('throws_object', async () => {
    throw { code: 42, reason: 'bad row' };
  });
});

import { describe, expect, it } from 'vitest';
import { createLogger } from '#engine/logger.ts';
import { BackgroundTasks } from '#standalone/services.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('BackgroundTasks', () => {
  it('stops starting jobs and settles only once the jobs under way have finished', async () => {
    const lines: string[] = [];
    const background = new BackgroundTasks(
      createLogger({ level: 'error', write: (line) => lines.push(line) }),
    );
    let starts = 0;
    let finished = 0;
    background.every(10, async () => {
      starts += 1;
      await sleep(150);
      finished += 1;
    });
    let recovered = false;
    void background.once(
      sleep(200).then(() => {
        recovered = true;
      }),
      'Recovering failed',
    );
    void background.once(Promise.reject(new Error('boom')), 'A one-off job failed');
    await sleep(40);
    expect(starts).toBe(1);

    await background.stop();
    expect({ starts, finished, recovered }).toEqual({ starts: 1, finished: 1, recovered: true });
    expect(lines.join('\n')).toContain('A one-off job failed');
    await sleep(50);
    expect(starts).toBe(1);
  });
});

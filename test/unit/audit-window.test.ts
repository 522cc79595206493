import { describe, expect, it } from 'vitest';
import { auditWindow } from '#engine/entrypoints.ts';

const holders = (count: number) =>
  Array.from({ length: count }, (_, index) => ({
    id: `h${index}`,
    at: new Date(Date.UTC(2026, 0, 1, 0, 0, index)).toISOString(),
  }));

describe('the pool audit window', () => {
  it('checks every old holder, oldest first, when there are no more than one tick checks', () => {
    expect(auditWindow(holders(25).reverse(), 7).map((h) => h.id)).toEqual(holders(25).map((h) => h.id));
  });

  it.each([26, 60, 128, 1000])(
    'covers all of %s old holders within ceil(n / 25) consecutive periods',
    (count) => {
      const all = holders(count);
      const seen = new Set<string>();
      for (let period = 1_000; period < 1_000 + Math.ceil(count / 25); period += 1) {
        const window = auditWindow(all, period);
        expect(window).toHaveLength(25);
        for (const holder of window) seen.add(holder.id);
      }
      expect(seen.size).toBe(count);
    },
  );
});

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

  it.each([
    [26, 1],
    [50, 2],
    [75, 3],
    [100, 2],
    [125, 5],
    [128, 1],
    [1000, 4],
  ])(
    'covers all of %s old holders, ticks every %s periods, within 10 windows per 25 holders',
    (count, every) => {
      const all = holders(count);
      const seen = new Set<string>();
      const ticks = 10 * Math.ceil(count / 25);
      for (let tick = 0; tick < ticks; tick += 1) {
        const window = auditWindow(all, 353_000_000 + tick * every);
        expect(window).toHaveLength(25);
        for (const holder of window) seen.add(holder.id);
      }
      expect(seen.size).toBe(count);
    },
  );
});

import { describe, expect, it } from 'vitest';
import { PoolTurns } from '#engine/pool-turns.ts';

describe('PoolTurns', () => {
  it('runs the turns on one pool one after another, in order, numbered, and those of other pools beside them', async () => {
    const turns = new PoolTurns();
    const events: string[] = [];
    const turn = (pool: string, name: string, ms: number) =>
      turns.take(pool, async (number) => {
        events.push(`${name} begins (turn ${number})`);
        await new Promise((resolve) => setTimeout(resolve, ms));
        events.push(`${name} ends`);
        return name;
      });
    expect(turns.turn('a')).toBe(0);
    const results = await Promise.all([turn('a', 'a1', 20), turn('a', 'a2', 1), turn('b', 'b1', 5)]);
    expect(results).toEqual(['a1', 'a2', 'b1']);
    expect(events).toEqual([
      'a1 begins (turn 1)',
      'b1 begins (turn 1)',
      'b1 ends',
      'a1 ends',
      'a2 begins (turn 2)',
      'a2 ends',
    ]);
    expect([turns.turn('a'), turns.turn('b')]).toEqual([2, 1]);
  });

  it('goes on with the next turn after one that failed, and hands the failure to its caller', async () => {
    const turns = new PoolTurns();
    const failed = turns.take('a', async () => {
      throw new Error('lost');
    });
    const next = turns.take('a', async () => 'next');
    await expect(failed).rejects.toThrow('lost');
    await expect(next).resolves.toBe('next');
  });
});

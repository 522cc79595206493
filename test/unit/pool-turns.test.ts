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

describe('PoolTurns.leave', () => {
  const seen = (used: number, sentAt: number) => ({ state: { used, holders: {}, waiting: {} }, sentAt });

  it('hands the state a turn left to the turn right after it, and to no later one', async () => {
    const turns = new PoolTurns();
    const handed: unknown[] = [];
    await turns.take('a', async (turn) => {
      handed.push(turns.leftBefore('a', turn, 0));
      turns.leave('a', turn, seen(1, 10));
    });
    await turns.take('a', async (turn) => {
      handed.push(turns.leftBefore('a', turn, 10));
    });
    await turns.take('a', async (turn) => {
      handed.push(turns.leftBefore('a', turn, 0));
    });
    expect(handed).toEqual([undefined, seen(1, 10), undefined]);
    expect(turns.leftBefore('b', 1, 0)).toBeUndefined();
  });

  it('hands none once a give-back outside the turns forgot it', async () => {
    const turns = new PoolTurns();
    await turns.take('a', async (turn) => turns.leave('a', turn, seen(1, 10)));
    turns.forget('a');
    await turns.take('a', async (turn) => {
      expect(turns.leftBefore('a', turn, 0)).toBeUndefined();
    });
  });

  it('hands none produced by a request sent before the given time (the pass read its head later)', async () => {
    const turns = new PoolTurns();
    await turns.take('a', async (turn) => turns.leave('a', turn, seen(1, 10)));
    await turns.take('a', async (turn) => {
      expect(turns.leftBefore('a', turn, 11)).toBeUndefined();
    });
  });
});

describe('PoolTurns.idle', () => {
  it('is false while a turn is under way or waiting, and true once the last has ended', async () => {
    const turns = new PoolTurns();
    expect(turns.idle('a')).toBe(true);
    let release: (() => void) | undefined;
    const first = turns.take('a', () => new Promise<void>((resolve) => (release = resolve)));
    const second = turns.take('a', async () => undefined);
    await new Promise((resolve) => setImmediate(resolve));
    expect(turns.idle('a')).toBe(false);
    expect(turns.idle('b')).toBe(true);
    release?.();
    await Promise.all([first, second]);
    expect(turns.idle('a')).toBe(true);
  });
});

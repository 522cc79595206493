import { describe, expect, it } from 'vitest';
import { LogChunker } from '#worker/log-chunker.ts';

function drain(chunker: LogChunker) {
  const out: { seq: number; text: string }[] = [];
  for (let c = chunker.take(false); c; c = chunker.take(false)) out.push(c);
  const last = chunker.take(true);
  if (last) out.push(last);
  return out;
}

describe('LogChunker limits', () => {
  it('exactly maxBytes fits one chunk; multibyte characters never split; huge line capped with marker', () => {
    const exact = new LogChunker(1024, 4);
    exact.add('a'.repeat(1024));
    expect(drain(exact)).toEqual([{ seq: 1, text: 'a'.repeat(1024) }]);

    const multi = new LogChunker(1024, 4);
    const text = `${'a'.repeat(1023)}€€`; // € is 3 bytes: the boundary falls inside it
    multi.add(text);
    const chunks = drain(multi);
    expect(chunks.map((c) => c.text).join('')).toBe(text);
    for (const c of chunks) expect(Buffer.byteLength(c.text)).toBeLessThanOrEqual(1024);

    const huge = new LogChunker(1024, 4);
    huge.add('z'.repeat(10_000_000));
    const capped = drain(huge);
    expect(capped.map((c) => c.seq)).toEqual([1, 2, 3, 4]);
    expect(capped.at(-1)?.text).toContain('reached its limit');
    for (const c of capped) expect(Buffer.byteLength(c.text)).toBeLessThanOrEqual(1024);
  });

  it('sends the open chunk again, longer, under the same seq, and opens the next seq once it is full', () => {
    let now = 0;
    const chunker = new LogChunker(1024, 4, { now: () => now, maxDelayMs: 10_000 });
    chunker.add('a'.repeat(100));
    expect(chunker.take(false)).toBeUndefined();
    now += 10_000;
    expect(chunker.take(false)).toEqual({ seq: 1, text: 'a'.repeat(100) });
    expect(chunker.take(false)).toBeUndefined();
    chunker.add('b'.repeat(100));
    now += 10_000;
    expect(chunker.take(false)).toEqual({ seq: 1, text: 'a'.repeat(100) + 'b'.repeat(100) });
    chunker.add('c'.repeat(900));
    expect(chunker.take(false)).toEqual({
      seq: 1,
      text: 'a'.repeat(100) + 'b'.repeat(100) + 'c'.repeat(824),
    });
    expect(chunker.take(true)).toEqual({ seq: 2, text: 'c'.repeat(76) });
  });

  it('sends a failed open chunk again whole at the next take; drops a refused one and opens the next seq', () => {
    const chunker = new LogChunker(1024, 4);
    chunker.add('x'.repeat(10));
    const first = chunker.take(true);
    expect(first).toEqual({ seq: 1, text: 'x'.repeat(10) });
    chunker.putBack(first as { seq: number; text: string });
    expect(chunker.take(false)).toEqual({ seq: 1, text: 'x'.repeat(10) });
    chunker.add('y');
    const second = chunker.take(true);
    expect(second).toEqual({ seq: 1, text: `${'x'.repeat(10)}y` });
    chunker.drop(second as { seq: number; text: string });
    chunker.add('z');
    expect(chunker.take(true)).toEqual({ seq: 2, text: 'z' });
  });
});

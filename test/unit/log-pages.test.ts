import { describe, expect, it } from 'vitest';
import { LOG_PAGE_MAX_BYTES, logPageOf } from '#api/log-pages.ts';
import { InvalidRequestError } from '#engine/errors.ts';

/** The public API's log pages: bounded in bytes, cut between characters, joined up by their tokens. */

function allPages(log: string, maxBytes: number): string[] {
  const pages: string[] = [];
  let token: string | undefined;
  do {
    const page = logPageOf(log, token, maxBytes);
    pages.push(page.content);
    token = page.continuation_token;
  } while (token !== undefined);
  return pages;
}

describe('logPageOf', () => {
  it('answers a log that fits one page whole, without a continuation token', () => {
    expect(logPageOf('line one\nline two\n', undefined)).toEqual({ content: 'line one\nline two\n' });
    expect(logPageOf('', undefined)).toEqual({ content: '' });
  });

  it('cuts pages of at most the limit in UTF-8 bytes, never inside a character, that join up to the log', () => {
    const log = 'aé€😀'.repeat(50); // 1, 2, 3 and 4 bytes
    const pages = allPages(log, 7);
    expect(pages.join('')).toBe(log);
    for (const page of pages) {
      expect(Buffer.byteLength(page)).toBeLessThanOrEqual(7);
      expect(page).not.toContain('\uFFFD');
    }
  });

  it('pages a 5 MiB log in pages of 768 KiB', () => {
    const log = 'x'.repeat(5 * 1024 * 1024);
    const pages = allPages(log, LOG_PAGE_MAX_BYTES);
    expect(pages.map((page) => page.length)).toEqual([
      ...Array(6).fill(LOG_PAGE_MAX_BYTES),
      5 * 1024 * 1024 - 6 * LOG_PAGE_MAX_BYTES,
    ]);
  });

  it('refuses a token it did not give, or one that points inside a character or past the end', () => {
    expect(() => logPageOf('abc', 'not-a-token')).toThrow(InvalidRequestError);
    const afterOneByte = logPageOf('abc', undefined, 1).continuation_token;
    expect(() => logPageOf('éé', afterOneByte)).toThrow(InvalidRequestError);
    expect(() => logPageOf('ab', logPageOf('abcd', undefined, 3).continuation_token)).toThrow(
      /does not name a place/,
    );
  });
});

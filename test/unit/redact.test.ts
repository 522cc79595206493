import { describe, expect, it } from 'vitest';
import { REDACTED, redactJsonText } from '#core/redact.ts';
import { serialize } from '#sdk/serde.ts';

describe('redactJsonText', () => {
  it('masks sensitive-looking keys at any depth, typed values included, and keeps the rest', () => {
    const text = serialize({
      url: 'https://jobs.example/1',
      headers: { Authorization: 'Bearer abc', Accept: 'application/json' },
      auth: [{ password: 'p', user: 'u' }],
      api_key: 'k',
      when: new Date(0),
    });
    expect(JSON.parse(redactJsonText(text))).toEqual({
      url: 'https://jobs.example/1',
      headers: { Authorization: REDACTED, Accept: 'application/json' },
      auth: [{ password: REDACTED, user: 'u' }],
      api_key: REDACTED,
      when: { __updraft_type: 'updraft.Date', value: '1970-01-01T00:00:00.000Z' },
    });
  });

  it('returns text with nothing to mask, or that is not JSON, unchanged', () => {
    for (const text of ['{"moment": "2030-01-01T00:00:00Z"}', 'not json', '{"token": null}']) {
      expect(redactJsonText(text)).toBe(text);
    }
  });
});

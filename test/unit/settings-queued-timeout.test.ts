import { describe, expect, it } from 'vitest';
import { loadSettings, settingsSchema } from '#config/settings.ts';

/**
 * A workload's token is issued when it is queued and lives executionTokenTtlSeconds; the scheduler
 * re-sends (with a new token) a workload still queued after queuedTimeoutMs. So queuedTimeoutMs
 * must stay below half the token lifetime: every workload is re-sent long before its token expires.
 */
describe('queuedTimeoutMs against the token lifetime', () => {
  it('refuses a queued timeout at or above half the token lifetime, naming both settings', () => {
    for (const queuedTimeoutMs of [300_000, 900_000]) {
      const parsed = settingsSchema.safeParse({ queuedTimeoutMs, executionTokenTtlSeconds: 600 });
      expect(parsed.success).toBe(false);
      const message = parsed.error?.issues.map((issue) => issue.message).join('; ') ?? '';
      expect(message).toContain('executionTokenTtlSeconds');
      expect(parsed.error?.issues.some((issue) => issue.path[0] === 'queuedTimeoutMs')).toBe(true);
    }
  });

  it('names both environment variables when loaded from the environment', () => {
    expect(() =>
      loadSettings(
        { UPDRAFT_QUEUED_TIMEOUT_MS: '900000', UPDRAFT_EXECUTION_TOKEN_TTL_SECONDS: '600' },
        '/nonexistent',
      ),
    ).toThrow(/UPDRAFT_QUEUED_TIMEOUT_MS.*UPDRAFT_EXECUTION_TOKEN_TTL_SECONDS/);
  });

  it('accepts a queued timeout below half the token lifetime, and the defaults', () => {
    expect(() =>
      settingsSchema.parse({ queuedTimeoutMs: 299_999, executionTokenTtlSeconds: 600 }),
    ).not.toThrow();
    expect(() =>
      settingsSchema.parse({ queuedTimeoutMs: 900_000, executionTokenTtlSeconds: 1_801 }),
    ).not.toThrow();
    expect(() => settingsSchema.parse({})).not.toThrow();
  });
});

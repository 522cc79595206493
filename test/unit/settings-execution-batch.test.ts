import { describe, expect, it } from 'vitest';
import { loadSettings, settingsSchema, workerCallTimeoutMs } from '#config/settings.ts';

/** A call a worker holds for a batch must still have most of its timeout to be answered. */
describe('executionBatchWindowMs against the worker call timeout', () => {
  it('refuses a window over a quarter of the call timeout, naming both settings', () => {
    const parsed = settingsSchema.safeParse({
      executionBatchWindowMs: 1_000,
      heartbeatTimeoutMs: 4_000,
      heartbeatIntervalMs: 800,
    });
    expect(parsed.success).toBe(false);
    const issue = parsed.error?.issues.find((found) => found.path[0] === 'executionBatchWindowMs');
    expect(issue?.message).toContain('500 ms, from heartbeatTimeoutMs (UPDRAFT_HEARTBEAT_TIMEOUT_MS) 4000');
    expect(() =>
      loadSettings(
        {
          UPDRAFT_EXECUTION_BATCH_WINDOW_MS: '1000',
          UPDRAFT_HEARTBEAT_TIMEOUT_MS: '4000',
          UPDRAFT_HEARTBEAT_INTERVAL_MS: '800',
        },
        '/nonexistent',
      ),
    ).toThrow(/UPDRAFT_EXECUTION_BATCH_WINDOW_MS.*UPDRAFT_HEARTBEAT_TIMEOUT_MS/);
  });

  it('accepts a window of exactly a quarter, and the defaults with any heartbeat timeout', () => {
    expect(workerCallTimeoutMs(4_000)).toBe(500);
    expect(() =>
      settingsSchema.parse({
        executionBatchWindowMs: 125,
        heartbeatTimeoutMs: 4_000,
        heartbeatIntervalMs: 800,
      }),
    ).not.toThrow();
    for (const heartbeatTimeoutMs of [500, 60_000, 200_000])
      expect(() =>
        settingsSchema.parse({ heartbeatTimeoutMs, heartbeatIntervalMs: heartbeatTimeoutMs / 5 }),
      ).not.toThrow();
  });

  it('bounds the batch size from 1 to 100', () => {
    expect(settingsSchema.safeParse({ executionBatchMaxCalls: 0 }).success).toBe(false);
    expect(settingsSchema.safeParse({ executionBatchMaxCalls: 101 }).success).toBe(false);
    expect(settingsSchema.parse({ executionBatchMaxCalls: 100 }).executionBatchMaxCalls).toBe(100);
    expect(settingsSchema.parse({}).executionBatchMaxCalls).toBe(10);
  });
});

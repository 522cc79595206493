import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settingsSchema } from '#config/settings.ts';
import type { TaskWorkload } from '#contracts/messages.ts';
import type { TaskInstanceKey } from '#core/models.ts';
import { silentLogger } from '#engine/logger.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import { dag } from '#sdk/index.ts';
import { systemClock } from '#worker/clock.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import type { TaskExecutor } from '#worker/executor.ts';
import type { RunnerOutcome } from '#worker/protocol.ts';
import { runWorkload } from '#worker/run-workload.ts';
import { type ApiHarness, startApiHarness, tiKey } from './api-harness.ts';

/**
 * End to end: the real API over HTTP (api-harness) and the real worker entry (runWorkload with
 * the real ExecutionClient), with limits settingsSchema accepts.
 */
const LIMITS = {
  requestMaxBytes: 16_384,
  // 6 × 2,048 + 1,024 = 13,312 ≤ 16,384: any chunk fits a heartbeat once escaped.
  logChunkMaxBytes: 2_048,
  logMaxBytes: 8_192,
  // 2 × 7,000 + 1,024 = 15,024 ≤ 16,384: any XCom fits a report once escaped.
  xcomMaxBytes: 7_000,
  confMaxBytes: 256,
};

let api: ApiHarness;
beforeAll(async () => {
  api = await startApiHarness(LIMITS);
  await api.registerDags([
    dag({ id: 'limits', defaultArgs: { retries: 3 } }, (d) => d.task('work', async () => 1)),
  ]);
});
afterAll(async () => {
  await api?.close();
});

let runCounter = 0;
async function queuedTry(): Promise<{ key: TaskInstanceKey; workload: TaskWorkload }> {
  runCounter += 1;
  const runId = `r${runCounter}`;
  const created = await api.request('POST', '/api/v2/dags/limits/dagRuns', { dag_run_id: runId });
  expect(created.status).toBe(201);
  const key = tiKey('limits', runId, 'work');
  const token = await api.queueTaskInstance(key);
  return {
    key,
    workload: {
      type: 'execute_task',
      ti: { dag_id: 'limits', run_id: runId, task_id: 'work', map_index: -1 },
      try_number: 1,
      token,
      fileloc: 'dags/limits.ts',
      dag_version: 'v',
    },
  };
}

function executorReturning(outcome: RunnerOutcome, log = ''): TaskExecutor {
  return {
    async run(_started, _args, hooks) {
      if (log) hooks.onLog(log);
      return outcome;
    },
  };
}

async function runEndToEnd(workload: TaskWorkload, executor: TaskExecutor) {
  return runWorkload(
    {
      client: new ExecutionClient(api.baseUrl, { retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 1 } }),
      executor,
      clock: systemClock,
      settings: { heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: 60_000 },
      log: silentLogger,
      metrics: new MetricsRegistry(),
      worker: { hostname: 'h', workerId: 'w', pid: 1 },
    },
    workload,
  );
}

describe('XCom size at the limit (end to end)', () => {
  it('settingsSchema accepts the limits used here', () => {
    expect(() => settingsSchema.parse({ ...LIMITS })).not.toThrow();
  });

  it('an XCom of exactly xcomMaxBytes is stored', async () => {
    const { key, workload } = await queuedTry();
    const xcom = JSON.stringify('x'.repeat(LIMITS.xcomMaxBytes - 2));
    expect(Buffer.byteLength(xcom)).toBe(LIMITS.xcomMaxBytes);
    const result = await runEndToEnd(workload, executorReturning({ kind: 'success', xcom }));
    expect(result.outcome).toBe('success');
    expect((await api.store.getTaskInstance(key))?.state).toBe('success');
  });

  it('an XCom one byte over fails the try without retry, naming the limit', async () => {
    const { key, workload } = await queuedTry();
    const xcom = JSON.stringify('x'.repeat(LIMITS.xcomMaxBytes - 1));
    const result = await runEndToEnd(workload, executorReturning({ kind: 'success', xcom }));
    const ti = await api.store.getTaskInstance(key);
    expect(result.outcome).toBe('failed');
    expect(ti?.state).toBe('failed');
    expect(ti?.errorMessage).toContain('UPDRAFT_XCOM_MAX_BYTES');
  });
});

describe('log volume never changes an outcome (end to end)', () => {
  it('a success whose XCom and last log chunk fit alone but not together stays a success with its XCom', async () => {
    const { key, workload } = await queuedTry();
    // The XCom: a JSON string of quotes, 6,802 bytes (under 7,000); ~13.6 KB once escaped in the body.
    const xcom = JSON.stringify('"'.repeat(3_400));
    expect(Buffer.byteLength(xcom)).toBeLessThanOrEqual(LIMITS.xcomMaxBytes);
    // The last log chunk: 2,000 bytes of terminal colour output (ESC escapes to \u001b).
    const log = '\x1b'.repeat(2_000);
    const result = await runEndToEnd(workload, executorReturning({ kind: 'success', xcom }, log));
    const ti = await api.store.getTaskInstance(key);
    // The chunk goes on a heartbeat of its own, then the report without it: still a success.
    expect({ outcome: result.outcome, state: ti?.state, error: ti?.errorMessage ?? null }).toEqual({
      outcome: 'success',
      state: 'success',
      error: null,
    });
  });
});

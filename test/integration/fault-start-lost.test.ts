import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dag } from '#sdk/index.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import type { TaskExecutor } from '#worker/executor.ts';
import { runWorkload } from '#worker/run-workload.ts';
import { FakeClock, type LogLine, recordingLogger } from '../unit/helpers/worker-fakes.ts';
import { type ApiHarness, startApiHarness, tiKey } from './api-harness.ts';

let api: ApiHarness;
beforeAll(async () => {
  api = await startApiHarness();
  await api.registerDags([dag({ id: 'once' }, (d) => d.task('work', async () => 1))]);
});
afterAll(async () => {
  await api?.close();
});

describe('the start response is lost after the API recorded the start', () => {
  it('runs the try (the retried start is not a 409 that throws the try away)', async () => {
    expect((await api.request('POST', '/api/v2/dags/once/dagRuns', { dag_run_id: 'r1' })).status).toBe(201);
    const key = tiKey('once', 'r1', 'work');
    const token = await api.queueTaskInstance(key);
    let dropped = false;
    const lossy = (async (input: string | URL | Request, init?: RequestInit) => {
      const response = await fetch(input, init);
      if (!dropped && new URL(String(input)).pathname.endsWith('/run')) {
        dropped = true; // the store write happened; the connection drops before the answer arrives
        await response.text();
        throw new TypeError('fetch failed (connection reset)');
      }
      return response;
    }) as typeof fetch;
    const clock = new FakeClock();
    let ran = false;
    const executor: TaskExecutor = {
      async run() {
        ran = true;
        return { kind: 'success', xcom: '1' };
      },
    };
    const lines: LogLine[] = [];
    const result = await runWorkload(
      {
        client: new ExecutionClient(api.baseUrl, {
          fetch: lossy,
          now: () => clock.now(),
          sleep: (ms) => clock.sleep(ms),
          random: () => 0.5,
        }),
        executor,
        clock,
        settings: { heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: 60_000 },
        log: recordingLogger(lines),
        worker: { hostname: 'test-host', workerId: 'worker-1', pid: 1 },
      },
      {
        type: 'execute_task',
        ti: { dag_id: 'once', run_id: 'r1', task_id: 'work', map_index: -1 },
        try_number: 1,
        token,
        fileloc: 'dags/once.ts',
        dag_version: 'v',
      },
    );
    const ti = await api.store.getTaskInstance(key);
    // Today: the message is deleted, nothing runs, the TI stays `running` with no process behind it
    // until the zombie threshold fails the try (a task with retries: 0 fails without having run).
    expect({ ran, started: result.started, state: ti?.state }).toEqual({
      ran: true,
      started: true,
      state: 'success',
    });
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settingsSchema } from '#config/settings.ts';
import type { StartedTask } from '#contracts/execution-api.ts';
import type { TaskWorkload } from '#contracts/messages.ts';
import { dag } from '#sdk/index.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import type { TaskExecutor } from '#worker/executor.ts';
import { runWorkload } from '#worker/run-workload.ts';
import {
  FakeClock,
  type LogLine,
  recordingLogger,
  startedTaskFixture,
} from '../unit/helpers/worker-fakes.ts';
import { type ApiHarness, startApiHarness, TEST_LIMITS, tiKey, tiPath, WORKER } from './api-harness.ts';

let api: ApiHarness;
beforeAll(async () => {
  api = await startApiHarness();
  await api.registerDags([dag({ id: 'chatty' }, (d) => d.task('work', async () => 1))]);
});
afterAll(async () => {
  await api?.close();
});

describe('log chunks within logChunkMaxBytes that the request limit refuses', () => {
  it('records a heartbeat whose chunk is within UPDRAFT_LOG_CHUNK_MAX_BYTES (real HTTP)', async () => {
    const created = await api.request('POST', '/api/v2/dags/chatty/dagRuns', { dag_run_id: 'r1' });
    expect(created.status).toBe(201);
    const key = tiKey('chatty', 'r1', 'work');
    const token = await api.queueTaskInstance(key);
    expect((await api.request('PATCH', tiPath(key, 'run'), WORKER, token)).status).toBe(200);
    const before = (await api.store.getTaskInstance(key))!.heartbeatAt;
    api.clock.advance(10_000);

    // 1,000 bytes of terminal output (ANSI colour codes: ESC is escaped to \u001b in JSON): under
    // the 1,024-byte chunk limit, but about 2.6 KB as a JSON body, over the 2,048-byte request limit.
    const text = '\x1b[1m'.repeat(250);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(TEST_LIMITS.logChunkMaxBytes);
    const beat = await api.request('PUT', tiPath(key, 'heartbeat'), { log: { seq: 1, text } }, token);

    const after = (await api.store.getTaskInstance(key))!.heartbeatAt;
    expect({ status: beat.status, heartbeatRecorded: after !== before }).toEqual({
      status: 200,
      heartbeatRecorded: true,
    });
  });

  it('the settings refuse a chunk limit that no request can carry once JSON-escaped', () => {
    // Accepted today: every full chunk + its JSON envelope is over the request limit.
    expect(() => settingsSchema.parse({ logChunkMaxBytes: 1_048_575, requestMaxBytes: 1_048_576 })).toThrow();
  });
});

const HEARTBEAT_TIMEOUT_MS = 60_000;

function started(): StartedTask {
  return startedTaskFixture({ max_tries: 1, log_max_chunks: 1000 });
}

describe('a worker whose every heartbeat is refused with 413', () => {
  it('still gets a heartbeat through (the 413 drops the chunk and beats again at once)', async () => {
    const clock = new FakeClock();
    const beats: { status: number; at: number }[] = [];
    const fetchStub = (async (input: string | URL | Request, init?: RequestInit) => {
      const action = new URL(String(input)).pathname.split('/')[4];
      if (action === 'run') return Response.json(started());
      if (action === 'heartbeat') {
        // As the API answers: the body (a chunk of escaped control characters) is over the request limit.
        const status = String(init?.body ?? '').length > 2048 ? 413 : 200;
        beats.push({ status, at: clock.now() });
        return status === 413
          ? Response.json({ detail: 'Request body is larger than 2048 bytes', status }, { status })
          : Response.json({ ok: true });
      }
      return Response.json({ ok: true });
    }) as typeof fetch;
    const lines: LogLine[] = [];
    let stoppedAt: number | undefined;
    const start = clock.now();
    // A task that prints coloured progress all the time, for 5 minutes.
    const executor: TaskExecutor = {
      async run(_started, _args, hooks) {
        for (let elapsed = 0; elapsed < 300_000 && !hooks.signal.aborted; elapsed += 500) {
          hooks.onLog('\x1b[32m'.repeat(200));
          await clock.sleep(500, hooks.signal);
        }
        if (hooks.signal.aborted) stoppedAt = clock.now();
        return { kind: 'success', xcom: '1' };
      },
    };
    const workload: TaskWorkload = {
      type: 'execute_task',
      ti: { dag_id: 'd', run_id: 'r', task_id: 't', map_index: -1 },
      try_number: 1,
      token: 'tok',
      fileloc: 'd.ts',
      dag_version: 'v',
    };
    await runWorkload(
      {
        client: new ExecutionClient('http://api.test', {
          fetch: fetchStub,
          now: () => clock.now(),
          sleep: (ms) => clock.sleep(ms),
          random: () => 0.5,
        }),
        executor,
        clock,
        settings: { heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS },
        log: recordingLogger(lines),
        worker: { hostname: 'h', workerId: 'w', pid: 1 },
      },
      workload,
    );
    const recorded = beats.filter((b) => b.status === 200 && b.at - start < HEARTBEAT_TIMEOUT_MS);
    // Either a heartbeat got through before the zombie threshold, or the task was stopped before it.
    expect(recorded.length > 0 || (stoppedAt !== undefined && stoppedAt - start < HEARTBEAT_TIMEOUT_MS)).toBe(
      true,
    );
  });
});

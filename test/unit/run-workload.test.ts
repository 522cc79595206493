import { describe, expect, it } from 'vitest';
import { decodeTaskInstanceId, type StartedTask } from '#contracts/execution-api.ts';
import type { TaskWorkload } from '#contracts/messages.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import type { WorkerClock } from '#worker/clock.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import type { TaskExecutor, TaskHooks } from '#worker/executor.ts';
import type { RunnerOutcome } from '#worker/protocol.ts';
import { runWorkload, type WorkloadOptions } from '#worker/run-workload.ts';
import { FakeClock, type LogLine, recordingLogger, startedTaskFixture } from './helpers/worker-fakes.ts';

/**
 * runWorkload against a scripted Execution API (a `fetch` stub answering with Responses) and a
 * fake clock: heartbeats, outages and backoffs over minutes of simulated time run at once.
 */

const HEARTBEAT_INTERVAL_MS = 5_000;
const HEARTBEAT_TIMEOUT_MS = 60_000;

interface Call {
  action: 'run' | 'heartbeat' | 'state' | 'xcoms';
  token: string;
  body: Record<string, unknown>;
  at: number;
}

type Answer = Response | Error | undefined;

interface FakeApi {
  calls: Call[];
  recordedReports: Map<string, Record<string, unknown>>;
  /** Answers a call first; undefined: a healthy API answers. `recordReport` applies a report. */
  respond(call: Call, recordReport: () => void): Answer;
  fetch: typeof fetch;
}

/** The fake API: records calls, answers `respond` first, else like a healthy API (duplicates included). */
function fakeApi(clock: WorkerClock, started: Partial<StartedTask> = {}): FakeApi {
  const calls: Call[] = [];
  const recordedReports = new Map<string, Record<string, unknown>>();
  const api: FakeApi = {
    calls,
    recordedReports,
    respond: (_call: Call, _recordReport: () => void): Answer => undefined,
    fetch: (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(String(input));
      const parts = url.pathname.split('/');
      const action = (parts[2] === 'xcoms' ? 'xcoms' : parts[4]) as Call['action'];
      const token = new Headers(init?.headers).get('authorization')?.slice('Bearer '.length) ?? '';
      const body = JSON.parse(String(init?.body ?? '{}')) as Record<string, unknown>;
      const call: Call = { action, token, body, at: clock.now() };
      calls.push(call);
      const record = () => {
        if (!recordedReports.has(String(body.report_id))) recordedReports.set(String(body.report_id), body);
      };
      const scripted: Answer = api.respond(call, record);
      if (scripted instanceof Error) throw scripted;
      if (scripted) return scripted;
      if (action === 'run') {
        const key = decodeTaskInstanceId(parts[3] ?? '');
        return Response.json({ ...startedTask(key?.taskId ?? ''), ...started });
      }
      if (action === 'state') {
        const duplicate = recordedReports.has(String(body.report_id));
        record();
        return Response.json(duplicate ? { ok: true, duplicate: true } : { ok: true });
      }
      return Response.json({ ok: true });
    }) as typeof fetch,
  };
  return api;
}

function startedTask(taskId: string): StartedTask {
  return startedTaskFixture({ task_id: taskId, log_chunk_max_bytes: 262_144 });
}

const workload: TaskWorkload = {
  type: 'execute_task',
  ti: { dag_id: 'd', run_id: 'r', task_id: 't', map_index: -1 },
  try_number: 1,
  token: 'token-1',
  fileloc: 'd.ts',
  dag_version: 'v',
};

/** A task that runs for `ms` of fake time (or until stopped), then ends as `outcome`. */
function task(
  clock: WorkerClock,
  ms: number,
  outcome: RunnerOutcome = { kind: 'success', xcom: '42' },
  before?: (hooks: TaskHooks) => void,
): TaskExecutor & { signal?: AbortSignal } {
  const executor: TaskExecutor & { signal?: AbortSignal } = {
    async run(_started, _args, hooks) {
      executor.signal = hooks.signal;
      before?.(hooks);
      await clock.sleep(ms, hooks.signal);
      if (hooks.signal.aborted) return { kind: 'error', message: String(hooks.signal.reason) };
      return outcome;
    },
  };
  return executor;
}

function setup(
  options: {
    started?: Partial<StartedTask>;
    executor?: (clock: FakeClock) => TaskExecutor;
    heartbeatIntervalMs?: number;
  } = {},
) {
  const clock = new FakeClock();
  const api = fakeApi(clock, options.started);
  const lines: LogLine[] = [];
  const metrics = new MetricsRegistry();
  const executor = options.executor?.(clock) ?? task(clock, 1_000);
  const deps = {
    client: new ExecutionClient('http://api.test', {
      fetch: api.fetch,
      now: () => clock.now(),
      sleep: (ms: number) => clock.sleep(ms),
      random: () => 0.5,
    }),
    executor,
    clock,
    settings: {
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS,
      heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS,
    },
    log: recordingLogger(lines),
    metrics,
    worker: { hostname: 'h', workerId: 'w', pid: 1 },
  };
  let onStartedCalls = 0;
  const run = (runOptions: WorkloadOptions = {}) =>
    runWorkload(deps, workload, { onStarted: () => (onStartedCalls += 1), ...runOptions });
  return { clock, api, lines, metrics, run, executor, onStarted: () => onStartedCalls };
}

const reports = (calls: Call[]) => calls.filter((call) => call.action === 'state');
const problem = (status: number, detail = 'refused') => Response.json({ detail, status }, { status });
const logText = (calls: Call[]) =>
  calls
    .map((call) => call.body.log as { seq: number; text: string } | undefined)
    .filter((chunk) => chunk !== undefined)
    .map((chunk) => chunk.text)
    .join('');

describe('runWorkload: start', () => {
  it('keeps the message and logs an error when the start is refused with 401', async () => {
    const { api, run, lines, metrics, onStarted } = setup();
    api.respond = (call) => (call.action === 'run' ? problem(401, 'Invalid task token') : undefined);

    const result = await run();

    expect(result).toMatchObject({ deleteMessage: false, started: false });
    expect(onStarted()).toBe(0);
    expect(
      lines.some((line) => line.level === 'error' && line.message.includes('401 Invalid task token')),
    ).toBe(true);
    expect((await metrics.snapshot()).counters['worker.workloads_refused']).toBe(1);
  });

  it('spends the message when the start answers 409', async () => {
    const { api, run, onStarted } = setup();
    api.respond = (call) => (call.action === 'run' ? problem(409, 'already running') : undefined);

    const result = await run();

    expect(result).toMatchObject({ deleteMessage: true, started: false, reported: false });
    expect(onStarted()).toBe(0);
  });

  it('keeps the message when the API stays unreachable for the start', async () => {
    const { api, run } = setup();
    api.respond = (call) => (call.action === 'run' ? new TypeError('fetch failed') : undefined);

    expect(await run()).toMatchObject({ deleteMessage: false, started: false });
    expect(api.calls.filter((call) => call.action === 'run').length).toBeGreaterThan(1);
  });
});

describe('runWorkload: heartbeats', () => {
  it('stops the task when a heartbeat answers 409, and says why in the log it sends', async () => {
    const { api, run, executor } = setup({ executor: (clock) => task(clock, 3_600_000) });
    api.respond = (call) => (call.action === 'heartbeat' ? problem(409, 'not running') : undefined);

    const result = await run();

    expect((executor as { signal?: AbortSignal }).signal?.aborted).toBe(true);
    expect(result.stopReason).toContain('409 not running');
    expect(reports(api.calls)).toHaveLength(1);
    expect(logText(reports(api.calls))).toContain('refused a heartbeat (409 not running)');
  });

  it('stops the task when a heartbeat answers 401', async () => {
    const { api, run, clock } = setup({ executor: (c) => task(c, 3_600_000) });
    const begin = clock.now();
    api.respond = (call) => (call.action === 'heartbeat' ? problem(401, 'Expired task token') : undefined);

    const result = await run();

    expect(result.stopReason).toContain("the try's token is no longer accepted");
    expect(clock.now() - begin).toBeLessThan(2 * HEARTBEAT_INTERVAL_MS);
  });

  it('stops the task when no heartbeat succeeds for more than half the heartbeat timeout', async () => {
    const { api, run, clock, lines } = setup({ executor: (c) => task(c, 3_600_000) });
    const begin = clock.now();
    api.respond = (call) => (call.action === 'heartbeat' ? new TypeError('fetch failed') : undefined);

    const result = await run();

    expect(result.stopReason).toContain('UPDRAFT_HEARTBEAT_TIMEOUT_MS');
    const stoppedAfter = api.calls.filter((call) => call.action === 'heartbeat').at(-1)!.at - begin;
    expect(stoppedAfter).toBeGreaterThan(HEARTBEAT_TIMEOUT_MS / 2);
    expect(stoppedAfter).toBeLessThanOrEqual(HEARTBEAT_TIMEOUT_MS / 2 + HEARTBEAT_INTERVAL_MS);
    expect(lines.some((line) => line.message.startsWith('Stopping the task'))).toBe(true);
  });

  it('switches to the refreshed tokens the API hands out', async () => {
    const { api, run } = setup({ executor: (c) => task(c, 12_000) });
    api.respond = (call) => {
      if (call.action === 'run')
        return Response.json(startedTask('t'), { headers: { 'Updraft-Refreshed-Token': 'token-2' } });
      if (call.action === 'heartbeat' && call.token === 'token-2')
        return Response.json({ ok: true }, { headers: { 'Updraft-Refreshed-Token': 'token-3' } });
      return undefined;
    };

    await run();

    expect(api.calls.map((call) => `${call.action}:${call.token}`)).toEqual([
      'run:token-1',
      'heartbeat:token-2',
      'heartbeat:token-3',
      'state:token-3',
    ]);
  });
});

describe('runWorkload: reports', () => {
  it('retries the report through a 30 s outage and delivers it once, under one report_id', async () => {
    const { api, run, clock } = setup();
    let outageEnds = Number.POSITIVE_INFINITY;
    api.respond = (call) => {
      if (call.action !== 'state') return undefined;
      if (outageEnds === Number.POSITIVE_INFINITY) outageEnds = clock.now() + 30_000;
      return call.at < outageEnds ? problem(503, 'unavailable') : undefined;
    };

    const result = await run();

    expect(result).toMatchObject({ reported: true, outcome: 'success' });
    const ids = new Set(reports(api.calls).map((call) => call.body.report_id));
    expect(ids.size).toBe(1);
    expect(reports(api.calls).length).toBeGreaterThan(2);
    expect(api.recordedReports.size).toBe(1);
  });

  it('records the outcome once when the connection drops after the API applied the report', async () => {
    const { api, run } = setup();
    api.respond = (call, record) => {
      if (call.action !== 'state' || reports(api.calls).length > 1) return undefined;
      record();
      return new TypeError('fetch failed: other side closed');
    };

    const result = await run();

    expect(result).toMatchObject({ reported: true });
    expect(reports(api.calls)).toHaveLength(2);
    expect(api.recordedReports.size).toBe(1);
  });

  it('warns and does not retry when the report answers 409', async () => {
    const { api, run, lines } = setup();
    api.respond = (call) => (call.action === 'state' ? problem(409, 'moved on') : undefined);

    const result = await run();

    expect(result.reported).toBe(false);
    expect(reports(api.calls)).toHaveLength(1);
    expect(
      lines.some(
        (line) =>
          line.level === 'warn' &&
          line.message === 'Outcome of try 1 arrived too late: the task instance moved on',
      ),
    ).toBe(true);
  });

  it('gives up after the heartbeat timeout, with an error naming the try and the outcome', async () => {
    const { api, run, lines, clock } = setup();
    api.respond = (call) => (call.action === 'state' ? problem(503, 'down') : undefined);
    const begin = clock.now();

    const result = await run();

    expect(result.reported).toBe(false);
    expect(reports(api.calls).at(-1)!.at - begin).toBeLessThanOrEqual(HEARTBEAT_TIMEOUT_MS + 1_000);
    expect(lines.some((line) => line.level === 'error' && line.message.includes('try 1 as success'))).toBe(
      true,
    );
  });

  it('reports a graceful stop as handed_back', async () => {
    const stop = new AbortController();
    const { api, run } = setup({
      executor: (c) => task(c, 3_600_000, undefined, () => setImmediate(() => stop.abort())),
    });

    const result = await run({ signal: stop.signal });

    expect(result.outcome).toBe('handed_back');
    expect(reports(api.calls)[0]?.body.state).toBe('handed_back');
  });

  it("reports a stop at the host's deadline as a retryable failure with the deadline's reason in its log", async () => {
    const deadline = new AbortController();
    const reason = "The task outlived the worker function's time limit of 880 s";
    const { api, run } = setup({
      executor: (c) => task(c, 3_600_000, undefined, () => setImmediate(() => deadline.abort(reason))),
    });

    const result = await run({ deadline: deadline.signal });

    expect(result.outcome).toBe('failed');
    expect(result.stopReason).toBe(reason);
    const report = reports(api.calls)[0]?.body;
    expect(report).toMatchObject({ state: 'failed', retryable: true, error_message: reason });
    expect((report?.log as { text: string } | undefined)?.text).toContain(`{ERROR} ${reason}`);
  });

  it('leaves the workload in its queue when the deadline comes before the start', async () => {
    const deadline = new AbortController();
    deadline.abort('out of time');
    const { api, run } = setup();

    expect(await run({ deadline: deadline.signal })).toEqual({
      deleteMessage: false,
      started: false,
      reported: false,
    });
    expect(api.calls).toEqual([]);
  });
});

describe('runWorkload: logs and XComs', () => {
  const chatty = (bytes: number, outcome?: RunnerOutcome) => (clock: FakeClock) =>
    task(clock, 20_000, outcome, (hooks) => {
      const line = `${'é'.repeat(49)}\n`; // 99 bytes, two-byte characters
      for (let written = 0; written < bytes; written += 99) hooks.onLog(line);
    });
  const chunksOf = (calls: Call[]) =>
    calls
      .map((call) => call.body.log as { seq: number; text: string } | undefined)
      .filter((c) => c !== undefined);

  it('reports success after 1.2 MB of logs, in chunks within the limit', async () => {
    const { api, run } = setup({ executor: chatty(1_200_000) });

    const result = await run();

    expect(result.outcome).toBe('success');
    const chunks = chunksOf(api.calls);
    expect(chunks.map((chunk) => chunk.seq)).toEqual(chunks.map((_, index) => index + 1));
    for (const chunk of chunks) expect(Buffer.byteLength(chunk.text)).toBeLessThanOrEqual(262_144);
    expect(chunks.map((chunk) => chunk.text).join('')).not.toContain('\uFFFD');
    expect(Buffer.byteLength(chunks.map((chunk) => chunk.text).join(''))).toBeGreaterThanOrEqual(1_200_000);
  });

  it('keeps at most log_max_chunks chunks and ends them with a marker naming the setting', async () => {
    const { api, run } = setup({
      started: { log_chunk_max_bytes: 2_000, log_max_chunks: 3 },
      executor: chatty(50_000),
    });

    const result = await run();

    expect(result.outcome).toBe('success');
    const chunks = chunksOf(api.calls);
    expect(chunks.map((chunk) => chunk.seq)).toEqual([1, 2, 3]);
    expect(chunks[2]?.text).toContain('UPDRAFT_LOG_MAX_BYTES');
    for (const chunk of chunks) expect(Buffer.byteLength(chunk.text)).toBeLessThanOrEqual(2_000);
  });

  it('fails without retry an XCom over xcom_max_bytes, naming the task, size, limit and setting', async () => {
    const xcom = JSON.stringify('x'.repeat(2_000));
    const { api, run } = setup({
      started: { xcom_max_bytes: 1_000 },
      executor: (c) => task(c, 10, { kind: 'success', xcom }),
    });

    const result = await run();

    expect(result.outcome).toBe('failed');
    expect(reports(api.calls)[0]?.body).toMatchObject({
      state: 'failed',
      retryable: false,
      error_message: expect.stringMatching(/'t'.*2002 bytes.*1000 bytes.*UPDRAFT_XCOM_MAX_BYTES/),
    });
  });
});

describe('runWorkload: execution timeout', () => {
  const longTimeout = 2 ** 31 + 60_000;
  // Hourly heartbeats: weeks of fake time in a few hundred steps.
  const heartbeatIntervalMs = 3_600_000;

  it('does not fire early when the timeout is above 2^31 ms', async () => {
    const { run } = setup({
      started: { execution_timeout_ms: longTimeout },
      executor: (c) => task(c, 2 ** 31),
      heartbeatIntervalMs,
    });

    const result = await run();

    expect(result.outcome).toBe('success');
  });

  it('stops the task when a timeout above 2^31 ms has passed', async () => {
    const { run, clock } = setup({
      started: { execution_timeout_ms: longTimeout },
      executor: (c) => task(c, 40 * 86_400_000),
      heartbeatIntervalMs,
    });
    const begin = clock.now();

    const result = await run();

    expect(result.stopReason).toBe(`Task exceeded its execution timeout of ${longTimeout / 1000}s`);
    expect(clock.now() - begin).toBeGreaterThanOrEqual(longTimeout);
    expect(clock.now() - begin).toBeLessThan(longTimeout + heartbeatIntervalMs);
  });
});

import { describe, expect, it } from 'vitest';
import type { StartedTask } from '#contracts/execution-api.ts';
import type { TaskWorkload } from '#contracts/messages.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import type { WorkerClock } from '#worker/clock.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import type { TaskExecutor } from '#worker/executor.ts';
import { runWorkload, type WorkloadDeps } from '#worker/run-workload.ts';
import { CANCEL_GRACE_MS } from '#worker/runner-process.ts';
import { FakeClock, type LogLine, recordingLogger, startedTaskFixture } from './helpers/worker-fakes.ts';

/** The worker's bounds: its log budget, its stop before the zombie threshold, its report window. */

/** A scripted Execution API for runWorkload, on a fake clock. */
interface ScriptedCall {
  action: 'run' | 'heartbeat' | 'state' | 'xcoms';
  body: Record<string, unknown>;
  at: number;
}

type Script = (call: ScriptedCall) => Promise<Response | Error | undefined> | Response | Error | undefined;

function startedTask(overrides: Partial<StartedTask> = {}): StartedTask {
  return startedTaskFixture(overrides);
}

const WORKLOAD: TaskWorkload = {
  type: 'execute_task',
  ti: { dag_id: 'd', run_id: 'r', task_id: 't', map_index: -1 },
  try_number: 1,
  token: 'token-1',
  fileloc: 'd.ts',
  dag_version: 'v',
};

function scriptedFetch(clock: WorkerClock, calls: ScriptedCall[], script: Script, started: StartedTask) {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    const parts = url.pathname.split('/');
    const action = (parts[2] === 'xcoms' ? 'xcoms' : parts[4]) as ScriptedCall['action'];
    const body = JSON.parse(String(init?.body ?? '{}')) as Record<string, unknown>;
    const call: ScriptedCall = { action, body, at: clock.now() };
    calls.push(call);
    const answer = await script(call);
    if (answer instanceof Error) throw answer;
    if (answer) return answer;
    if (action === 'run') return Response.json(started);
    return Response.json({ ok: true });
  }) as typeof fetch;
}

const HEARTBEAT_INTERVAL_MS = 5_000;
const HEARTBEAT_TIMEOUT_MS = 60_000;

function workerDeps(options: {
  script?: Script;
  started?: Partial<StartedTask>;
  executor: (clock: FakeClock) => TaskExecutor;
}) {
  const clock = new FakeClock();
  const calls: ScriptedCall[] = [];
  const lines: LogLine[] = [];
  const started = startedTask(options.started);
  const deps: WorkloadDeps = {
    client: new ExecutionClient('http://api.test', {
      fetch: scriptedFetch(clock, calls, options.script ?? (() => undefined), started),
      now: () => clock.now(),
      sleep: (ms: number) => clock.sleep(ms),
      random: () => 0.5,
    }),
    executor: options.executor(clock),
    clock,
    settings: { heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS },
    log: recordingLogger(lines),
    metrics: new MetricsRegistry(),
    worker: { hostname: 'h', workerId: 'w', pid: 1 },
  };
  return { clock, calls, lines, deps };
}

/** The try's log as the API would store it: chunk texts by seq, one copy per seq. */
function assembledLog(calls: ScriptedCall[], accepted: (call: ScriptedCall) => boolean = () => true): string {
  const bySeq = new Map<number, string>();
  for (const call of calls) {
    const log = call.body.log as { seq: number; text: string } | undefined;
    if (log && accepted(call)) bySeq.set(log.seq, log.text);
  }
  return [...bySeq.entries()]
    .sort(([a], [b]) => a - b)
    .map(([, text]) => text)
    .join('');
}

/** A task that runs `ms` of fake time unless stopped; records when it saw its stop. */
function longTask(
  clock: FakeClock,
  ms: number,
  seen: { abortedAt?: number },
  onStart?: (log: (t: string) => void) => void,
) {
  return {
    async run(_s, _a, hooks) {
      onStart?.(hooks.onLog);
      hooks.signal.addEventListener('abort', () => {
        seen.abortedAt = clock.now();
      });
      await clock.sleep(ms, hooks.signal);
      if (hooks.signal.aborted) return { kind: 'error', message: String(hooks.signal.reason) };
      return { kind: 'success', xcom: '42' };
    },
  } satisfies TaskExecutor;
}

describe('log budget', () => {
  it('a task that prints a short line per heartbeat keeps its whole log while far under UPDRAFT_LOG_MAX_BYTES', async () => {
    // 4 chunks of 1,024 bytes: a try may log 4,096 bytes. The task prints 30 lines of 60 bytes
    // (1,800 bytes) over 150 s, one line between two heartbeats.
    const line = (i: number) => `${`line ${String(i).padStart(2, '0')} `.padEnd(59, '.')}\n`;
    const { deps, calls } = workerDeps({
      started: { log_chunk_max_bytes: 1024, log_max_chunks: 4 },
      executor: (clock) => ({
        async run(_s, _a, hooks) {
          for (let i = 0; i < 30; i += 1) {
            hooks.onLog(line(i));
            await clock.sleep(5_000, hooks.signal);
          }
          return { kind: 'success', xcom: '1' };
        },
      }),
    });
    const result = await runWorkload(deps, WORKLOAD);
    expect(result.outcome).toBe('success');
    const log = assembledLog(calls);
    const seqs = calls.flatMap((c) => (c.body.log as { seq?: number } | undefined)?.seq ?? []);
    // A heartbeat spends no seq on a few bytes: the open chunk grows under its seq until it is full.
    expect(log.includes('reached its limit')).toBe(false);
    expect(log.split('\n').filter(Boolean)).toHaveLength(30);
    expect(Math.max(...seqs)).toBeLessThanOrEqual(4);
  });

  it('shows the output of a slow task while it runs, within a bounded delay', async () => {
    const { deps, calls } = workerDeps({
      started: { log_chunk_max_bytes: 1024, log_max_chunks: 4 },
      executor: (clock) => ({
        async run(_s, _a, hooks) {
          hooks.onLog('first line\n');
          await clock.sleep(60_000, hooks.signal);
          return { kind: 'success', xcom: '1' };
        },
      }),
    });
    const startedAt = deps.clock.now();
    await runWorkload(deps, WORKLOAD);
    const shown = calls.find((c) => c.action === 'heartbeat' && c.body.log);
    expect((shown?.body.log as { text: string } | undefined)?.text).toBe('first line\n');
    // At most LOG_MAX_DELAY_INTERVALS (2) intervals of waiting plus the interval to the next beat.
    expect((shown?.at ?? Infinity) - startedAt).toBeLessThanOrEqual(3 * HEARTBEAT_INTERVAL_MS);
  });

  it('never sends a seq past log_max_chunks, and marks the log once over the budget', async () => {
    const { deps, calls } = workerDeps({
      started: { log_chunk_max_bytes: 1024, log_max_chunks: 4 },
      executor: (clock) => ({
        async run(_s, _a, hooks) {
          for (let i = 0; i < 200; i += 1) {
            hooks.onLog(`${'y'.repeat(99)}\n`);
            await clock.sleep(1_000, hooks.signal);
          }
          return { kind: 'success', xcom: '1' };
        },
      }),
    });
    const result = await runWorkload(deps, WORKLOAD);
    expect(result.outcome).toBe('success');
    const seqs = calls.flatMap((c) => (c.body.log as { seq?: number } | undefined)?.seq ?? []);
    expect(Math.max(...seqs)).toBe(4);
    const log = assembledLog(calls);
    expect(log).toContain('reached its limit');
    expect(Buffer.byteLength(log)).toBeLessThanOrEqual(4 * 1024);
    expect(Buffer.byteLength(log)).toBeGreaterThan(3 * 1024);
  });
});

describe('stop before the zombie threshold', () => {
  it('stops the task before the scheduler can call it a zombie, counted from when the API recorded the start', async () => {
    // The API writes running + heartbeatAt at once, then answers 25 s later (a slow DAG version
    // read after the transition, a cold start). From then on every heartbeat gets 503.
    let serverHeartbeatAt: number | undefined;
    const seen: { abortedAt?: number } = {};
    const { deps } = workerDeps({
      executor: (clock) => longTask(clock, 600_000, seen),
      script: async (call) => {
        if (call.action === 'run') {
          serverHeartbeatAt = call.at;
          await clockOf.clock!.sleep(25_000);
          return undefined;
        }
        if (call.action === 'heartbeat')
          return Response.json({ detail: 'down', status: 503 }, { status: 503 });
        return undefined;
      },
    });
    const clockOf: { clock?: FakeClock } = { clock: deps.clock as FakeClock };
    const result = await runWorkload(deps, WORKLOAD);
    expect(result.started).toBe(true);
    const zombieAt = (serverHeartbeatAt as number) + HEARTBEAT_TIMEOUT_MS;
    // The runner process gets CANCEL_GRACE_MS after the abort before it is killed.
    const deadAt = (seen.abortedAt as number) + CANCEL_GRACE_MS;
    // The bound counts from when the start was sent, not from its late answer.
    expect(deadAt - (serverHeartbeatAt as number)).toBeLessThan(HEARTBEAT_TIMEOUT_MS);
    expect(deadAt).toBeLessThan(zombieAt);
  });
});

describe('an outcome already reached', () => {
  it('is reported as it is, even when a heartbeat in flight at its end fails past the stop bound', async () => {
    // Every heartbeat is answered 503 after 3 s. The task succeeds at 31 s while the beat sent at
    // 30 s is in flight; that beat fails at 33 s, past half the heartbeat timeout.
    const holder: { clock?: FakeClock } = {};
    const seen: { abortedAt?: number } = {};
    const { deps, calls } = workerDeps({
      executor: (clock) => longTask(clock, 31_000, seen),
      script: async (call) => {
        if (call.action !== 'heartbeat') return undefined;
        await holder.clock?.sleep(3_000);
        return Response.json({ detail: 'down', status: 503 }, { status: 503 });
      },
    });
    holder.clock = deps.clock as FakeClock;
    const result = await runWorkload(deps, WORKLOAD);
    expect(seen.abortedAt).toBeUndefined();
    expect(result.outcome).toBe('success');
    expect(calls.filter((call) => call.action === 'state').map((call) => call.body.state)).toEqual([
      'success',
    ]);
  });
});

describe('a log store outage', () => {
  it('does not stop a healthy task: heartbeats without the log still get through', async () => {
    // The API records the heartbeat, then appending the chunk fails (disk full, S3 5xx): 500.
    // A heartbeat without a chunk is answered 200.
    const seen: { abortedAt?: number } = {};
    const { deps, lines } = workerDeps({
      executor: (clock) => longTask(clock, 120_000, seen, (log) => log('hello\n')),
      script: (call) => {
        if (call.action === 'heartbeat' && call.body.log)
          return Response.json({ detail: 'ENOSPC: no space left on device', status: 500 }, { status: 500 });
        return undefined;
      },
    });
    const result = await runWorkload(deps, WORKLOAD);
    // Each failed heartbeat with a chunk goes again at once without it, and that one succeeds.
    expect({
      outcome: result.outcome,
      stopReason: result.stopReason,
      aborted: seen.abortedAt !== undefined,
    }).toEqual({
      outcome: 'success',
      stopReason: undefined,
      aborted: false,
    });
    expect(lines.some((l) => l.message.includes('Stopping the task'))).toBe(false);
  });
});

describe('report window', () => {
  it('shipping the rest of the log does not spend the window the outcome needs', async () => {
    // The task prints three chunks' worth and ends at 4 s, before its first heartbeat. Heartbeats
    // carrying a chunk get 503 (the log side is failing); the report endpoint is healthy.
    let endedAt = 0;
    const { deps, calls } = workerDeps({
      started: { log_chunk_max_bytes: 1024, log_max_chunks: 20 },
      executor: (clock) => ({
        async run(_s, _a, hooks) {
          hooks.onLog('x'.repeat(3_000));
          await clock.sleep(4_000, hooks.signal);
          endedAt = clock.now();
          return { kind: 'success', xcom: '42' };
        },
      }),
      script: (call) =>
        call.action === 'heartbeat' && call.body.log
          ? Response.json({ detail: 'unavailable', status: 503 }, { status: 503 })
          : undefined,
    });
    const result = await runWorkload(deps, WORKLOAD);
    const firstReport = calls.find((c) => c.action === 'state');
    expect(result.reported).toBe(true);
    // The rest of the log gets a short slice (one call timeout); the report goes right after.
    expect((firstReport?.at ?? Infinity) - endedAt).toBeLessThan(HEARTBEAT_TIMEOUT_MS / 2);
  });
});

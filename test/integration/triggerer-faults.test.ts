import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type * as z from 'zod';
import { REFRESHED_TOKEN_HEADER } from '#contracts/execution-api.ts';
import {
  cleanupBody,
  heldTriggersBody,
  jobHeartbeatBody,
  loadTriggersBody,
  registerJobBody,
  triggerEventBody,
  triggerFailureBody,
  triggerIdsBody,
  triggerLogsBody,
} from '#contracts/triggers.ts';
import type { Logger } from '#engine/logger.ts';
import { closeServer } from '#http/server.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import { deserialize, serialize } from '#sdk/serde.ts';
import { BaseTrigger, type TriggerEvent, type TriggerRunContext, triggerEvent } from '#sdk/triggers/base.ts';
import { registerTrigger } from '#sdk/triggers/registry.ts';
import { TriggererClient } from '#triggerer/client.ts';
import { Triggerer } from '#triggerer/triggerer.ts';

/**
 * A real Triggerer against a fake Execution API over real HTTP (127.0.0.1): in-memory jobs and
 * triggers with their holder, the orphan rule of the real API (a holder silent longer than the
 * heartbeat timeout loses its triggers), first event wins, and faults on demand.
 */

const CREDENTIAL = 'triggerer-credential';
const HEARTBEAT_INTERVAL_MS = 100;
const HEARTBEAT_TIMEOUT_MS = 1_000;

/** Test triggers: fire after `ms`; cleanups recorded by trigger id. */
const cleanups = new Map<string, number>();
class FireAfterTrigger extends BaseTrigger<{ id: string; ms: number }> {
  static override readonly triggerName = 'test.faults.FireAfter';
  override async *run(ctx: TriggerRunContext): AsyncGenerator<TriggerEvent, void, void> {
    ctx.log.info(`sleeping ${this.kwargs.ms} ms`);
    await ctx.sleepUntil(ctx.now() + this.kwargs.ms);
    yield triggerEvent({ id: this.kwargs.id });
  }
  override async cleanup(): Promise<void> {
    cleanups.set(this.kwargs.id, (cleanups.get(this.kwargs.id) ?? 0) + 1);
  }
}
registerTrigger(FireAfterTrigger);

/** Seeded, so a failing run can be read again. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface FakeJob {
  id: string;
  tokens: Set<string>;
  state: 'running' | 'completed' | 'dead';
  lastHeartbeatAt: number;
}

interface FakeTrigger {
  id: string;
  name: string;
  kwargs: string;
  holder: string | undefined;
  /** Set by the first event or failure: later ones are duplicates. */
  outcome: { kind: 'event' | 'failure'; body: unknown; by: string } | undefined;
  applied: number;
  duplicates: number;
  reportRequests: number;
}

interface Faults {
  /** Share of trigger-route requests answered 503. */
  failRate: number;
  /** Share of trigger-route requests whose connection is destroyed before anything is applied. */
  destroyRate: number;
  /** Share of events and failures applied, and then their connection destroyed (the answer is lost). */
  destroyAfterApplyRate: number;
  /** Triggers whose event is refused with a 400. */
  refuseEvents: Set<string>;
  /** Triggers whose failure is refused with a 400. */
  refuseFailures: Set<string>;
  /** The status of those refusals of events (400 by default). */
  eventRefusalStatus: number;
  /** Answer the next heartbeat of any job with a 409 (the job is then dead). */
  conflictNextHeartbeat: boolean;
  /** Jobs cut off (a crashed process): every request with their token is dropped. */
  partitioned: Set<string>;
  /** Milliseconds an event or failure call waits before it is handled (a slow API). */
  reportDelayMs: number;
  /** Load calls to claim for, then drop the connection before answering (a lost answer). */
  loseLoadAnswers: number;
}

class FakeExecutionApi {
  readonly jobs = new Map<string, FakeJob>();
  readonly triggers = new Map<string, FakeTrigger>();
  readonly logs = new Map<string, string>();
  readonly faults: Faults = {
    failRate: 0,
    destroyRate: 0,
    destroyAfterApplyRate: 0,
    refuseEvents: new Set(),
    refuseFailures: new Set(),
    eventRefusalStatus: 400,
    conflictNextHeartbeat: false,
    partitioned: new Set(),
    reportDelayMs: 0,
    loseLoadAnswers: 0,
  };
  /** Calls to the held-triggers listing. */
  heldListings = 0;
  /** Load calls answered, with how many triggers each claimed. */
  readonly loads: number[] = [];
  /** Callback claims answered (always with none). */
  callbackClaims = 0;
  readonly random: () => number;
  refreshedTokensUsed = 0;
  readonly #server: Server;
  readonly #refreshed = new Set<string>();

  constructor(seed: number) {
    this.random = mulberry32(seed);
    this.#server = createServer((request, response) => {
      void this.#handle(request, response).catch((error: unknown) => {
        if (!response.headersSent) this.#answer(response, 500, { detail: String(error) });
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    await closeServer(this.#server);
  }

  addTriggers(count: number, ms: (index: number) => number): string[] {
    return Array.from({ length: count }, (_, index) =>
      this.addTrigger(FireAfterTrigger.triggerName, (id) => ({ id, ms: ms(index) })),
    );
  }

  addTrigger(name: string, kwargs: (id: string) => unknown): string {
    const id = `trigger-${this.triggers.size + 1}`;
    this.triggers.set(id, {
      id,
      name,
      kwargs: serialize(kwargs(id)),
      holder: undefined,
      outcome: undefined,
      applied: 0,
      duplicates: 0,
      reportRequests: 0,
    });
    return id;
  }

  resolved(): FakeTrigger[] {
    return [...this.triggers.values()].filter((trigger) => trigger.outcome !== undefined);
  }

  /** The holder is a live job: it heartbeats within the timeout. */
  #alive(jobId: string | undefined): boolean {
    const job = jobId === undefined ? undefined : this.jobs.get(jobId);
    return job?.state === 'running' && Date.now() - job.lastHeartbeatAt <= HEARTBEAT_TIMEOUT_MS;
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const body: unknown = text ? JSON.parse(text) : undefined;
    const path = new URL(request.url ?? '/', 'http://fake').pathname;
    const token = /^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1];

    if (request.method === 'POST' && path === '/execution/jobs') {
      if (token !== CREDENTIAL) return this.#answer(response, 401, { detail: 'bad credential' });
      const parsed = registerJobBody.safeParse(body);
      if (!parsed.success) return this.#answer(response, 400, { detail: parsed.error.message });
      const job: FakeJob = {
        id: `job-${this.jobs.size + 1}`,
        tokens: new Set([randomUUID()]),
        state: 'running',
        lastHeartbeatAt: Date.now(),
      };
      this.jobs.set(job.id, job);
      return this.#answer(response, 201, {
        job_id: job.id,
        token: [...job.tokens][0],
        heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        heartbeat_timeout_ms: HEARTBEAT_TIMEOUT_MS,
      });
    }

    const job = [...this.jobs.values()].find(
      (candidate) => token !== undefined && candidate.tokens.has(token),
    );
    if (!job) return this.#answer(response, 401, { detail: 'unknown token' });
    if (this.faults.partitioned.has(job.id)) {
      request.socket.destroy();
      return;
    }
    if (token !== undefined && this.#refreshed.has(token)) this.refreshedTokensUsed += 1;

    const jobRoute = /^\/execution\/jobs\/([^/]+)\/(heartbeat|complete)$/.exec(path);
    if (jobRoute) {
      if (jobRoute[1] !== job.id) return this.#answer(response, 403, { detail: 'not your job' });
      if (jobRoute[2] === 'complete') {
        job.state = 'completed';
        for (const trigger of this.triggers.values())
          if (trigger.holder === job.id) trigger.holder = undefined;
        return this.#answer(response, 200, { ok: true });
      }
      const parsed = jobHeartbeatBody.safeParse(body);
      if (!parsed.success) return this.#answer(response, 400, { detail: parsed.error.message });
      if (this.faults.conflictNextHeartbeat) {
        this.faults.conflictNextHeartbeat = false;
        job.state = 'dead';
      }
      if (!this.#alive(job.id)) {
        job.state = job.state === 'completed' ? 'completed' : 'dead';
        return this.#answer(response, 409, { detail: `job ${job.id} is not running` });
      }
      job.lastHeartbeatAt = Date.now();
      // A fresh token now and then: the triggerer must use it from then on.
      const fresh = randomUUID();
      job.tokens.add(fresh);
      this.#refreshed.add(fresh);
      return this.#answer(response, 200, { ok: true }, { [REFRESHED_TOKEN_HEADER]: fresh });
    }

    if (job.state !== 'running')
      return this.#answer(response, 409, { detail: `job ${job.id} is not running` });
    if (path === '/execution/callbacks/claim') {
      this.callbackClaims += 1;
      return this.#answer(response, 200, { workloads: [] });
    }
    // Trigger routes: the faults apply here.
    const roll = this.random();
    if (roll < this.faults.destroyRate) {
      request.socket.destroy();
      return;
    }
    if (roll < this.faults.destroyRate + this.faults.failRate) {
      return this.#answer(response, 503, { detail: 'the API is overloaded' });
    }
    const destroyAfter = () => this.random() < this.faults.destroyAfterApplyRate;

    if (path === '/execution/triggers/load') {
      const { limit } = parse(loadTriggersBody, body);
      const ids: string[] = [];
      for (const trigger of this.triggers.values()) {
        if (ids.length >= limit) break;
        if (trigger.outcome || this.#alive(trigger.holder)) continue;
        trigger.holder = job.id;
        ids.push(trigger.id);
      }
      this.loads.push(ids.length);
      if (this.faults.loseLoadAnswers > 0) {
        this.faults.loseLoadAnswers -= 1;
        request.socket.destroy();
        return;
      }
      return this.#answer(response, 200, { trigger_ids: ids });
    }
    if (path === '/execution/triggers/held') {
      const { cursor } = parse(heldTriggersBody, body);
      this.heldListings += 1;
      const held = [...this.triggers.values()].filter(
        (trigger) => trigger.holder === job.id && !trigger.outcome,
      );
      const from = cursor === undefined ? 0 : Number(cursor);
      const page = held.slice(from, from + 1_000).map((trigger) => trigger.id);
      const next = from + 1_000 < held.length ? { next_cursor: String(from + 1_000) } : {};
      return this.#answer(response, 200, { trigger_ids: page, ...next });
    }
    if (path === '/execution/triggers/workloads') {
      const { trigger_ids } = parse(triggerIdsBody, body);
      const workloads = [];
      const stop = [];
      for (const id of trigger_ids) {
        const trigger = this.triggers.get(id);
        if (!trigger || trigger.outcome || trigger.holder !== job.id) {
          stop.push(id);
          continue;
        }
        workloads.push({
          trigger_id: id,
          name: trigger.name,
          kwargs: trigger.kwargs,
          queue: 'default',
          ti: { dag_id: 'dag', run_id: 'run', task_id: id, map_index: -1, try_number: 1 },
          deferral_seq: 1,
          timeout_at: null,
        });
      }
      return this.#answer(response, 200, { workloads, stop });
    }
    if (path === '/execution/triggers/cleanup') {
      const { trigger_ids, complete } = parse(cleanupBody, body);
      const stop = trigger_ids.filter((id) => {
        const trigger = this.triggers.get(id);
        return !trigger || trigger.outcome !== undefined || trigger.holder !== job.id;
      });
      if (!complete) return this.#answer(response, 200, { stop });
      const named = new Set(trigger_ids);
      const adopt = [...this.triggers.values()]
        .filter((trigger) => trigger.holder === job.id && !trigger.outcome && !named.has(trigger.id))
        .map((trigger) => trigger.id);
      return this.#answer(response, 200, { stop, adopt });
    }
    if (path === '/execution/triggers/logs') {
      for (const chunk of parse(triggerLogsBody, body).chunks) {
        this.logs.set(`${chunk.trigger_id}#${chunk.seq}`, chunk.text);
      }
      return this.#answer(response, 200, { ok: true });
    }
    const report = /^\/execution\/triggers\/([^/]+)\/(event|failure)$/.exec(path);
    if (report) {
      if (this.faults.reportDelayMs > 0)
        await new Promise((resolve) => setTimeout(resolve, this.faults.reportDelayMs));
      const trigger = this.triggers.get(decodeURIComponent(report[1] ?? ''));
      if (!trigger) return this.#answer(response, 404, { detail: 'no such trigger' });
      trigger.reportRequests += 1;
      const kind = report[2] as 'event' | 'failure';
      const parsed = (kind === 'event' ? triggerEventBody : triggerFailureBody).safeParse(body);
      if (!parsed.success) return this.#answer(response, 400, { detail: parsed.error.message });
      if (kind === 'event' && this.faults.refuseEvents.has(trigger.id)) {
        return this.#answer(response, this.faults.eventRefusalStatus, {
          detail: 'the event payload is refused',
        });
      }
      if (kind === 'failure' && this.faults.refuseFailures.has(trigger.id)) {
        return this.#answer(response, 400, { detail: 'the failure is refused' });
      }
      if (trigger.outcome) {
        trigger.duplicates += 1;
        return this.#answer(response, 200, { outcome: 'duplicate' });
      }
      if (trigger.holder !== job.id) {
        return this.#answer(response, 409, { detail: 'another triggerer holds this trigger' });
      }
      trigger.outcome = { kind, body: parsed.data, by: job.id };
      trigger.applied += 1;
      if (destroyAfter()) {
        request.socket.destroy();
        return;
      }
      return this.#answer(response, 200, { outcome: 'applied' });
    }
    return this.#answer(response, 404, { detail: `no route ${request.method} ${path}` });
  }

  #answer(
    response: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void {
    response.writeHead(status, { 'content-type': 'application/json', ...headers });
    response.end(JSON.stringify(body));
  }
}

function parse<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  return schema.parse(body);
}

interface LogLine {
  level: string;
  message: string;
  fields?: Record<string, unknown>;
}

function recordingLogger(lines: LogLine[]): Logger {
  const at = (level: string) => (message: string, fields?: Record<string, unknown>) =>
    lines.push({ level, message, ...(fields ? { fields } : {}) });
  const logger: Logger = {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: () => logger,
  };
  return logger;
}

async function until(
  condition: () => boolean,
  timeoutMs = 15_000,
  what = 'condition',
  state: () => unknown = () => undefined,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline)
      throw new Error(`${what}: not met within ${timeoutMs} ms; state: ${JSON.stringify(state())}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const started: { api: FakeExecutionApi; triggerers: Triggerer[] }[] = [];

async function setUp(seed: number) {
  const api = new FakeExecutionApi(seed);
  const url = await api.listen();
  const context = { api, triggerers: [] as Triggerer[] };
  started.push(context);
  const startTriggerer = (
    options: {
      capacity?: number;
      loadIntervalMs?: number;
      reportsInFlight?: number;
      callbacks?: boolean;
      logFlushIntervalMs?: number;
    } = {},
  ) => {
    const lines: LogLine[] = [];
    const metrics = new MetricsRegistry();
    const triggerer = new Triggerer({
      client: new TriggererClient(url, CREDENTIAL),
      settings: {
        triggererCapacity: options.capacity ?? 100,
        triggerQueues: ['default'],
        triggererLoadIntervalMs: options.loadIntervalMs ?? 20,
        triggerCleanupIntervalMs: 100,
        ...(options.reportsInFlight === undefined
          ? {}
          : { triggererReportsInFlight: options.reportsInFlight }),
        triggerBlockedThresholdMs: 1_000,
        allowedDeserializationClasses: ['updraft.*'],
      },
      log: recordingLogger(lines),
      metrics,
      random: mulberry32(seed + context.triggerers.length + 1),
      reportRetry: { baseDelayMs: 10, maxDelayMs: 100 },
      registerRetry: { baseDelayMs: 10, maxDelayMs: 100 },
      callTimeoutMs: 2_000,
      stopFlushMs: 1_000,
      logFlushIntervalMs: options.logFlushIntervalMs ?? 50,
      // Claims only: the fake API claims no callback, so nothing is started or reported.
      ...(options.callbacks ? { callbacks: { execution: {} as never, executor: {} as never } } : {}),
    });
    context.triggerers.push(triggerer);
    const running = triggerer.run();
    return { triggerer, lines, metrics, running };
  };
  return { api, startTriggerer, url };
}

afterEach(async () => {
  for (const { api, triggerers } of started.splice(0)) {
    await Promise.all(triggerers.map((triggerer) => triggerer.stop({ graceful: false })));
    await api.close();
  }
  cleanups.clear();
});

/** What a failed wait prints: the unresolved triggers, the triggerers, their warnings. */
function stateOf(api: FakeExecutionApi, triggerers: Triggerer[], lines: LogLine[]) {
  return {
    jobs: [...api.jobs.values()].map(({ id, state, lastHeartbeatAt }) => ({
      id,
      state,
      silentMs: Date.now() - lastHeartbeatAt,
    })),
    unresolved: [...api.triggers.values()]
      .filter((trigger) => !trigger.outcome)
      .map(({ id, holder, reportRequests }) => ({ id, holder, reportRequests })),
    triggerers: triggerers.map((triggerer) => ({
      jobId: triggerer.jobId,
      running: triggerer.running,
      outbox: triggerer.outboxSize,
    })),
    lines: lines.filter((line) => line.level !== 'info' && line.level !== 'debug').slice(-10),
  };
}

/** Every trigger resolved by exactly one applied event, carrying its own id. */
function expectEachAppliedOnce(api: FakeExecutionApi, ids: string[]): void {
  for (const id of ids) {
    const trigger = api.triggers.get(id);
    expect(trigger?.applied, id).toBe(1);
    expect(trigger?.outcome?.kind, id).toBe('event');
    const body = trigger?.outcome?.body as { type: string; payload: string };
    expect(body.type).toBe('resume');
    expect(deserialize(body.payload, { allowed: [] })).toEqual({ id });
  }
}

describe('Triggerer against a faulty Execution API', () => {
  it('applies every event exactly once despite 503s and dropped connections', async () => {
    const { api, startTriggerer } = await setUp(7);
    api.faults.failRate = 0.3;
    api.faults.destroyRate = 0.05;
    api.faults.destroyAfterApplyRate = 0.2;
    const ids = api.addTriggers(50, (index) => 10 + ((index * 37) % 191));
    const { triggerer, running, lines } = startTriggerer();

    await until(
      () => api.resolved().length === 50,
      15_000,
      'all 50 events applied',
      () => stateOf(api, [triggerer], lines),
    );
    expectEachAppliedOnce(api, ids);
    // Each trigger's log reached the API: shipped on the logs route, or on its event.
    for (const id of ids) {
      const shipped = [...api.logs].filter(([key]) => key.startsWith(`${id}#`)).map(([, text]) => text);
      const body = api.triggers.get(id)?.outcome?.body as { log?: { text: string } } | undefined;
      const onEvent = body?.log?.text ?? '';
      expect([...shipped, onEvent].join(''), id).toMatch(/\{INFO\} sleeping \d+ ms/);
    }
    // Answers lost after the event was applied were sent again and answered as duplicates.
    expect([...api.triggers.values()].some((trigger) => trigger.duplicates > 0)).toBe(true);
    expect(triggerer.reportsRefused).toBe(0);
    expect(api.refreshedTokensUsed).toBeGreaterThan(0);

    api.faults.failRate = 0;
    api.faults.destroyRate = 0;
    await triggerer.stop();
    await running;
    // Its last job (a slow machine may have lost one to a late heartbeat).
    expect(api.jobs.get(`job-${api.jobs.size}`)?.state).toBe('completed');
  });

  it('logs a refused event at error level, counts it, fails the task with the reason, and does not run the trigger again', async () => {
    const { api, startTriggerer } = await setUp(11);
    const ids = api.addTriggers(5, (index) => 10 + index * 10);
    const refused = ids[2] as string;
    api.faults.refuseEvents.add(refused);
    // Lines are shipped with the outcome, not before (no periodic flush within the test).
    const { triggerer, lines, metrics } = startTriggerer({ logFlushIntervalMs: 60_000 });

    await until(() => api.resolved().length === 5);
    // Several cleanups (every 100 ms), none of which hands the trigger back to run again.
    await new Promise((resolve) => setTimeout(resolve, 400));

    // The event, then the failure it was turned into.
    expect(api.triggers.get(refused)?.reportRequests).toBe(2);
    expect(api.triggers.get(refused)?.outcome).toMatchObject({
      kind: 'failure',
      body: {
        error: 'its event was refused by the Execution API: 400 the event payload is refused',
        // The event's log goes with the failure.
        log: { seq: 1, text: expect.stringMatching(/\{INFO\} sleeping 30 ms/) },
      },
    });
    expect(triggerer.reportsRefused).toBe(1);
    expect((await metrics.snapshot()).counters['triggerer.reports_refused']).toBe(1);
    const error = lines.find((line) => line.level === 'error');
    expect(error?.message).toContain(`the event of trigger ${refused}`);
    expect(error?.message).toContain('400 the event payload is refused');
    expect(error?.fields).toMatchObject({ status: 400, detail: 'the event payload is refused' });
    expect(triggerer.outboxSize.reports).toBe(0);
  });

  it('ships the log of an event refused as too large on the logs route, and fails the task without it', async () => {
    const { api, startTriggerer } = await setUp(37);
    const [refused] = api.addTriggers(1, () => 10) as [string];
    api.faults.refuseEvents.add(refused);
    api.faults.eventRefusalStatus = 413;
    startTriggerer({ logFlushIntervalMs: 60_000 });
    await until(() => api.triggers.get(refused)?.outcome !== undefined && api.logs.has(`${refused}#1`));
    const failure = api.triggers.get(refused)?.outcome;
    expect(failure?.kind).toBe('failure');
    expect(failure?.body).toEqual({
      error: 'its event was refused by the Execution API: 413 the event payload is refused',
    });
    expect(api.logs.get(`${refused}#1`)).toMatch(/\{INFO\} sleeping 10 ms/);
  });

  it('drops, without failing the task, an event refused for who sent it rather than what it says', async () => {
    const { api, startTriggerer } = await setUp(41);
    const [refused] = api.addTriggers(1, () => 10) as [string];
    api.faults.refuseEvents.add(refused);
    api.faults.eventRefusalStatus = 403;
    const { triggerer, lines } = startTriggerer();
    await until(() => (api.triggers.get(refused)?.reportRequests ?? 0) >= 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(api.triggers.get(refused)?.outcome).toBeUndefined();
    expect(lines.find((line) => line.level === 'error')?.message).toContain(
      '403 the event payload is refused. It is dropped',
    );
    // Not abandoned: a later cleanup may hand it back to run again.
    await triggerer.stop({ graceful: false });
  });

  it('does not run again a trigger whose failure the API refused too', async () => {
    const { api, startTriggerer } = await setUp(31);
    const [refused] = api.addTriggers(1, () => 10) as [string];
    api.faults.refuseEvents.add(refused);
    api.faults.refuseFailures.add(refused);
    const { triggerer, lines, metrics } = startTriggerer();
    await until(() => api.triggers.get(refused)?.reportRequests === 2);
    // Several cleanups (every 100 ms): the job still holds it, and names it, so none hands it back.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(api.triggers.get(refused)?.reportRequests).toBe(2);
    expect(triggerer.running).toBe(0);
    expect(triggerer.reportsRefused).toBe(2);
    expect((await metrics.snapshot()).gauges['triggerer.triggers_abandoned']).toBe(1);
    expect(lines.filter((line) => line.level === 'error').map((line) => line.message)).toEqual([
      expect.stringContaining('The task is failed with that reason instead'),
      expect.stringContaining('400 the failure is refused. It is dropped'),
    ]);
  });

  it('claims again at once after a full load, not a load interval later', async () => {
    const { api, startTriggerer } = await setUp(17);
    api.addTriggers(2_500, () => 60_000);
    const { triggerer } = startTriggerer({ capacity: 3_000, loadIntervalMs: 60_000, callbacks: true });
    await until(() => triggerer.running === 2_500, 10_000);
    // Two full loads of 1,000 each followed at once; the third came back short, so the next waits.
    expect(api.loads).toEqual([1_000, 1_000, 500]);
    // Callbacks are still claimed once a load interval, not after each of those loads.
    expect(api.callbackClaims).toBe(1);
  });

  it('waits the load interval after a full load while reports wait for the API', async () => {
    const { api, startTriggerer } = await setUp(19);
    api.faults.reportDelayMs = 200;
    api.addTriggers(2_000, () => 0);
    api.addTriggers(1_000, () => 60_000);
    const { triggerer } = startTriggerer({ capacity: 5_000, loadIntervalMs: 60_000, reportsInFlight: 1 });
    await until(
      () => triggerer.outboxSize.reports > 1_000,
      15_000,
      'reports waiting',
      () => ({ loads: api.loads, reports: triggerer.outboxSize }),
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    // Full loads, but once the first one's events wait in the outbox no load follows at once (the
    // second load comes before they fire, so it may still come at once): the last 1,000 triggers
    // wait for the load interval.
    expect(api.loads.length).toBeLessThanOrEqual(2);
    expect(api.loads.every((claimed) => claimed === 1_000)).toBe(true);
    expect([...api.triggers.values()].filter((trigger) => trigger.holder === undefined)).toHaveLength(1_000);
  });

  it('counts fired triggers whose report waits for a slow API against its capacity', async () => {
    const { api, startTriggerer } = await setUp(23);
    api.faults.reportDelayMs = 100;
    const ids = api.addTriggers(200, () => 0);
    const { triggerer, lines } = startTriggerer({ capacity: 20, reportsInFlight: 2 });
    let most = 0;
    const sample = setInterval(() => {
      most = Math.max(most, triggerer.running + triggerer.outboxSize.reports);
    }, 5);
    try {
      await until(
        () => api.resolved().length >= 60,
        15_000,
        '60 events applied',
        () => stateOf(api, [triggerer], lines),
      );
    } finally {
      clearInterval(sample);
    }
    // Without the bound each load interval would claim 20 more while 2 reports go out at a time.
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(20);
    expect(api.loads.reduce((total, claimed) => total + claimed, 0)).toBeLessThanOrEqual(
      api.resolved().length + 20,
    );
    expectEachAppliedOnce(
      api,
      ids.filter((id) => api.triggers.get(id)?.outcome),
    );
  });

  it('shows no capacity left while the reports of fired triggers wait for the API, and all of it once they are out', async () => {
    const { api, startTriggerer } = await setUp(31);
    api.faults.reportDelayMs = 1_500;
    const ids = api.addTriggers(5, () => 0);
    const { triggerer, metrics } = startTriggerer({ capacity: 5 });
    let shown: number | undefined;
    const sample = setInterval(() => {
      void metrics.snapshot().then((snapshot) => {
        shown = snapshot.gauges['triggerer.capacity_left'];
      });
    }, 10);
    try {
      await until(
        () => triggerer.running === 0 && triggerer.outboxSize.reports === 5 && shown === 0,
        5_000,
        'five fired triggers waiting for their reports, no capacity shown',
        () => ({ running: triggerer.running, reports: triggerer.outboxSize.reports, shown }),
      );
      await until(
        () => api.resolved().length === 5 && shown === 5,
        10_000,
        'capacity back',
        () => shown,
      );
    } finally {
      clearInterval(sample);
    }
    expectEachAppliedOnce(api, ids);
  });

  it('runs the triggers a load whose answer was lost claimed, also holding more than a cleanup names', async () => {
    const { api, startTriggerer } = await setUp(29);
    // 1,500 held for long, then a lost load answer claims the 500 that fire soon.
    const waiting = api.addTriggers(1_500, () => 60_000);
    const { triggerer, lines } = startTriggerer({ capacity: 3_000, loadIntervalMs: 50 });
    await until(() => triggerer.running === 1_500, 10_000, 'the first 1,500 running');
    api.faults.loseLoadAnswers = 1;
    const firing = api.addTriggers(500, () => 10);
    await until(
      () => firing.every((id) => api.triggers.get(id)?.outcome),
      10_000,
      'the 500 claimed by the lost load fired',
      () => ({ ...stateOf(api, [triggerer], lines), loads: api.loads, listings: api.heldListings }),
    );
    expectEachAppliedOnce(api, firing);
    expect(api.faults.loseLoadAnswers).toBe(0);
    // Holding 1,500, no cleanup call named all it runs: the held listing found the 500.
    expect(api.heldListings).toBeGreaterThan(0);
    expect(triggerer.running).toBe(waiting.length);
  });

  it('cancels its triggers and registers again when a heartbeat is answered 409', async () => {
    const { api, startTriggerer } = await setUp(13);
    const ids = api.addTriggers(10, () => 60_000);
    const { triggerer, metrics } = startTriggerer();
    await until(() => triggerer.running === 10, 5_000, 'all 10 running');
    const lost = triggerer.jobId as string;
    expect([...api.triggers.values()].every((trigger) => trigger.holder === lost)).toBe(true);

    api.faults.conflictNextHeartbeat = true;

    await until(() => ![undefined, lost].includes(triggerer.jobId), 5_000, 'a second job');
    const next = triggerer.jobId as string;
    await until(() => triggerer.running === 10, 5_000, 'all 10 running again');
    for (const id of ids) expect(cleanups.get(id), id).toBe(1);
    expect(api.jobs.get(lost)?.state).toBe('dead');
    expect([...api.triggers.values()].every((trigger) => trigger.holder === next)).toBe(true);
    expect((await metrics.snapshot()).counters['triggerer.jobs_lost']).toBe(1);

    await triggerer.stop();
    for (const id of ids) expect(cleanups.get(id), id).toBe(2);
    expect(api.jobs.get(next)?.state).toBe('completed');
    expect([...api.triggers.values()].every((trigger) => trigger.holder === undefined)).toBe(true);
  });

  it('hands the triggers of a triggerer that stopped abruptly to another after the heartbeat timeout', async () => {
    const { api, startTriggerer } = await setUp(17);
    const ids = api.addTriggers(50, (index) => 100 + ((index * 37) % 101));
    const first = startTriggerer();
    await until(() => first.triggerer.running === 50, 5_000, 'the first triggerer runs all 50');
    const second = startTriggerer();
    await until(() => second.triggerer.jobId !== undefined, 5_000, 'the second triggerer registered');

    // A crash: nothing more leaves the first one, and it never completes its job.
    const crashed = first.triggerer.jobId as string;
    api.faults.partitioned.add(crashed);
    await first.triggerer.stop({ graceful: false });
    const crashedAt = Date.now();

    await until(
      () => api.resolved().length === 50,
      15_000,
      'all 50 events applied',
      () => stateOf(api, [first.triggerer, second.triggerer], [...first.lines, ...second.lines]),
    );
    expectEachAppliedOnce(api, ids);
    const takenOver = api.resolved().filter((trigger) => trigger.outcome?.by !== crashed);
    expect(takenOver.length).toBeGreaterThan(0);
    expect(Date.now() - crashedAt).toBeGreaterThanOrEqual(HEARTBEAT_TIMEOUT_MS - HEARTBEAT_INTERVAL_MS);
    expect(api.jobs.get(crashed)?.state).not.toBe('completed');
    const survivor = second.triggerer.jobId as string;
    await second.triggerer.stop();
    expect(api.jobs.get(survivor)?.state).toBe('completed');
  });
});

describe('the triggerer process (src/triggerer/main.ts)', () => {
  it('runs the built-in triggers it is handed, and completes its job on SIGTERM', async () => {
    const { api, url } = await setUp(19);
    const moment = new Date(Date.now() + 300).toISOString();
    const ids = [1, 2, 3].map(() => api.addTrigger('updraft.DateTimeTrigger', () => ({ moment })));
    const entry = fileURLToPath(new URL('../../src/triggerer/main.ts', import.meta.url));
    const { UPDRAFT_CONFIG: _config, ...inherited } = process.env;
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', entry], {
      cwd: tmpdir(),
      env: {
        ...inherited,
        UPDRAFT_API_URL: url,
        UPDRAFT_TRIGGERER_TOKEN: CREDENTIAL,
        UPDRAFT_TRIGGERER_LOAD_INTERVAL_MS: '50',
        UPDRAFT_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await until(
        () => api.resolved().length === 3,
        15_000,
        'the three events',
        () => output,
      );
      for (const id of ids) {
        const body = api.triggers.get(id)?.outcome?.body as { type: string; payload: string };
        expect(body.type).toBe('resume');
        expect(deserialize(body.payload, { allowed: ['updraft.*'] })).toEqual(new Date(moment));
      }
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    expect(api.jobs.get('job-1')?.state).toBe('completed');
    expect(output).toContain('"signal":"SIGTERM"');
    expect(output).not.toContain(CREDENTIAL);
  });
});

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BATCH_ANSWER_MAX_BYTES, type BatchResult } from '#contracts/execution-api.ts';
import type { SchedulingRequest } from '#contracts/messages.ts';
import type { TaskInstanceKey } from '#core/models.ts';
import { dag } from '#sdk/index.ts';
import { ExecutionBatcher } from '#worker/execution-batcher.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import {
  type ApiHarness,
  type ErrorBody,
  type StartedTaskBody,
  startApiHarness,
  tiKey,
  tiPath,
  WORKER,
} from './api-harness.ts';

const wide = dag({ id: 'wide' }, (d) => {
  for (const id of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k']) d.task(id, async () => 1);
});

let api: ApiHarness;
let runs = 0;

beforeAll(async () => {
  api = await startApiHarness({ executionBatchMaxCalls: 10 });
  await api.registerDags([wide]);
});
afterAll(async () => {
  await api?.close();
});
beforeEach(async () => {
  await schedulingRequests(); // what earlier tests left
});

async function newRun(): Promise<string> {
  const runId = `run_${++runs}`;
  expect((await api.request('POST', '/api/v2/dags/wide/dagRuns', { dag_run_id: runId })).status).toBe(201);
  return runId;
}

type Batch = { results: BatchResult[] } & Partial<ErrorBody>;
const batch = (calls: unknown[]) => api.request<Batch>('POST', '/execution/batch', { calls }, null);
const startCall = (key: TaskInstanceKey, token: string) => ({
  method: 'PATCH',
  path: tiPath(key, 'run'),
  token,
  body: WORKER,
});
const reportCall = (key: TaskInstanceKey, token: string, reportId: string = randomUUID()) => ({
  method: 'PATCH',
  path: tiPath(key, 'state'),
  token,
  body: { state: 'success', report_id: reportId, xcom: '1' },
});

/** The scheduling requests sent so far (taken off the queue). */
async function schedulingRequests(): Promise<SchedulingRequest[]> {
  const taken: SchedulingRequest[] = [];
  for (;;) {
    const messages = await api.queues.scheduler.receive({ maxMessages: 10, waitTimeMs: 0 });
    if (messages.length === 0) return taken;
    taken.push(...messages.map((m) => JSON.parse(m.body) as SchedulingRequest));
    await api.queues.scheduler.delete(messages.map((m) => m.receiptHandle));
  }
}

/** `count` TIs of a new run, queued; their keys and workload tokens. */
async function queued(count: number): Promise<{ key: TaskInstanceKey; token: string }[]> {
  const runId = await newRun();
  const ids = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k'].slice(0, count);
  return Promise.all(
    ids.map(async (id) => {
      const key = tiKey('wide', runId, id);
      return { key, token: await api.queueTaskInstance(key) };
    }),
  );
}

describe('POST /execution/batch', () => {
  it('serves each call as its own route would, in order, with its refreshed token', async () => {
    const tis = await queued(3);
    const response = await batch(tis.map(({ key, token }) => startCall(key, token)));
    expect(response.status).toBe(200);
    expect(response.body.results).toHaveLength(3);
    for (const [index, result] of response.body.results.entries()) {
      expect(result.status).toBe(200);
      expect(result.body).toMatchObject({ task_id: tis[index]?.key.taskId, try_number: 1 });
      expect(result.refreshed_token).toEqual(expect.any(String));
    }
    for (const { key } of tis)
      expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'running' });
  });

  it('answers each call for itself: a refused call changes nothing and stops no other', async () => {
    const [first, second, third] = await queued(3);
    if (!first || !second || !third) throw new Error('three TIs');
    const response = await batch([
      startCall(first.key, first.token),
      startCall(second.key, first.token), // another TI's token
      startCall(third.key, 'not-a-token'),
      { method: 'PATCH', path: '/execution/batch', token: first.token, body: { calls: [] } },
      { method: 'PATCH', path: tiPath(third.key, 'run'), token: third.token, body: { hostname: 1 } },
    ]);
    expect(response.status).toBe(200);
    expect(response.body.results.map((result) => result.status)).toEqual([200, 403, 401, 400, 422]);
    expect(response.body.results[3]?.body).toMatchObject({
      detail: expect.stringContaining('cannot be sent in a batch'),
    });
    expect(JSON.stringify(response.body.results[2])).not.toContain('not-a-token');
    expect(await api.store.getTaskInstance(second.key)).toMatchObject({ state: 'queued' });
    expect(await api.store.getTaskInstance(third.key)).toMatchObject({ state: 'queued' });
    expect(await api.store.getTaskInstance(first.key)).toMatchObject({ state: 'running' });
  });

  it('sends one scheduling request for a run whose reports came in one batch, before it answers', async () => {
    const tis = await queued(4);
    const started = await batch(tis.map(({ key, token }) => startCall(key, token)));
    const tokens = started.body.results.map((result) => result.refreshed_token as string);
    await schedulingRequests();
    const response = await batch(tis.map(({ key }, index) => reportCall(key, tokens[index] as string)));
    expect(response.body.results.map((result) => result.status)).toEqual([200, 200, 200, 200]);
    const sent = await schedulingRequests();
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ type: 'schedule_run', dag_id: 'wide', run_id: tis[0]?.key.runId });
    expect(sent[0]?.task_instances?.map((ti) => ti.task_id).sort()).toEqual(['a', 'b', 'c', 'd']);
    for (const { key } of tis)
      expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'success' });
  });

  it('answers a repeated report as a duplicate, as the route does', async () => {
    const [ti] = await queued(1);
    if (!ti) throw new Error('one TI');
    const token = (await batch([startCall(ti.key, ti.token)])).body.results[0]?.refreshed_token as string;
    const call = reportCall(ti.key, token, 'report-1');
    const first = await batch([call]);
    const again = await batch([call]);
    expect(first.body.results[0]).toMatchObject({ status: 200, body: { ok: true } });
    expect(again.body.results[0]).toMatchObject({ status: 200, body: { ok: true, duplicate: true } });
  });

  it('takes as many calls as UPDRAFT_EXECUTION_BATCH_MAX_CALLS allows, and refuses one more whole', async () => {
    const tis = await queued(11);
    const over = await batch(tis.map(({ key, token }) => startCall(key, token)));
    expect(over.status).toBe(422);
    expect(over.body.detail).toBe(
      'A batch of 11 calls is over the limit of 10 (UPDRAFT_EXECUTION_BATCH_MAX_CALLS)',
    );
    for (const { key } of tis)
      expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'queued' });
    const under = await batch(tis.slice(0, 10).map(({ key, token }) => startCall(key, token)));
    expect(under.status).toBe(200);
    expect(under.body.results.every((result) => result.status === 200)).toBe(true);
  });

  it('refuses a malformed batch with 422', async () => {
    expect((await batch([])).status).toBe(422);
    const response = await api.request<ErrorBody>('POST', '/execution/batch', { calls: [{}] }, null);
    expect(response.status).toBe(422);
    expect(response.body.detail).toContain('calls.0.method');
  });
});

describe('a batch call and its own route', () => {
  it('is documented in the OpenAPI document', async () => {
    const document = await api.request<{ paths: Record<string, unknown> }>('GET', '/api/v2/openapi.json');
    expect(Object.keys(document.body.paths)).toContain('/execution/batch');
  });

  it('checks the heartbeat route through a batch too', async () => {
    const [ti] = await queued(1);
    if (!ti) throw new Error('one TI');
    const token = (await batch([startCall(ti.key, ti.token)])).body.results[0]?.refreshed_token as string;
    const response = await batch([{ method: 'PUT', path: tiPath(ti.key, 'heartbeat'), token, body: {} }]);
    expect(response.body.results[0]).toMatchObject({ status: 200, body: { ok: true } });
  });
});

describe('a worker client whose calls go through ExecutionBatcher', () => {
  it('starts and reports TIs in one request each, every caller answered as if alone', async () => {
    const tis = await queued(3);
    const requests: string[] = [];
    const batcher = new ExecutionBatcher({
      fetch: ((input: string | URL | Request, init?: RequestInit) => {
        requests.push(new URL(String(input)).pathname);
        return fetch(input, init);
      }) as typeof fetch,
      baseUrl: api.baseUrl,
      maxCalls: 10,
      windowMs: 1_000,
      requestMaxBytes: api.settings.requestMaxBytes,
      callers: () => tis.length,
    });
    const client = new ExecutionClient(api.baseUrl, { fetch: batcher.fetch });
    const started = await Promise.all(tis.map(({ key, token }) => client.start(token, key, WORKER)));
    expect(requests).toEqual(['/execution/batch']);
    expect(started.map(({ started: answer }) => answer.task_id)).toEqual(['a', 'b', 'c']);
    const tokens = started.map(({ refreshedToken }) => refreshedToken as string);
    expect(tokens.every((token) => typeof token === 'string')).toBe(true);

    // A refused call fails for its caller only, as the client's own error (not retried).
    const again = await Promise.allSettled(
      tis.map(({ key }, index) => client.start(tokens[index] as string, key, WORKER)),
    );
    expect(again.map((result) => result.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect((again[0] as PromiseRejectedResult).reason).toMatchObject({ status: 409, retryable: false });
    expect(requests).toEqual(['/execution/batch', '/execution/batch']);

    await schedulingRequests();
    const reports = await Promise.all(
      tis.map(({ key }, index) =>
        client.finish(tokens[index] as string, key, { state: 'success', report_id: randomUUID(), xcom: '1' }),
      ),
    );
    expect(reports).toEqual([{ duplicate: false }, { duplicate: false }, { duplicate: false }]);
    expect(requests).toHaveLength(3);
    expect(await schedulingRequests()).toHaveLength(1);
    for (const { key } of tis)
      expect(await api.store.getTaskInstance(key)).toMatchObject({ state: 'success' });
  });
});

describe('a batch that tries to break out', () => {
  it('refuses paths that resolve to another route, and applies nothing through them', async () => {
    const [ti] = await queued(1);
    if (!ti) throw new Error('one TI');
    const smuggled = [
      '/execution/task-instances/..\\..\\api\\v2\\dags/run',
      '/execution/task-instances/%2e%2e/run',
      '/execution/task-instances/../../api/v2/dags/wide/run',
      '/api/v2/dags/wide',
      '/execution/triggers/events',
    ];
    const response = await batch(
      smuggled.map((path) => ({ method: 'PATCH', path, token: ti.token, body: { is_paused: true } })),
    );
    expect(response.status).toBe(200);
    expect(response.body.results.map((result) => result.status)).toEqual(smuggled.map(() => 400));
    const dagNow = await api.request<{ is_paused: boolean }>('GET', '/api/v2/dags/wide');
    expect(dagNow.body.is_paused).toBe(false);
  });

  it('refuses a batch with a token no header could carry whole, naming it without echoing it', async () => {
    const [first, second] = await queued(2);
    if (!first || !second) throw new Error('two TIs');
    const response = await batch([
      startCall(first.key, first.token),
      startCall(second.key, `${second.token}\nX`),
    ]);
    expect(response.status).toBe(422);
    expect(response.body.detail).toContain('calls.1.token');
    expect(JSON.stringify(response.body)).not.toContain(second.token);
    expect(await api.store.getTaskInstance(first.key)).toMatchObject({ state: 'queued' });
  });
});

describe('a batch whose answers do not fit in one answer', () => {
  let big: ApiHarness;

  beforeAll(async () => {
    big = await startApiHarness({
      confMaxBytes: 350_000,
      requestMaxBytes: 1024 * 1024,
      xcomMaxBytes: 48 * 1024,
      logChunkMaxBytes: 128 * 1024,
      logMaxBytes: 5 * 1024 * 1024,
    });
    await big.registerDags([wide]);
  });
  afterAll(async () => {
    await big?.close();
  });

  it('answers the calls past the budget 503 with send_alone, and each, sent again alone, gets its answer', async () => {
    const conf = { blob: 'x'.repeat(340_000) };
    expect(
      (await big.request('POST', '/api/v2/dags/wide/dagRuns', { dag_run_id: 'large', conf })).status,
    ).toBe(201);
    const ids = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'];
    const tis = await Promise.all(
      ids.map(async (id) => {
        const key = tiKey('wide', 'large', id);
        return { key, token: await big.queueTaskInstance(key) };
      }),
    );
    const calls = tis.map(({ key, token }) => ({
      method: 'PATCH',
      path: tiPath(key, 'run'),
      token,
      body: { ...WORKER, start_id: `start-${key.taskId}` },
    }));
    const response = await big.request<Batch>('POST', '/execution/batch', { calls }, null);
    expect(response.status).toBe(200);
    const statuses = response.body.results.map((result) => result.status);
    const refused = response.body.results.filter((result) => result.send_alone === true);
    expect(refused.length).toBeGreaterThan(0);
    expect(statuses.slice(0, ids.length - refused.length).every((status) => status === 200)).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(response.body))).toBeLessThanOrEqual(
      BATCH_ANSWER_MAX_BYTES + 1024,
    );
    // Every start was applied; a refused one, sent alone with its start id, is answered again.
    for (const { key } of tis)
      expect(await big.store.getTaskInstance(key)).toMatchObject({ state: 'running' });
    const index = statuses.lastIndexOf(503);
    const again = await big.request<StartedTaskBody>(
      'PATCH',
      tiPath(tis[index]!.key, 'run'),
      calls[index]!.body,
      tis[index]!.token,
    );
    expect(again.status).toBe(200);
    expect(again.body.conf).toEqual(conf);
  });
});

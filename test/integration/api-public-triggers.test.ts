import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  Trigger as TriggerBody,
  TriggerCollection,
  TriggererCollection,
} from '#contracts/public-api.ts';
import type { TaskInstanceKey, Trigger, TriggererJob } from '#core/models.ts';
import { dag } from '#sdk/index.ts';
import {
  type ApiHarness,
  type ErrorBody,
  runPath,
  startApiHarness,
  type TaskInstanceBody,
  type TaskInstanceCollectionBody,
  tiKey,
} from './api-harness.ts';

/** The public routes of deferral: triggers, triggerer jobs, and what a deferred TI shows. */

const HEARTBEAT_TIMEOUT_MS = 5_000;
const KWARGS =
  '{"moment":{"__serde":"datetime","value":"2030-01-01T00:00:00.000Z"},"end_from_trigger":false}';

const deferring = dag({ id: 'deferring' }, (d) => {
  d.task({ id: 'wait', executionTimeout: '1h' }, async () => 1);
  d.task({ id: 'plain' }, async () => 1);
});

async function startHarness(): Promise<ApiHarness> {
  return startApiHarness({
    triggererHeartbeatIntervalMs: 1_000,
    triggererHeartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS,
  });
}

function trigger(api: ApiHarness, triggerId: string, overrides: Partial<Trigger> = {}): Trigger {
  return {
    triggerId,
    name: 'updraft.DateTimeTrigger',
    kwargs: KWARGS,
    queue: 'default',
    ti: tiKey('deferring', 'run_1', `wait_${triggerId}`),
    tryNumber: 1,
    deferralSeq: 1,
    createdAt: api.clock.iso(),
    timeoutAt: null,
    jobId: null,
    claimedAt: null,
    revision: 0,
    ...overrides,
  };
}

/** A running job whose last heartbeat was `silentMs` ago. */
function job(
  api: ApiHarness,
  jobId: string,
  silentMs: number,
  overrides: Partial<TriggererJob> = {},
): TriggererJob {
  return {
    jobId,
    hostname: `host-${jobId}`,
    capacity: 50,
    queues: ['default'],
    state: 'running',
    startedAt: new Date(api.clock.nowMs - 60_000).toISOString(),
    heartbeatAt: new Date(api.clock.nowMs - silentMs).toISOString(),
    endedAt: null,
    running: 1,
    revision: 0,
    ...overrides,
  };
}

async function putClaimed(api: ApiHarness, stored: Trigger, jobId: string): Promise<void> {
  await api.store.putTrigger(stored);
  await api.store.claimTrigger(stored.triggerId, null, jobId, api.clock.iso());
}

/** Every page, following `next_cursor`; also returns the size of each page. */
async function allPages<T>(
  api: ApiHarness,
  path: string,
  limit: number,
  itemsOf: (body: { next_cursor?: string } & Record<string, unknown>) => T[],
): Promise<{ items: T[]; sizes: number[] }> {
  const items: T[] = [];
  const sizes: number[] = [];
  let cursor: string | undefined;
  do {
    const query = `?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const response = await api.request<{ next_cursor?: string } & Record<string, unknown>>(
      'GET',
      `${path}${query}`,
    );
    expect(response.status).toBe(200);
    items.push(...itemsOf(response.body));
    sizes.push(itemsOf(response.body).length);
    cursor = response.body.next_cursor;
  } while (cursor);
  return { items, sizes };
}

describe('GET /api/v2/triggers and /api/v2/triggerers', () => {
  let api: ApiHarness;

  beforeAll(async () => {
    api = await startHarness();
    await api.store.putJob(job(api, 'live', 1_000, { running: 2, queues: ['default', 'slow'] }));
    // Silent for exactly the timeout: not dead yet (dead is strictly longer, as triggerers judge it).
    await api.store.putJob(job(api, 'edge', HEARTBEAT_TIMEOUT_MS));
    await api.store.putJob(job(api, 'silent', HEARTBEAT_TIMEOUT_MS + 1));
    await api.store.putJob(
      job(api, 'done', 30_000, {
        state: 'complete',
        endedAt: new Date(api.clock.nowMs - 20_000).toISOString(),
      }),
    );
    await api.store.putTrigger(trigger(api, 't-waiting', { timeoutAt: '2030-01-01T01:00:00.000Z' }));
    await api.store.putTrigger(
      trigger(api, 't-secret', {
        name: 'updraft.HttpPollTrigger',
        kwargs: JSON.stringify({
          url: 'https://jobs.example/1',
          headers: { Authorization: 'Bearer s3cr3t' },
        }),
      }),
    );
    await putClaimed(api, trigger(api, 't-running'), 'live');
    await putClaimed(api, trigger(api, 't-edge'), 'edge');
    await putClaimed(api, trigger(api, 't-silent'), 'silent');
    await putClaimed(api, trigger(api, 't-done'), 'done');
    await putClaimed(api, trigger(api, 't-vanished'), 'vanished');
    await api.store.putTrigger(
      trigger(api, 't-mapped', {
        ti: { dagId: 'deferring', runId: 'manual__2026-01-01T00:00:00+00:00', taskId: 'wait', mapIndex: 3 },
        tryNumber: 2,
        deferralSeq: 4,
        queue: 'slow',
      }),
    );
  });
  afterAll(async () => {
    await api?.close();
  });

  const listTriggers = async () => {
    const response = await api.request<TriggerCollection>('GET', '/api/v2/triggers');
    expect(response.status).toBe(200);
    return new Map(response.body.triggers.map((t) => [t.trigger_id, t]));
  };

  it('names an unclaimed trigger waiting, with every field of the stored trigger', async () => {
    const waiting = (await listTriggers()).get('t-waiting');
    expect(waiting).toEqual({
      trigger_id: 't-waiting',
      classpath: 'updraft.DateTimeTrigger',
      kwargs: KWARGS,
      queue: 'default',
      created_date: api.clock.iso(),
      timeout_date: '2030-01-01T01:00:00.000Z',
      state: 'waiting',
      triggerer_id: null,
      task_instance: {
        dag_id: 'deferring',
        dag_run_id: 'run_1',
        task_id: 'wait_t-waiting',
        map_index: -1,
        try_number: 1,
      },
      deferral_seq: 1,
      log_url: '/api/v2/dags/deferring/dagRuns/run_1/taskInstances/wait_t-waiting/logs/1',
    } satisfies TriggerBody);
  });

  it('returns kwargs with nothing sensitive as the stored text', async () => {
    const waiting = (await listTriggers()).get('t-waiting');
    expect(typeof waiting?.kwargs).toBe('string');
    expect(waiting?.kwargs).toBe(KWARGS);
  });

  it('masks the values of sensitive-looking kwargs (a header with a token)', async () => {
    const shown = (await listTriggers()).get('t-secret');
    expect(shown?.kwargs).not.toContain('s3cr3t');
    expect(JSON.parse(shown?.kwargs ?? '{}')).toEqual({
      url: 'https://jobs.example/1',
      headers: { Authorization: '***' },
    });
  });

  it('names a trigger held by a live triggerer running, and one silent for exactly the timeout still running', async () => {
    const triggers = await listTriggers();
    expect(triggers.get('t-running')).toMatchObject({ state: 'running', triggerer_id: 'live' });
    expect(triggers.get('t-edge')).toMatchObject({ state: 'running', triggerer_id: 'edge' });
  });

  it('names a trigger orphaned when its triggerer is silent past the timeout, complete, or gone', async () => {
    const triggers = await listTriggers();
    expect(triggers.get('t-silent')).toMatchObject({ state: 'orphaned', triggerer_id: 'silent' });
    expect(triggers.get('t-done')).toMatchObject({ state: 'orphaned', triggerer_id: 'done' });
    expect(triggers.get('t-vanished')).toMatchObject({ state: 'orphaned', triggerer_id: 'vanished' });
  });

  it("links a mapped task instance's try log with its map index, ids escaped", async () => {
    const mapped = (await listTriggers()).get('t-mapped');
    expect(mapped).toMatchObject({
      queue: 'slow',
      deferral_seq: 4,
      task_instance: { map_index: 3, try_number: 2 },
      log_url:
        '/api/v2/dags/deferring/dagRuns/manual__2026-01-01T00%3A00%3A00%2B00%3A00/taskInstances/wait/logs/2?map_index=3',
    });
  });

  it('pages triggers by limit and cursor, in trigger id order, each once', async () => {
    const { items, sizes } = await allPages(api, '/api/v2/triggers', 3, (body) =>
      (body as unknown as TriggerCollection).triggers.map((t) => t.trigger_id),
    );
    const ids = [
      't-done',
      't-edge',
      't-mapped',
      't-running',
      't-secret',
      't-silent',
      't-vanished',
      't-waiting',
    ];
    expect(items).toEqual(ids);
    expect(sizes).toEqual([3, 3, 2]);
  });

  it('names each triggerer running, dead or complete, with every field of its job', async () => {
    const response = await api.request<TriggererCollection>('GET', '/api/v2/triggerers');
    expect(response.status).toBe(200);
    const byId = new Map(response.body.triggerers.map((j) => [j.job_id, j]));
    expect(byId.get('live')).toEqual({
      job_id: 'live',
      hostname: 'host-live',
      state: 'running',
      start_date: new Date(api.clock.nowMs - 60_000).toISOString(),
      latest_heartbeat: new Date(api.clock.nowMs - 1_000).toISOString(),
      end_date: null,
      capacity: 50,
      queues: ['default', 'slow'],
      running_triggers: 2,
    });
    expect(byId.get('edge')?.state).toBe('running');
    expect(byId.get('silent')?.state).toBe('dead');
    expect(byId.get('done')).toMatchObject({
      state: 'complete',
      end_date: new Date(api.clock.nowMs - 20_000).toISOString(),
    });
    expect(response.body.next_cursor).toBeUndefined();
  });

  it('pages triggerers by limit and cursor, in job id order', async () => {
    const { items } = await allPages(api, '/api/v2/triggerers', 1, (body) =>
      (body as unknown as TriggererCollection).triggerers.map((j) => j.job_id),
    );
    expect(items).toEqual(['done', 'edge', 'live', 'silent']);
  });

  it('answers 401 without the token, on both routes', async () => {
    for (const path of ['/api/v2/triggers', '/api/v2/triggerers']) {
      const response = await api.request<ErrorBody>('GET', path, undefined, null);
      expect(response.status, path).toBe(401);
      expect(response.body.detail).toBe('Missing or invalid bearer token');
    }
  });

  it('refuses ?offset=, a limit out of range and a cursor it did not give', async () => {
    expect((await api.request<ErrorBody>('GET', '/api/v2/triggers?offset=5')).body.detail).toContain(
      'it takes `limit`, `cursor`',
    );
    expect((await api.request('GET', '/api/v2/triggerers?limit=0')).status).toBe(422);
    expect((await api.request('GET', '/api/v2/triggers?cursor=not-a-cursor')).status).toBe(400);
  });

  it('lists them in the OpenAPI document, behind the API token', async () => {
    const { body } = await api.request<{ paths: Record<string, { get?: { security?: unknown } }> }>(
      'GET',
      '/api/v2/openapi.json',
      undefined,
      null,
    );
    for (const path of ['/api/v2/triggers', '/api/v2/triggerers']) {
      expect(body.paths[path]?.get?.security, path).toEqual([{ apiToken: [] }]);
    }
  });

  it('names a triggerer dead, and its trigger orphaned, once it stays silent past the timeout', async () => {
    api.clock.advance(HEARTBEAT_TIMEOUT_MS);
    const triggerers = await api.request<TriggererCollection>('GET', '/api/v2/triggerers');
    expect(triggerers.body.triggerers.find((j) => j.job_id === 'live')?.state).toBe('dead');
    expect((await listTriggers()).get('t-running')?.state).toBe('orphaned');
  });
});

describe('a deferred task instance in GET …/taskInstances', () => {
  let api: ApiHarness;
  let key: TaskInstanceKey;
  const triggerTimeout = '2030-01-01T00:00:00.000Z';

  beforeAll(async () => {
    api = await startHarness();
    await api.registerDags([deferring]);
    const created = await api.request('POST', '/api/v2/dags/deferring/dagRuns', { dag_run_id: 'run_1' });
    expect(created.status).toBe(201);
    key = tiKey('deferring', 'run_1', 'wait');
    await api.store.transitionTaskInstance(
      key,
      { state: 'none', tryNumber: 0 },
      { state: 'queued', tryNumber: 1 },
    );
    await api.store.transitionTaskInstance(
      key,
      { state: 'queued', tryNumber: 1 },
      { state: 'running', startDate: api.clock.iso(), tryStartedAt: api.clock.iso() },
      { owed: [] },
    );
    const stored = trigger(api, 'deferred-wait', { ti: key, timeoutAt: triggerTimeout });
    await api.store.putTrigger(stored);
    await api.store.transitionTaskInstance(
      key,
      { state: 'running', tryNumber: 1 },
      {
        state: 'deferred',
        deferralSeq: 1,
        nextMethod: 'executeComplete',
        nextKwargs: '{"round":1}',
        triggerId: stored.triggerId,
        triggerTimeoutAt: triggerTimeout,
      },
    );
  });
  afterAll(async () => {
    await api?.close();
  });

  it('shows what the task instance waits on, and a task instance that never deferred shows nothing', async () => {
    const response = await api.request<TaskInstanceCollectionBody>(
      'GET',
      `${runPath('deferring', 'run_1')}/taskInstances`,
    );
    expect(response.status).toBe(200);
    const byTask = new Map(response.body.task_instances.map((ti) => [ti.task_id, ti]));
    expect(byTask.get('wait')).toMatchObject({
      state: 'deferred',
      try_number: 1,
      next_method: 'executeComplete',
      trigger_id: 'deferred-wait',
      trigger_timeout: triggerTimeout,
      deferral_seq: 1,
    });
    expect(byTask.get('plain')).toMatchObject({
      state: null,
      next_method: null,
      trigger_id: null,
      trigger_timeout: null,
      deferral_seq: 0,
    });
  });

  it('shows the same on the single task instance route', async () => {
    const response = await api.request<TaskInstanceBody>(
      'GET',
      `${runPath('deferring', 'run_1')}/taskInstances/wait`,
    );
    expect(response.body).toMatchObject({ trigger_id: 'deferred-wait', deferral_seq: 1 });
  });

  it("lists the trigger of that try, with a log_url that answers the try's log", async () => {
    const listed = await api.request<TriggerCollection>('GET', '/api/v2/triggers');
    const waitedOn = listed.body.triggers.find((t) => t.trigger_id === 'deferred-wait');
    expect(waitedOn).toMatchObject({
      state: 'waiting',
      task_instance: {
        dag_id: 'deferring',
        dag_run_id: 'run_1',
        task_id: 'wait',
        map_index: -1,
        try_number: 1,
      },
    });
    const log = await api.request<{ content: string }>('GET', waitedOn?.log_url ?? '');
    expect(log.status).toBe(200);
    expect(typeof log.body.content).toBe('string');
  });
});

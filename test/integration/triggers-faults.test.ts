import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settingsSchema } from '#config/settings.ts';
import { nextTryNumberOf, type TaskInstanceKey } from '#core/models.ts';
import { silentLogger } from '#engine/logger.ts';
import { dag } from '#sdk/index.ts';
import '#sdk/triggers/index.ts';
import { TriggererClient } from '#triggerer/client.ts';
import { Triggerer } from '#triggerer/triggerer.ts';
import { type ApiHarness, startApiHarness, tiKey, tiPath, WORKER } from './api-harness.ts';

/**
 * The real triggerer against the real Execution API over HTTP on 127.0.0.1, with 30% of its
 * trigger calls answered 503 before they reach the API and some connections dropped after the
 * API applied them (the triggerer sees a network error and sends again): every deferral still
 * resumes exactly once in effect.
 */
const waiting = dag({ id: 'waiting' }, (d) => {
  d.task({ id: 'wait' }, async () => 1);
});

const TASKS = 30;
let api: ApiHarness;

/** A deterministic PRNG (mulberry32), so a failing run can be reasoned about. */
function prng(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

beforeAll(async () => {
  api = await startApiHarness({ xcomMaxBytes: 48 * 1024, requestMaxBytes: 1024 * 1024 });
  await api.registerDags([waiting]);
});
afterAll(async () => {
  await api?.close();
});

async function deferredTask(runId: string, momentMs: number): Promise<TaskInstanceKey> {
  expect((await api.request('POST', '/api/v2/dags/waiting/dagRuns', { dag_run_id: runId })).status).toBe(201);
  const key = tiKey('waiting', runId, 'wait');
  const ti = await api.store.getTaskInstance(key);
  const tryNumber = nextTryNumberOf(ti!);
  await api.store.transitionTaskInstance(
    key,
    { state: ti!.state, tryNumber: ti!.tryNumber },
    { state: 'queued', tryNumber, queuedAt: api.clock.iso() },
  );
  const token = await api.tokens.issue({ ...key, tryNumber }, api.clock.nowMs);
  expect((await api.request('PATCH', tiPath(key, 'run'), WORKER, token)).status).toBe(200);
  const deferred = await api.request(
    'PATCH',
    tiPath(key, 'state'),
    {
      state: 'deferred',
      report_id: randomUUID(),
      deferral: {
        trigger: {
          name: 'updraft.DateTimeTrigger',
          kwargs: JSON.stringify({ moment: new Date(momentMs).toISOString() }),
        },
        next_method: 'executeComplete',
        next_kwargs: '{}',
        timeout_ms: null,
      },
    },
    token,
  );
  expect(deferred.status).toBe(200);
  return key;
}

/** Whether a call carries trigger events: one (`/triggers/{id}/event`) or a batch (`/triggers/events`). */
function carriesEvents(pathname: string): boolean {
  return pathname === '/execution/triggers/events' || pathname.endsWith('/event');
}

describe.each([1, 100])(
  'the triggerer against the real API with faults, %i event(s) a call',
  (eventsPerCall) => {
    it('resumes every deferral exactly once although 30% of trigger calls fail and connections drop', async () => {
      const before = (await api.metrics.snapshot()).counters['triggers.events_applied'] ?? 0;
      const keys: TaskInstanceKey[] = [];
      for (let index = 0; index < TASKS; index += 1) {
        // Five at each moment: their events are due together and may share a call.
        const momentMs = Date.now() + 300 + Math.floor(index / 5) * 150;
        keys.push(await deferredTask(`run_${eventsPerCall}_${index}`, momentMs));
      }
      // Event calls draw from their own sequence, so the other calls' timing does not shift it.
      const random = prng(42);
      const otherRandom = prng(7);
      const faults = { refused: 0, dropped: 0, eventCalls: 0, largestBatch: 0 };
      const faultyFetch: typeof fetch = async (input, init) => {
        const request = new Request(input, init);
        const { pathname } = new URL(request.url);
        if (!pathname.startsWith('/execution/triggers/')) return fetch(request);
        // The first two calls carrying events are dropped after being applied, then refused, so
        // both faults hit event delivery however the events happen to be grouped into calls.
        const eventCall = carriesEvents(pathname) ? ++faults.eventCalls : 0;
        if (pathname === '/execution/triggers/events') {
          const { events } = (await request.clone().json()) as { events: unknown[] };
          faults.largestBatch = Math.max(faults.largestBatch, events.length);
        }
        const forced = eventCall === 1 || eventCall === 2 ? 0.4 : eventCall === 3 ? 0 : undefined;
        const draw = forced ?? (eventCall === 0 ? otherRandom() : random());
        if (draw < 0.3) {
          faults.refused += 1;
          return new Response(JSON.stringify({ detail: 'injected', status: 503 }), {
            status: 503,
            headers: { 'content-type': 'application/json' },
          });
        }
        if (draw < 0.45) {
          // Applied by the API, then the connection drops before the answer arrives.
          await (await fetch(request)).text();
          faults.dropped += 1;
          throw new TypeError('fetch failed: connection reset (injected)');
        }
        return fetch(request);
      };
      const credential = await api.tokens.issueClaims({ kind: 'triggerer' }, api.clock.nowMs);
      const settings = settingsSchema.parse({
        home: '/tmp/unused',
        triggererLoadIntervalMs: 100,
        triggerCleanupIntervalMs: 1_000,
        triggererHeartbeatIntervalMs: 500,
        triggererHeartbeatTimeoutMs: 5_000,
        triggererEventsPerCall: eventsPerCall,
      });
      const triggerer = new Triggerer({
        client: new TriggererClient(api.baseUrl, credential, { fetch: faultyFetch, timeoutMs: 5_000 }),
        settings,
        log: silentLogger,
        reportRetry: { baseDelayMs: 20, maxDelayMs: 200 },
        logFlushIntervalMs: 200,
      });
      const running = triggerer.run();
      try {
        const deadline = Date.now() + 30_000;
        for (;;) {
          const tis = await api.store.getTaskInstances(keys);
          if (tis.every((ti) => ti.state === 'scheduled')) break;
          if (Date.now() > deadline) {
            throw new Error(
              `Not resumed: ${tis.filter((ti) => ti.state !== 'scheduled').length} of ${TASKS}`,
            );
          }
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      } finally {
        await triggerer.stop();
        await running.catch(() => undefined);
      }
      const tis = await api.store.getTaskInstances(keys);
      for (const ti of tis) {
        expect(ti).toMatchObject({ state: 'scheduled', tryNumber: 1, deferralSeq: 1 });
        expect(JSON.parse(ti.nextEvent as string)).toEqual({
          __updraft_type: 'updraft.Date',
          value: expect.any(String),
        });
      }
      const { counters } = await api.metrics.snapshot();
      // Each deferral applied once; retries after a dropped answer found it already applied.
      expect((counters['triggers.events_applied'] ?? 0) - before).toBe(TASKS);
      expect(faults.refused).toBeGreaterThanOrEqual(1);
      expect(faults.dropped).toBeGreaterThanOrEqual(2);
      // With batches, some call carried several events (the per-event answers were used).
      if (eventsPerCall > 1) expect(faults.largestBatch).toBeGreaterThan(1);
      else expect(faults.largestBatch).toBe(0);
      expect((await api.store.listTriggers({ limit: 100 })).items).toEqual([]);
    }, 60_000);
  },
);

import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import {
  pageQuery,
  type TriggererState,
  type TriggerState,
  triggerCollectionSchema,
  triggererCollectionSchema,
} from '#contracts/public-api.ts';
import { mapConcurrently } from '#core/concurrency.ts';
import type { Trigger, TriggererJob } from '#core/models.ts';
import type { ApiDeps } from './app.ts';
import { jsonContent as json, publicErrors } from './route-docs.ts';
import { triggererToWire, triggerToWire } from './serializers.ts';

/** Holder jobs read at once for a page of triggers: a deployment runs a handful of triggerers. */
const JOB_READ_CONCURRENCY = 8;

/**
 * The public, read-only view of deferral: the triggers that deferred task instances wait on, and
 * the triggerer jobs that run them. A trigger's state is derived from its holder's liveness by
 * the same rule the triggerers apply to each other, so a trigger shown `orphaned` by a dead or
 * complete job is one a live triggerer will take over.
 */
export function registerTriggerListRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  const { store } = deps;
  const timeoutMs = deps.settings.triggererHeartbeatTimeoutMs;

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/triggers',
      tags: ['Trigger'],
      request: { query: pageQuery },
      responses: {
        200: json(triggerCollectionSchema, 'Triggers of deferred task instances, in trigger id order'),
        ...publicErrors,
      },
    }),
    async (c) => {
      const page = await store.listTriggers(c.req.valid('query'));
      const nowMs = deps.now();
      const holders = await holderStates(deps, page.items, nowMs);
      return c.json(
        {
          triggers: page.items.map((trigger) => triggerToWire(trigger, triggerStateOf(trigger, holders))),
          ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/triggerers',
      tags: ['Triggerer'],
      request: { query: pageQuery },
      responses: {
        200: json(triggererCollectionSchema, 'Triggerer jobs, running, dead and complete, in job id order'),
        ...publicErrors,
      },
    }),
    async (c) => {
      const page = await store.listJobs(c.req.valid('query'));
      const nowMs = deps.now();
      return c.json(
        {
          triggerers: page.items.map((job) => triggererToWire(job, triggererStateOf(job, nowMs, timeoutMs))),
          ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
        },
        200,
      );
    },
  );
}

/**
 * A job is dead once it has been silent for longer than the heartbeat timeout, the rule the
 * triggerers apply before taking over its triggers (`TriggerLifecycle`); a live triggerer also
 * marks such a job complete, so `dead` lasts only until one looks.
 */
function triggererStateOf(job: TriggererJob, nowMs: number, timeoutMs: number): TriggererState {
  switch (job.state) {
    case 'complete':
      return 'complete';
    case 'running':
      return nowMs - Date.parse(job.heartbeatAt) > timeoutMs ? 'dead' : 'running';
  }
}

/** A trigger held by a job that is dead, complete or gone waits for a takeover: orphaned. */
function triggerStateOf(trigger: Trigger, holders: ReadonlyMap<string, TriggererState>): TriggerState {
  if (trigger.jobId === null) return 'waiting';
  return holders.get(trigger.jobId) === 'running' ? 'running' : 'orphaned';
}

/** The state of each job holding a trigger of the page, by job id; a job that is gone is left out. */
async function holderStates(
  deps: Pick<ApiDeps, 'store' | 'settings'>,
  triggers: readonly Trigger[],
  nowMs: number,
): Promise<Map<string, TriggererState>> {
  const jobIds = [...new Set(triggers.flatMap((trigger) => (trigger.jobId === null ? [] : [trigger.jobId])))];
  const jobs = await mapConcurrently(jobIds, JOB_READ_CONCURRENCY, (jobId) => deps.store.getJob(jobId));
  const states = new Map<string, TriggererState>();
  for (const job of jobs) {
    if (job) states.set(job.jobId, triggererStateOf(job, nowMs, deps.settings.triggererHeartbeatTimeoutMs));
  }
  return states;
}

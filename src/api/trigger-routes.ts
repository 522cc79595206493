import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { claimCallbacksBody, claimedCallbacksSchema } from '#contracts/callbacks.ts';
import { errorSchema } from '#contracts/common.ts';
import { okSchema, REFRESHED_TOKEN_HEADER } from '#contracts/execution-api.ts';
import type { JobTokenClaims } from '#contracts/tokens.ts';
import {
  cleanupBody,
  cleanupSchema,
  heldTriggersBody,
  heldTriggersSchema,
  jobHeartbeatBody,
  jobIdParams,
  loadedTriggersSchema,
  loadTriggersBody,
  registeredJobSchema,
  registerJobBody,
  triggerEventBody,
  triggerEventOutcomeSchema,
  triggerEventResultsSchema,
  triggerEventsBody,
  triggerFailureBody,
  triggerIdParams,
  triggerIdsBody,
  triggerLogsBody,
  triggerWorkloadsSchema,
} from '#contracts/triggers.ts';
import type { Trigger } from '#core/models.ts';
import { InvalidTokenError, type VerifiedToken } from '#engine/tokens.ts';
import type { ApiDeps } from './app.ts';
import { bearerTokenOf } from './auth.ts';
import { errorAnswer, ForbiddenError } from './errors.ts';
import { jsonBody as body, jsonContent as json } from './route-docs.ts';

const errors = {
  401: json(errorSchema, 'Missing, invalid or expired token'),
  403: json(errorSchema, 'The token is of another kind, or for another job'),
  404: json(errorSchema, 'Not found'),
  409: json(
    errorSchema,
    'The job is not running (register again), or the trigger is held by another triggerer (drop it)',
  ),
  413: json(errorSchema, 'A payload or log chunk over its limit; detail names the setting'),
  422: json(errorSchema, 'Invalid request'),
};
const jobSecurity = [{ jobToken: [] }];
const refreshedTokenHeader = {
  [REFRESHED_TOKEN_HEADER]: {
    description: 'A fresh job token; the triggerer uses it for every later call',
    schema: { type: 'string' as const },
  },
};

/**
 * The triggerer's part of the Execution API. A triggerer registers a liveness job with its
 * triggerer credential and then calls everything else with the job's token, which names the job:
 * it can claim, run and report only triggers that job holds. Payloads stay opaque text.
 */
export function registerTriggerRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  app.openAPIRegistry.registerComponent('securitySchemes', 'triggererToken', {
    type: 'http',
    scheme: 'bearer',
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'jobToken', { type: 'http', scheme: 'bearer' });

  const verified = async (c: Context): Promise<VerifiedToken> => {
    const token = bearerTokenOf(c.req.header('authorization'));
    if (token === undefined) throw new InvalidTokenError('Missing token (Authorization: Bearer …)');
    return deps.tokens.check(token, deps.now());
  };
  /** The job token's claims; the job in the path, when there is one, must be the token's. */
  const job = async (c: Context, pathJobId?: string): Promise<JobTokenClaims> => {
    const token = await verified(c);
    const { claims } = token;
    if (claims.kind !== 'job')
      throw new ForbiddenError(`A ${claims.kind} token cannot call the triggerer routes`);
    if (pathJobId !== undefined && pathJobId !== claims.jobId)
      throw new ForbiddenError(`This token is for job ${claims.jobId}, not job ${pathJobId}`);
    // Like a task token, a job token is renewed once half its life is gone.
    const nowMs = deps.now();
    if (token.expiresAtMs - nowMs < (token.expiresAtMs - token.issuedAtMs) / 2)
      c.header(REFRESHED_TOKEN_HEADER, await deps.tokens.issueClaims(claims, nowMs));
    return claims;
  };

  app.openapi(
    createRoute({
      method: 'post',
      path: '/execution/jobs',
      tags: ['Triggerer'],
      security: [{ triggererToken: [] }],
      request: { body: body(registerJobBody) },
      responses: { 201: json(registeredJobSchema, 'Registered: the job id and its token'), ...errors },
    }),
    async (c) => {
      const { claims } = await verified(c);
      if (claims.kind !== 'triggerer')
        throw new ForbiddenError(`A ${claims.kind} token cannot register a triggerer job`);
      const request = c.req.valid('json');
      const { job: registered, token } = await deps.triggers.registerJob({
        hostname: request.hostname,
        capacity: request.capacity,
        queues: request.queues ?? ['default'],
      });
      return c.json(
        {
          job_id: registered.jobId,
          token,
          heartbeat_interval_ms: deps.settings.triggererHeartbeatIntervalMs,
          heartbeat_timeout_ms: deps.settings.triggererHeartbeatTimeoutMs,
        },
        201,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/execution/jobs/{job_id}/heartbeat',
      tags: ['Triggerer'],
      security: jobSecurity,
      request: { params: jobIdParams, body: body(jobHeartbeatBody) },
      responses: {
        200: { ...json(okSchema, 'Recorded'), headers: refreshedTokenHeader },
        ...errors,
      },
    }),
    async (c) => {
      const { jobId } = await job(c, c.req.valid('param').job_id);
      const { running } = c.req.valid('json');
      await deps.triggers.heartbeat(jobId, running);
      deps.metrics.gauge('triggers.running', running);
      return c.json({ ok: true as const }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/execution/jobs/{job_id}/complete',
      tags: ['Triggerer'],
      security: jobSecurity,
      request: { params: jobIdParams },
      responses: { 200: json(okSchema, 'Completed; its triggers are released'), ...errors },
    }),
    async (c) => {
      const { jobId } = await job(c, c.req.valid('param').job_id);
      await deps.triggers.complete(jobId);
      return c.json({ ok: true as const }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/execution/triggers/load',
      tags: ['Triggerer'],
      security: jobSecurity,
      request: { body: body(loadTriggersBody) },
      responses: { 200: json(loadedTriggersSchema, 'The ids claimed for this job'), ...errors },
    }),
    async (c) => {
      const { jobId } = await job(c);
      const { limit, queues } = c.req.valid('json');
      return c.json({ trigger_ids: await deps.triggers.load(jobId, limit, queues) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/execution/triggers/workloads',
      tags: ['Triggerer'],
      security: jobSecurity,
      request: { body: body(triggerIdsBody) },
      responses: {
        200: json(triggerWorkloadsSchema, 'The run-trigger workloads, and ids to stop'),
        ...errors,
      },
    }),
    async (c) => {
      const { jobId } = await job(c);
      const { workloads, stop } = await deps.triggers.workloads(jobId, c.req.valid('json').trigger_ids);
      return c.json({ workloads: workloads.map(workloadOf), stop }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/execution/callbacks/claim',
      tags: ['Triggerer'],
      security: jobSecurity,
      request: { body: body(claimCallbacksBody) },
      responses: {
        200: json(claimedCallbacksSchema, 'The workloads of the callbacks claimed for this job'),
        ...errors,
      },
    }),
    async (c) => {
      const { jobId } = await job(c);
      await deps.triggers.runningJob(jobId);
      const workloads = await deps.callbacks.claimForTriggerer(jobId, c.req.valid('json').limit);
      return c.json({ workloads }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/execution/triggers/{trigger_id}/event',
      tags: ['Triggerer'],
      security: jobSecurity,
      request: { params: triggerIdParams, body: body(triggerEventBody) },
      responses: { 200: json(triggerEventOutcomeSchema, 'What became of the event'), ...errors },
    }),
    async (c) => {
      const { jobId } = await job(c);
      const request = c.req.valid('json');
      const outcome = await deps.triggers.event(
        jobId,
        c.req.valid('param').trigger_id,
        { type: request.type, payload: request.payload },
        request.log,
      );
      return c.json({ outcome }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/execution/triggers/events',
      tags: ['Triggerer'],
      security: jobSecurity,
      request: { body: body(triggerEventsBody) },
      responses: {
        200: json(
          triggerEventResultsSchema,
          'One result per event, in the order sent: its outcome, or the status and detail the single event route would answer with',
        ),
        ...errors,
      },
    }),
    async (c) => {
      const { jobId } = await job(c);
      const sent = c.req.valid('json').events;
      const results = await deps.triggers.events(
        jobId,
        sent.map(({ trigger_id, type, payload, log }) => ({
          triggerId: trigger_id,
          event: { type, payload },
          log,
        })),
      );
      return c.json(
        {
          results: results.map((result, index) => {
            const trigger_id = sent[index]?.trigger_id ?? '';
            if (!(result instanceof Error)) return { trigger_id, outcome: result };
            const { status, detail } = errorAnswer(result, c, deps.log, { triggerId: trigger_id });
            return { trigger_id, status, detail };
          }),
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/execution/triggers/{trigger_id}/failure',
      tags: ['Triggerer'],
      security: jobSecurity,
      request: { params: triggerIdParams, body: body(triggerFailureBody) },
      responses: { 200: json(triggerEventOutcomeSchema, 'What became of the failure'), ...errors },
    }),
    async (c) => {
      const { jobId } = await job(c);
      const request = c.req.valid('json');
      const outcome = await deps.triggers.failure(
        jobId,
        c.req.valid('param').trigger_id,
        request.error,
        request.log,
      );
      return c.json({ outcome }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/execution/triggers/cleanup',
      tags: ['Triggerer'],
      security: jobSecurity,
      request: { body: body(cleanupBody) },
      responses: {
        200: json(cleanupSchema, 'The ids to stop, and (with `complete`) the held ids to run'),
        ...errors,
      },
    }),
    async (c) => {
      const { jobId } = await job(c);
      const request = c.req.valid('json');
      const { stop, adopt } = await deps.triggers.cleanup(
        jobId,
        request.trigger_ids,
        request.complete ?? false,
      );
      return c.json({ stop, ...(request.complete ? { adopt } : {}) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/execution/triggers/held',
      tags: ['Triggerer'],
      security: jobSecurity,
      request: { body: body(heldTriggersBody) },
      responses: {
        200: json(
          heldTriggersSchema,
          'A page of the ids of the triggers the job holds: a triggerer holding more than one cleanup names runs the ones it does not know',
        ),
        ...errors,
      },
    }),
    async (c) => {
      const { jobId } = await job(c);
      const { ids, nextCursor } = await deps.triggers.held(jobId, c.req.valid('json').cursor);
      return c.json(
        { trigger_ids: ids, ...(nextCursor === undefined ? {} : { next_cursor: nextCursor }) },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/execution/triggers/logs',
      tags: ['Triggerer'],
      security: jobSecurity,
      request: { body: body(triggerLogsBody) },
      responses: {
        200: json(okSchema, 'Appended (chunks of triggers this job does not hold are ignored)'),
        ...errors,
      },
    }),
    async (c) => {
      const { jobId } = await job(c);
      await deps.triggers.appendLogs(jobId, c.req.valid('json').chunks);
      return c.json({ ok: true as const }, 200);
    },
  );
}

function workloadOf(trigger: Trigger) {
  return {
    trigger_id: trigger.triggerId,
    name: trigger.name,
    kwargs: trigger.kwargs,
    queue: trigger.queue,
    ti: {
      dag_id: trigger.ti.dagId,
      run_id: trigger.ti.runId,
      task_id: trigger.ti.taskId,
      map_index: trigger.ti.mapIndex,
      try_number: trigger.tryNumber,
    },
    deferral_seq: trigger.deferralSeq,
    timeout_at: trigger.timeoutAt,
  };
}

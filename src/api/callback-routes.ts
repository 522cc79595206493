import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import * as z from 'zod';
import {
  callbackIdParams,
  callbackListSchema,
  callbackSchema,
  deadlineFieldOf,
  finishCallbackBody,
  finishedCallbackSchema,
  startCallbackBody,
  startedCallbackSchema,
} from '#contracts/callbacks.ts';
import { errorSchema } from '#contracts/common.ts';
import { logQuery, logSchema, pageQuery, runParams } from '#contracts/public-api.ts';
import type { CallbackTokenClaims } from '#contracts/tokens.ts';
import { CALLBACK_KINDS, CALLBACK_STATES, type Callback, callbackEventOf } from '#core/callbacks.ts';
import { deadlineOfCallback } from '#core/deadlines.ts';
import { callbackLogKey } from '#engine/callbacks.ts';
import { NotFoundError } from '#engine/errors.ts';
import { InvalidTokenError } from '#engine/tokens.ts';
import type { ApiDeps } from './app.ts';
import { bearerTokenOf } from './auth.ts';
import { ForbiddenError } from './errors.ts';
import { logPageOf } from './log-pages.ts';
import { jsonBody as body, jsonContent as json, publicErrors } from './route-docs.ts';

const executionErrors = {
  401: json(errorSchema, 'Missing, invalid or expired callback token'),
  403: json(errorSchema, 'The token is for another callback or attempt, or of another kind'),
  404: json(errorSchema, 'Not found'),
  409: json(errorSchema, 'The callback is not in the expected state or attempt (a stale or late call)'),
  413: json(errorSchema, 'A log over its limit; detail names the setting'),
  422: json(errorSchema, 'Invalid request'),
};
const security = [{ taskToken: [] }];

/** Callback items one list answer reads at most, matching or not (it then ends with a cursor). */
const CALLBACK_LIST_SCAN_MAX = 10_000;
/** Callback items one store read of the list asks for. */
const CALLBACK_LIST_READ = 500;

/**
 * The callback routes: for workers, start and report one attempt under the callback token of its
 * workload (the token names one callback and one attempt; any other token is refused); for users,
 * a run's callbacks and an attempt's log. Neither ever writes a task instance or a run.
 */
export function registerCallbackRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  const authorize = async (c: Context, callbackId: string) => {
    const token = bearerTokenOf(c.req.header('authorization'));
    if (token === undefined) throw new InvalidTokenError('Missing callback token (Authorization: Bearer …)');
    const { claims } = await deps.tokens.check(token, deps.now());
    if (claims.kind !== 'callback')
      throw new ForbiddenError(`A ${claims.kind} token cannot call the callback routes`);
    if (claims.callbackId !== callbackId) {
      throw new ForbiddenError(`This token grants callback ${claims.callbackId}, not ${callbackId}`);
    }
    return claims as CallbackTokenClaims;
  };

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/execution/callbacks/{callback_id}/run',
      tags: ['Execution'],
      security,
      request: { params: callbackIdParams, body: body(startCallbackBody) },
      responses: {
        200: json(startedCallbackSchema, 'Started: what the worker needs to run the callback'),
        ...executionErrors,
      },
    }),
    async (c) => {
      const claims = await authorize(c, c.req.valid('param').callback_id);
      const request = c.req.valid('json');
      const { callback, run, dag } = await deps.callbacks.start(claims, claims.attempt, {
        hostname: request.hostname,
        workerId: request.worker_id,
        startId: request.start_id,
      });
      return c.json(
        {
          callback_id: callback.callbackId,
          kind: callback.kind,
          dag_id: callback.dagId,
          dag_run_id: callback.runId,
          logical_date: run.logicalDate,
          conf: run.conf,
          run_state: run.state,
          task_id: callback.taskId,
          map_index: callback.mapIndex,
          try_number: callback.tryNumber,
          event: callbackEventOf(callback),
          index: callback.index,
          name: callback.name,
          fileloc: dag.fileloc,
          dag_version: callback.dagVersion,
          attempt: callback.attempt,
          max_attempts: callback.maxAttempts,
          timeout_ms: callback.timeoutMs,
          idempotency_key: callback.callbackId,
          previous_attempt_may_have_run: callback.attempt > 1 || (callback.handedBack ?? 0) > 0,
          error_message: callback.ownerError,
          error_type: callback.ownerErrorType,
          ...deadlineFieldOf(deadlineOfCallback(callback, run)),
          log_max_bytes: deps.settings.logChunkMaxBytes,
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/execution/callbacks/{callback_id}/state',
      tags: ['Execution'],
      security,
      request: { params: callbackIdParams, body: body(finishCallbackBody) },
      responses: {
        200: json(finishedCallbackSchema, 'Recorded, or (`duplicate`) recorded before by the same report'),
        ...executionErrors,
      },
    }),
    async (c) => {
      const claims = await authorize(c, c.req.valid('param').callback_id);
      const request = c.req.valid('json');
      const { callback, duplicate } = await deps.callbacks.finish(
        claims,
        claims.attempt,
        request.state === 'failed'
          ? { state: 'failed', errorMessage: request.error_message, retryable: request.retryable }
          : { state: request.state },
        { reportId: request.report_id, log: request.log },
      );
      return c.json(
        { ok: true as const, ...(duplicate ? { duplicate: true as const } : {}), state: callback.state },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/callbacks',
      tags: ['Callback'],
      request: {
        params: runParams,
        query: z
          .object({
            task_id: z.string().optional(),
            map_index: z.coerce.number().int().min(-1).optional(),
            kind: z.enum(CALLBACK_KINDS).optional(),
            state: z.enum(CALLBACK_STATES).optional(),
          })
          .extend(pageQuery.shape),
      },
      responses: {
        200: json(callbackListSchema, "A page of the run's callbacks that match, by id"),
        ...publicErrors,
      },
    }),
    async (c) => {
      const { dag_id, dag_run_id } = c.req.valid('param');
      const filter = c.req.valid('query');
      const run = await deps.store.getDagRun({ dagId: dag_id, runId: dag_run_id });
      if (!run) throw new NotFoundError(`DAG run ${dag_id}/${dag_run_id} not found`);
      const matches = (callback: Callback) =>
        (filter.task_id === undefined || callback.taskId === filter.task_id) &&
        (filter.map_index === undefined || (callback.mapIndex ?? -1) === filter.map_index) &&
        (filter.kind === undefined || callback.kind === filter.kind) &&
        (filter.state === undefined || callback.state === filter.state);
      // Reads of a fixed size, filtered here; a page that fills up part way through a read ends
      // with a cursor right after its last callback, so the next page misses nothing.
      const callbacks: Callback[] = [];
      let cursor = filter.cursor;
      let scanned = 0;
      do {
        const read = await deps.store.listCallbacks(run, {
          limit: Math.min(CALLBACK_LIST_READ, CALLBACK_LIST_SCAN_MAX - scanned),
          ...(cursor ? { cursor } : {}),
        });
        scanned += read.items.length;
        cursor = read.nextCursor;
        for (const [index, callback] of read.items.entries()) {
          if (!matches(callback)) continue;
          callbacks.push(callback);
          if (callbacks.length === filter.limit) {
            if (index < read.items.length - 1) cursor = deps.store.callbacksCursorAfter(callback);
            break;
          }
        }
      } while (cursor !== undefined && callbacks.length < filter.limit && scanned < CALLBACK_LIST_SCAN_MAX);
      return c.json(
        {
          callbacks: callbacks.map(callbackToWire),
          total_entries: callbacks.length,
          ...(cursor === undefined ? {} : { next_cursor: cursor }),
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/callbacks/{callback_id}',
      tags: ['Callback'],
      request: { params: runParams.extend(callbackIdParams.shape) },
      responses: { 200: json(callbackSchema, 'The callback'), ...publicErrors },
    }),
    async (c) => {
      const { dag_id, dag_run_id, callback_id } = c.req.valid('param');
      const callback = await deps.store.getCallback({
        dagId: dag_id,
        runId: dag_run_id,
        callbackId: callback_id,
      });
      if (!callback) throw new NotFoundError(`Callback ${callback_id} of ${dag_id}/${dag_run_id} not found`);
      return c.json(callbackToWire(callback), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/callbacks/{callback_id}/logs/{attempt}',
      tags: ['Callback'],
      request: {
        params: runParams.extend(callbackIdParams.shape).extend({ attempt: z.coerce.number().int().min(1) }),
        query: logQuery,
      },
      responses: { 200: json(logSchema, 'The log of one attempt of the callback'), ...publicErrors },
    }),
    async (c) => {
      const { dag_id, dag_run_id, callback_id, attempt } = c.req.valid('param');
      const key = { dagId: dag_id, runId: dag_run_id, callbackId: callback_id };
      const callback = await deps.store.getCallback(key);
      if (!callback) throw new NotFoundError(`Callback ${callback_id} of ${dag_id}/${dag_run_id} not found`);
      if (attempt > Math.max(callback.attempt, 1)) {
        throw new NotFoundError(
          `Callback ${callback_id} has no attempt ${attempt} (its latest is ${callback.attempt})`,
        );
      }
      const log = (await deps.logs.read(callbackLogKey(key), attempt)) ?? '';
      return c.json(logPageOf(log, c.req.valid('query').token), 200);
    },
  );
}

export function callbackToWire(callback: Callback): z.infer<typeof callbackSchema> {
  return {
    callback_id: callback.callbackId,
    kind: callback.kind,
    dag_id: callback.dagId,
    dag_run_id: callback.runId,
    task_id: callback.taskId,
    map_index: callback.mapIndex,
    try_number: callback.tryNumber,
    name: callback.name,
    state: callback.state,
    attempt: callback.attempt,
    max_attempts: callback.maxAttempts,
    owed_at: callback.owedAt,
    queued_at: callback.queuedAt,
    start_date: callback.startDate,
    end_date: callback.endDate,
    place: callback.place ?? 'worker',
    hostname: callback.hostname,
    worker_id: callback.workerId,
    error_message: callback.errorMessage,
    owner_error: callback.ownerError,
    owner_error_type: callback.ownerErrorType,
  };
}

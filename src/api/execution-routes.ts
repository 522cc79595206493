import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { errorSchema, mapIndexQuery } from '#contracts/common.ts';
import {
  decodeTaskInstanceId,
  type FinishTaskBody,
  finishedSchema,
  finishTaskBody,
  heartbeatBody,
  okSchema,
  REFRESHED_TOKEN_HEADER,
  startedTaskSchema,
  startTaskBody,
  taskInstanceIdParams,
  xcomParams,
  xcomSchema,
} from '#contracts/execution-api.ts';
import type { TaskInstanceTokenClaims } from '#contracts/tokens.ts';
import { formatTaskInstanceKey, sameTaskInstance, type TaskInstance } from '#core/models.ts';
import { NotFoundError } from '#engine/errors.ts';
import type { TaskReport } from '#engine/task-lifecycle.ts';
import { InvalidTokenError, type VerifiedToken } from '#engine/tokens.ts';
import { readCurrentXCom } from '#engine/xcoms.ts';
import type { ApiDeps } from './app.ts';
import { bearerTokenOf } from './auth.ts';
import { ForbiddenError } from './errors.ts';
import { jsonBody as body, jsonContent as json } from './route-docs.ts';

const errors = {
  400: json(
    errorSchema,
    'The request breaks a rule (an id with `#`, a branch choice that is not downstream)',
  ),
  401: json(errorSchema, 'Missing, invalid or expired task token'),
  403: json(errorSchema, 'The token is for another task instance, try or run, or the XCom is not upstream'),
  404: json(errorSchema, 'Not found'),
  409: json(errorSchema, 'The task instance is not in the expected state or try (a stale or late call)'),
  413: json(errorSchema, 'A log chunk or an XCom over its limit; detail names the setting'),
  422: json(errorSchema, 'Invalid request'),
};
const security = [{ taskToken: [] }];
const refreshedTokenHeader = {
  [REFRESHED_TOKEN_HEADER]: {
    description: 'A fresh task token for this try; the worker uses it for every later call',
    schema: { type: 'string' as const },
  },
};

/**
 * The Execution API: what workers (and, later, the triggerer) call instead of touching the store.
 * Every call carries the task-scoped token of its workload; the token names one TI and one try.
 */
export function registerExecutionRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  app.openAPIRegistry.registerComponent('securitySchemes', 'taskToken', { type: 'http', scheme: 'bearer' });

  const verify = async (c: Context): Promise<VerifiedToken & { claims: TaskInstanceTokenClaims }> => {
    const token = bearerTokenOf(c.req.header('authorization'));
    if (token === undefined) throw new InvalidTokenError('Missing task token (Authorization: Bearer …)');
    const verified = await deps.tokens.check(token, deps.now());
    const { claims } = verified;
    if (claims.kind !== 'task_instance')
      throw new ForbiddenError(`A ${claims.kind} token cannot call the task instance routes`);
    return { ...verified, claims };
  };
  /** The TI named in the path, which must be the one the token grants. */
  const authorize = async (c: Context, tiId: string) => {
    const verified = await verify(c);
    const key = decodeTaskInstanceId(tiId);
    if (!key) throw new NotFoundError(`Malformed task instance id "${tiId}"`);
    if (!sameTaskInstance(key, verified.claims)) {
      throw new ForbiddenError(
        `This token grants ${formatTaskInstanceKey(verified.claims)}, not ${formatTaskInstanceKey(key)}`,
      );
    }
    return verified;
  };
  const refreshed = (claims: TaskInstanceTokenClaims, nowMs: number) => deps.tokens.issue(claims, nowMs);
  /**
   * `log_accepted: false` for a call whose chunk the log store failed to write. The call was
   * recorded before its chunk was appended, so the failure is logged and counted here, never
   * answered as an error: a 5xx would make the worker take the API for unreachable and stop a
   * healthy task.
   */
  const logAcceptance = (
    claims: TaskInstanceTokenClaims,
    call: 'heartbeat' | 'report',
    log: { seq: number } | undefined,
    logError: unknown,
  ): { log_accepted?: false } => {
    if (!log || logError === undefined) return {};
    deps.metrics.increment('api.log_writes_failed');
    deps.log.error(
      `The log store failed to write chunk ${log.seq} of a recorded ${call}; the chunk is lost`,
      {
        ti: formatTaskInstanceKey(claims),
        tryNumber: claims.tryNumber,
        error: logError,
      },
    );
    return { log_accepted: false };
  };

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/execution/task-instances/{ti_id}/run',
      tags: ['Execution'],
      security,
      request: { params: taskInstanceIdParams, body: body(startTaskBody) },
      responses: {
        200: {
          ...json(startedTaskSchema, 'Started: what the worker needs to run the task'),
          headers: refreshedTokenHeader,
        },
        ...errors,
      },
    }),
    async (c) => {
      const { claims } = await authorize(c, c.req.valid('param').ti_id);
      const request = c.req.valid('json');
      const { ti, run, dag, task } = await deps.lifecycle.start(claims, claims.tryNumber, {
        hostname: request.hostname,
        workerId: request.worker_id,
        startId: request.start_id,
      });
      // The try's token lives from its start, whatever time it spent queued, and names the run's
      // DAG version (a token from an older scheduler may not).
      c.header(
        REFRESHED_TOKEN_HEADER,
        await refreshed({ ...claims, dagVersion: run.dagVersion }, deps.now()),
      );
      return c.json(
        {
          dag_id: ti.dagId,
          dag_run_id: ti.runId,
          task_id: ti.taskId,
          map_index: ti.mapIndex,
          try_number: ti.tryNumber,
          max_tries: ti.maxTries,
          logical_date: run.logicalDate,
          data_interval_start: run.dataIntervalStart,
          data_interval_end: run.dataIntervalEnd,
          conf: run.conf,
          params: { ...dag.params, ...run.conf },
          fileloc: dag.fileloc,
          dag_version: run.dagVersion,
          args: task.args.map((arg) => ({ task_id: arg.taskId, key: arg.key })),
          execution_timeout_ms: remainingExecutionTimeoutMs(ti, task.executionTimeoutMs, deps.now()),
          memory_limit_mb: task.memoryLimitMb ?? null,
          xcom_max_bytes: deps.settings.xcomMaxBytes,
          log_chunk_max_bytes: deps.settings.logChunkMaxBytes,
          log_max_chunks: deps.lifecycle.logMaxChunks,
          resume: resumeOf(ti),
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/execution/task-instances/{ti_id}/heartbeat',
      tags: ['Execution'],
      security,
      request: { params: taskInstanceIdParams, body: body(heartbeatBody) },
      responses: {
        200: {
          ...json(
            okSchema,
            `Still running; carries ${REFRESHED_TOKEN_HEADER} once half the token's life is gone. \`log_accepted\` is false when the heartbeat was recorded but its log chunk could not be written`,
          ),
          headers: refreshedTokenHeader,
        },
        ...errors,
      },
    }),
    async (c) => {
      const { claims, issuedAtMs, expiresAtMs } = await authorize(c, c.req.valid('param').ti_id);
      const { log } = c.req.valid('json');
      const { logError } = await deps.lifecycle.heartbeat(claims, claims.tryNumber, log);
      const nowMs = deps.now();
      if (expiresAtMs - nowMs < (expiresAtMs - issuedAtMs) / 2)
        c.header(REFRESHED_TOKEN_HEADER, await refreshed(claims, nowMs));
      return c.json({ ok: true as const, ...logAcceptance(claims, 'heartbeat', log, logError) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/execution/task-instances/{ti_id}/state',
      tags: ['Execution'],
      security,
      request: { params: taskInstanceIdParams, body: body(finishTaskBody) },
      responses: {
        200: json(
          finishedSchema,
          'Recorded, or (`duplicate`) recorded before by the same report; `log_accepted` is false when its log chunk could not be written',
        ),
        ...errors,
      },
    }),
    async (c) => {
      const { claims } = await authorize(c, c.req.valid('param').ti_id);
      const request = c.req.valid('json');
      const { duplicate, logError } = await deps.lifecycle.finish(
        claims,
        claims.tryNumber,
        toReport(request),
        {
          reportId: request.report_id,
          log: request.log,
        },
      );
      return c.json(
        {
          ok: true as const,
          ...(duplicate ? { duplicate: true as const } : {}),
          ...logAcceptance(claims, 'report', request.log, logError),
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/execution/xcoms/{dag_id}/{dag_run_id}/{task_id}/{key}',
      tags: ['Execution'],
      security,
      request: { params: xcomParams, query: mapIndexQuery },
      responses: { 200: json(xcomSchema, 'The XCom value as stored (JSON text)'), ...errors },
    }),
    async (c) => {
      const { claims } = await verify(c);
      const { dag_id, dag_run_id, task_id, key } = c.req.valid('param');
      if (dag_id !== claims.dagId || dag_run_id !== claims.runId) {
        throw new ForbiddenError(`This token grants access to run ${claims.dagId}/${claims.runId} only`);
      }
      if (!(await deps.lifecycle.upstreamTaskIds(claims)).has(task_id)) {
        throw new ForbiddenError(
          `Task ${claims.taskId} may read the XComs of its upstream tasks only, and ${task_id} is not upstream of it`,
        );
      }
      const mapIndex = c.req.valid('query').map_index;
      const value = await readCurrentXCom(deps.store, {
        dagId: dag_id,
        runId: dag_run_id,
        taskId: task_id,
        mapIndex,
        key,
      });
      if (value === undefined)
        throw new NotFoundError(`XCom ${key} of ${dag_id}/${dag_run_id}/${task_id} not found`);
      return c.json({ key, value }, 200);
    },
  );
}

/** A resumed try's method, kwargs and event; null for a try that starts from `execute`. */
function resumeOf(ti: TaskInstance) {
  if (typeof ti.nextMethod !== 'string' || typeof ti.nextEvent !== 'string') return null;
  return {
    method: ti.nextMethod,
    kwargs: ti.nextKwargs ?? '{}',
    event: ti.nextEvent,
    deferral_seq: ti.deferralSeq ?? 1,
  };
}

/** The execution timeout counts from the try's first start, across its deferrals (as in Airflow). */
function remainingExecutionTimeoutMs(
  ti: TaskInstance,
  timeoutMs: number | null,
  nowMs: number,
): number | null {
  if (timeoutMs === null || typeof ti.tryStartedAt !== 'string') return timeoutMs;
  return Math.max(1, timeoutMs - (nowMs - Date.parse(ti.tryStartedAt)));
}

function toReport(request: FinishTaskBody): TaskReport {
  switch (request.state) {
    case 'success':
      return { state: 'success', xcom: request.xcom, followTaskIds: request.follow_task_ids };
    case 'skipped':
      return { state: 'skipped', reason: request.reason };
    case 'failed':
      return {
        state: 'failed',
        errorMessage: request.error_message,
        retryable: request.retryable,
        ...(request.error_type ? { errorType: request.error_type } : {}),
      };
    case 'handed_back':
      return { state: 'handed_back' };
    case 'deferred':
      return {
        state: 'deferred',
        deferral: {
          trigger: request.deferral.trigger,
          nextMethod: request.deferral.next_method,
          nextKwargs: request.deferral.next_kwargs,
          timeoutMs: request.deferral.timeout_ms,
        },
      };
  }
}

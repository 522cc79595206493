import { createRoute, type OpenAPIHono, type z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { formatTaskInstanceKey, sameTaskInstance, type TaskInstanceKey } from '#core/models.ts';
import { NotFoundError } from '#engine/errors.ts';
import type { TaskReport } from '#engine/task-lifecycle.ts';
import { InvalidTokenError, type TaskTokenClaims } from '#engine/tokens.ts';
import type { ApiDeps } from './app.ts';
import { ForbiddenError } from './errors.ts';
import { jsonBody as body, jsonContent as json } from './route-docs.ts';
import {
  errorSchema,
  finishTaskBody,
  heartbeatBody,
  mapIndexQuery,
  okSchema,
  startedTaskSchema,
  startTaskBody,
  taskInstanceIdParams,
  xcomParams,
  xcomSchema,
} from './schemas.ts';
import { decodeTaskInstanceId } from './serializers.ts';

const errors = {
  401: json(errorSchema, 'Missing, invalid or expired task token'),
  403: json(errorSchema, 'The token is for another task instance or try'),
  404: json(errorSchema, 'Not found'),
  409: json(errorSchema, 'The task instance is not in the expected state (a stale or duplicated report)'),
  422: json(errorSchema, 'Invalid request'),
};
const security = [{ taskToken: [] }];

/**
 * The Execution API: what workers (and, later, the triggerer) call instead of touching the store.
 * Every call carries the task-scoped token of its workload; the token names one TI and one try.
 */
export function registerExecutionRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  app.openAPIRegistry.registerComponent('securitySchemes', 'taskToken', { type: 'http', scheme: 'bearer' });

  const claimsOf = async (c: Context): Promise<TaskTokenClaims> => {
    const header = c.req.header('authorization');
    if (!header?.startsWith('Bearer '))
      throw new InvalidTokenError('Missing task token (Authorization: Bearer …)');
    return deps.tokens.check(header.slice('Bearer '.length));
  };
  /** The TI named in the path, which must be the one the token grants. */
  const authorizedKey = async (c: Context, tiId: string): Promise<TaskTokenClaims> => {
    const claims = await claimsOf(c);
    const key = decodeTaskInstanceId(tiId);
    if (!key) throw new NotFoundError(`Malformed task instance id "${tiId}"`);
    if (!sameTaskInstance(key, claims)) {
      throw new ForbiddenError(
        `This token grants ${formatTaskInstanceKey(claims)}, not ${formatTaskInstanceKey(key)}`,
      );
    }
    return claims;
  };
  const appendLogs = async (key: TaskInstanceKey, tryNumber: number, logs: string | undefined) => {
    if (logs) await deps.logs.append(key, tryNumber, logs);
  };

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/execution/task-instances/{ti_id}/run',
      tags: ['Execution'],
      security,
      request: { params: taskInstanceIdParams, body: body(startTaskBody) },
      responses: {
        200: json(startedTaskSchema, 'Started: what the worker needs to run the task'),
        ...errors,
      },
    }),
    async (c) => {
      const claims = await authorizedKey(c, c.req.valid('param').ti_id);
      const request = c.req.valid('json');
      const { ti, run, dag, task } = await deps.lifecycle.start(claims, claims.tryNumber, {
        hostname: request.hostname,
        workerId: request.worker_id,
      });
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
          execution_timeout_ms: task.executionTimeoutMs,
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
      responses: { 200: json(okSchema, 'Still running'), ...errors },
    }),
    async (c) => {
      const claims = await authorizedKey(c, c.req.valid('param').ti_id);
      await appendLogs(claims, claims.tryNumber, c.req.valid('json').logs);
      await deps.lifecycle.heartbeat(claims, claims.tryNumber);
      return c.json({ ok: true as const }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/execution/task-instances/{ti_id}/state',
      tags: ['Execution'],
      security,
      request: { params: taskInstanceIdParams, body: body(finishTaskBody) },
      responses: { 200: json(okSchema, 'Recorded'), 413: json(errorSchema, 'XCom too large'), ...errors },
    }),
    async (c) => {
      const claims = await authorizedKey(c, c.req.valid('param').ti_id);
      const request = c.req.valid('json');
      await appendLogs(claims, claims.tryNumber, request.logs);
      await deps.lifecycle.finish(claims, claims.tryNumber, toReport(request));
      return c.json({ ok: true as const }, 200);
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
      const claims = await claimsOf(c);
      const { dag_id, dag_run_id, task_id, key } = c.req.valid('param');
      if (dag_id !== claims.dagId || dag_run_id !== claims.runId) {
        throw new ForbiddenError(`This token grants access to run ${claims.dagId}/${claims.runId} only`);
      }
      const mapIndex = c.req.valid('query').map_index;
      const value = await deps.store.getXCom({
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

function toReport(request: z.infer<typeof finishTaskBody>): TaskReport {
  switch (request.state) {
    case 'success':
      return { state: 'success', xcom: request.xcom, followTaskIds: request.follow_task_ids };
    case 'skipped':
      return { state: 'skipped', reason: request.reason };
    case 'failed':
      return { state: 'failed', errorMessage: request.error_message, retryable: request.retryable };
    case 'handed_back':
      return { state: 'handed_back' };
  }
}

import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { errorSchema, mapIndexQuery } from '#contracts/common.ts';
import {
  clearTaskInstancesBody,
  dagIdParams,
  logParams,
  logQuery,
  logSchema,
  runParams,
  taskInstanceCollectionSchema,
  taskInstanceSchema,
  taskParams,
  xcomEntryParams,
  xcomEntrySchema,
} from '#contracts/public-api.ts';
import { clearTaskInstances } from '#engine/clear.ts';
import { NotFoundError } from '#engine/errors.ts';
import { readCurrentXCom } from '#engine/xcoms.ts';
import type { ApiDeps } from './app.ts';
import { logPageOf } from './log-pages.ts';
import { jsonContent as json, publicErrors, taskInstanceKeyFrom } from './route-docs.ts';
import { taskInstanceToWire } from './serializers.ts';

export function registerTaskRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  const { store } = deps;

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances',
      tags: ['TaskInstance'],
      request: { params: runParams },
      responses: { 200: json(taskInstanceCollectionSchema, 'Task instances of the run'), ...publicErrors },
    }),
    async (c) => {
      const { dag_id, dag_run_id } = c.req.valid('param');
      const snapshot = await store.getRunSnapshot({ dagId: dag_id, runId: dag_run_id });
      if (!snapshot) throw new NotFoundError(`DAG run ${dag_id}/${dag_run_id} not found`);
      return c.json(
        {
          task_instances: snapshot.taskInstances.map(taskInstanceToWire),
          total_entries: snapshot.taskInstances.length,
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}',
      tags: ['TaskInstance'],
      request: { params: taskParams, query: mapIndexQuery },
      responses: { 200: json(taskInstanceSchema, 'The task instance'), ...publicErrors },
    }),
    async (c) => {
      const { dag_id, dag_run_id, task_id } = c.req.valid('param');
      const key = taskInstanceKeyFrom(c.req.valid('param'), c.req.valid('query'));
      const ti = await store.getTaskInstance(key);
      if (!ti) throw new NotFoundError(`Task instance ${dag_id}/${dag_run_id}/${task_id} not found`);
      return c.json(taskInstanceToWire(ti), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}',
      tags: ['TaskInstance'],
      request: { params: logParams, query: logQuery },
      responses: {
        200: json(logSchema, 'One page of the log of one try (at most 768 KiB; follow `continuation_token`)'),
        ...publicErrors,
      },
    }),
    async (c) => {
      const { dag_id, dag_run_id, task_id, try_number } = c.req.valid('param');
      const key = taskInstanceKeyFrom(c.req.valid('param'), c.req.valid('query'));
      const ti = await store.getTaskInstance(key);
      if (!ti) throw new NotFoundError(`Task instance ${dag_id}/${dag_run_id}/${task_id} not found`);
      if (try_number > Math.max(ti.tryNumber, 1)) {
        throw new NotFoundError(
          `Task instance ${task_id} has no try ${try_number} (its latest try is ${ti.tryNumber})`,
        );
      }
      const log = (await deps.logs.read(key, try_number)) ?? '';
      return c.json(logPageOf(log, c.req.valid('query').token), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}',
      tags: ['XCom'],
      request: { params: xcomEntryParams, query: mapIndexQuery },
      responses: { 200: json(xcomEntrySchema, 'One XCom of a task instance'), ...publicErrors },
    }),
    async (c) => {
      const { dag_id, dag_run_id, task_id, xcom_key } = c.req.valid('param');
      const mapIndex = c.req.valid('query').map_index;
      const text = await readCurrentXCom(store, {
        dagId: dag_id,
        runId: dag_run_id,
        taskId: task_id,
        mapIndex,
        key: xcom_key,
      });
      if (text === undefined) {
        throw new NotFoundError(
          `XCom ${xcom_key} of task instance ${dag_id}/${dag_run_id}/${task_id}${mapIndex >= 0 ? `[${mapIndex}]` : ''} not found`,
        );
      }
      return c.json(
        { key: xcom_key, value: parseStoredJson(text), dag_id, dag_run_id, task_id, map_index: mapIndex },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v2/dags/{dag_id}/clearTaskInstances',
      tags: ['TaskInstance'],
      request: {
        params: dagIdParams,
        body: { content: { 'application/json': { schema: clearTaskInstancesBody } }, required: true },
      },
      responses: {
        200: json(
          taskInstanceCollectionSchema,
          'The cleared (or, with dry_run, to be cleared) task instances',
        ),
        409: json(errorSchema, 'Some task instances are still queued or running'),
        ...publicErrors,
      },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const cleared = await clearTaskInstances(deps, {
        dagId: c.req.valid('param').dag_id,
        runId: body.dag_run_id,
        taskIds: body.task_ids,
        includeDownstream: body.include_downstream,
        onlyFailed: body.only_failed,
        dryRun: body.dry_run,
      });
      return c.json({ task_instances: cleared.map(taskInstanceToWire), total_entries: cleared.length }, 200);
    },
  );
}

/**
 * Workers store XComs as JSON text, which the API keeps as bytes; this public read path parses
 * it only to return it. Text that is not JSON is returned as is rather than failing the read.
 */
function parseStoredJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

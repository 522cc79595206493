import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { errorSchema } from '#contracts/common.ts';
import {
  clearRunBody,
  dagCollectionSchema,
  dagDetailSchema,
  dagIdParams,
  dagRunCollectionSchema,
  dagRunSchema,
  dagSchema,
  pageQuery,
  patchDagBody,
  runParams,
  taskInstanceCollectionSchema,
  triggerRunBody,
} from '#contracts/public-api.ts';
import { clearTaskInstances } from '#engine/clear.ts';
import { NotFoundError } from '#engine/errors.ts';
import { createDagRun } from '#engine/runs.ts';
import type { ApiDeps } from './app.ts';
import { jsonContent as json, publicErrors } from './route-docs.ts';
import {
  dagDetailToWire,
  dagRunToWire,
  dagToWire,
  importErrorToWire,
  taskInstanceToWire,
} from './serializers.ts';

export function registerDagRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  const { store } = deps;

  const getDagRecord = async (dagId: string) => {
    const record = await store.getDag(dagId);
    if (!record) throw new NotFoundError(`DAG ${dagId} not found`);
    return record;
  };

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/dags',
      tags: ['DAG'],
      request: { query: pageQuery },
      responses: {
        200: json(dagCollectionSchema, 'DAGs and DAG files that failed to load'),
        ...publicErrors,
      },
    }),
    async (c) => {
      const { limit, cursor } = c.req.valid('query');
      const [page, total, importErrors] = await Promise.all([
        store.listDags({ limit, cursor }),
        store.countDags(),
        store.listImportErrors(),
      ]);
      return c.json(
        {
          dags: page.items.map(dagToWire),
          total_entries: total,
          ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
          import_errors: importErrors.map(importErrorToWire),
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/dags/{dag_id}',
      tags: ['DAG'],
      request: { params: dagIdParams },
      responses: { 200: json(dagDetailSchema, 'The DAG with its tasks'), ...publicErrors },
    }),
    async (c) => {
      const record = await getDagRecord(c.req.valid('param').dag_id);
      const dag = await deps.dags.get(record.dagId, record.versionHash);
      return c.json(dagDetailToWire(record, dag), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/api/v2/dags/{dag_id}',
      tags: ['DAG'],
      request: {
        params: dagIdParams,
        body: { content: { 'application/json': { schema: patchDagBody } }, required: true },
      },
      responses: { 200: json(dagSchema, 'The updated DAG'), ...publicErrors },
    }),
    async (c) => {
      const record = await getDagRecord(c.req.valid('param').dag_id);
      const updated = await store.updateDag(record.dagId, { isPaused: c.req.valid('json').is_paused });
      return c.json(dagToWire(updated), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v2/dags/{dag_id}/dagRuns',
      tags: ['DagRun'],
      request: { params: dagIdParams, body: { content: { 'application/json': { schema: triggerRunBody } } } },
      responses: {
        201: json(dagRunSchema, 'The new run, queued'),
        409: json(errorSchema, 'A run with this id exists'),
        413: json(errorSchema, 'conf too large'),
        ...publicErrors,
      },
    }),
    async (c) => {
      const record = await getDagRecord(c.req.valid('param').dag_id);
      const body = c.req.valid('json') ?? {};
      const dag = await deps.dags.get(record.dagId, record.versionHash);
      const now = new Date(deps.now()).toISOString();
      const logicalDate = body.logical_date ? new Date(body.logical_date).toISOString() : now;
      const run = await createDagRun(store, {
        dag,
        versionHash: record.versionHash,
        runType: 'manual',
        logicalDate,
        runId: body.dag_run_id,
        conf: body.conf,
        dataIntervalStart: logicalDate,
        dataIntervalEnd: logicalDate,
        now,
        confMaxBytes: deps.settings.confMaxBytes,
      });
      await deps.notifier.notify(run);
      return c.json(dagRunToWire(run), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/dags/{dag_id}/dagRuns',
      tags: ['DagRun'],
      request: { params: dagIdParams, query: pageQuery },
      responses: { 200: json(dagRunCollectionSchema, 'Runs, newest logical date first'), ...publicErrors },
    }),
    async (c) => {
      const { dag_id } = c.req.valid('param');
      await getDagRecord(dag_id);
      const [page, total] = await Promise.all([
        store.listDagRuns(dag_id, c.req.valid('query')),
        store.countDagRuns(dag_id),
      ]);
      return c.json(
        {
          dag_runs: page.items.map(dagRunToWire),
          total_entries: total,
          ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}',
      tags: ['DagRun'],
      request: { params: runParams },
      responses: { 200: json(dagRunSchema, 'The run'), ...publicErrors },
    }),
    async (c) => {
      const { dag_id, dag_run_id } = c.req.valid('param');
      const run = await store.getDagRun({ dagId: dag_id, runId: dag_run_id });
      if (!run) throw new NotFoundError(`DAG run ${dag_id}/${dag_run_id} not found`);
      return c.json(dagRunToWire(run), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear',
      tags: ['DagRun'],
      request: { params: runParams, body: { content: { 'application/json': { schema: clearRunBody } } } },
      responses: {
        200: json(taskInstanceCollectionSchema, 'The cleared task instances'),
        409: json(errorSchema, 'Some task instances are still queued or running'),
        ...publicErrors,
      },
    }),
    async (c) => {
      const { dag_id, dag_run_id } = c.req.valid('param');
      const body = c.req.valid('json') ?? { only_failed: false, dry_run: false };
      const cleared = await clearTaskInstances(deps, {
        dagId: dag_id,
        runId: dag_run_id,
        taskIds: [],
        includeDownstream: false,
        onlyFailed: body.only_failed,
        dryRun: body.dry_run,
      });
      return c.json({ task_instances: cleared.map(taskInstanceToWire), total_entries: cleared.length }, 200);
    },
  );
}

import { createRoute, OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Settings } from '#config/settings.ts';
import { EXECUTION_API_VERSION_HEADER, EXECUTION_API_VERSIONS } from '#contracts/execution-api.ts';
import type { CallbackService } from '#engine/callbacks.ts';
import type { DagVersionCache } from '#engine/dag-cache.ts';
import { NotReadyError } from '#engine/errors.ts';
import type { Logger } from '#engine/logger.ts';
import type { SchedulingNotifier } from '#engine/notifier.ts';
import type { TaskLifecycle } from '#engine/task-lifecycle.ts';
import type { TaskTokenSigner } from '#engine/tokens.ts';
import type { TriggerLifecycle } from '#engine/triggers.ts';
import type { LogStore } from '#logs/port.ts';
import type { MetricsRegistry } from '#metrics/registry.ts';
import { isStoreUnavailableError, type StoreHealth } from '#store/availability.ts';
import type { Store } from '#store/port.ts';
import { bearerMatches, idWithHashIn } from './auth.ts';
import { registerCallbackRoutes } from './callback-routes.ts';
import { registerDagRoutes } from './dag-routes.ts';
import { errorAnswer } from './errors.ts';
import { registerExecutionBatchRoute } from './execution-batch-routes.ts';
import { registerExecutionRoutes } from './execution-routes.ts';
import { unknownQueryParameters } from './query-check.ts';
import {
  API_TOKEN_SCHEME,
  healthSchema,
  jsonContent,
  metricsSchema,
  PUBLIC_PATHS,
  publicErrors,
} from './route-docs.ts';
import { registerTaskRoutes } from './task-routes.ts';
import { registerTriggerListRoutes } from './trigger-list-routes.ts';
import { registerTriggerRoutes } from './trigger-routes.ts';

export interface ApiDeps {
  store: Store;
  dags: DagVersionCache;
  lifecycle: TaskLifecycle;
  triggers: TriggerLifecycle;
  callbacks: CallbackService;
  notifier: SchedulingNotifier;
  tokens: TaskTokenSigner;
  logs: LogStore;
  metrics: MetricsRegistry;
  settings: Pick<
    Settings,
    | 'confMaxBytes'
    | 'requestMaxBytes'
    | 'executionBatchMaxCalls'
    | 'xcomMaxBytes'
    | 'logChunkMaxBytes'
    | 'logMaxBytes'
    | 'triggererHeartbeatIntervalMs'
    | 'triggererHeartbeatTimeoutMs'
  >;
  /** Bearer token of the public API. */
  apiToken: string;
  log: Logger;
  now: () => number;
  /**
   * What standalone's store supervisor knows: while it says unhealthy the API answers 503 at
   * once. Without it, the health route probes the store.
   */
  storeHealth?: () => StoreHealth;
}

/** Seconds a client should wait before retrying a 503 (the store restarts within seconds). */
const STORE_RETRY_AFTER_SECONDS = 1;
/**
 * The health route's own deadline for its store probe: a store that is up but hung (a stopped
 * process, a stalled disk) would otherwise hold the probe for as long as the client's retries.
 */
export const HEALTH_PROBE_TIMEOUT_MS = 3_000;

export type ApiApp = OpenAPIHono;

/** The HTTP API: public REST API under `/api/v2`, Execution API under `/execution`. */
export function createApi(deps: ApiDeps): ApiApp {
  const app = new OpenAPIHono({
    defaultHook: (result, c) => {
      if (!result.success) {
        const problems = result.error.issues
          .map((issue) => `${issue.path.length ? issue.path.join('.') : 'body'}: ${issue.message}`)
          .join('; ');
        return c.json({ detail: `Invalid request: ${problems}`, status: 422 }, 422);
      }
    },
  });

  app.use(
    '*',
    bodyLimit({
      maxSize: deps.settings.requestMaxBytes,
      onError: (c) =>
        c.json(
          {
            detail: `Request body is larger than ${deps.settings.requestMaxBytes} bytes (UPDRAFT_REQUEST_MAX_BYTES)`,
            status: 413,
          },
          413,
        ),
    }),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/monitor/health',
      tags: ['Monitor'],
      responses: {
        200: jsonContent(healthSchema, 'Every part works'),
        503: jsonContent(healthSchema, 'Degraded: a part does not work (`metadatabase.detail` says why)'),
      },
    }),
    async (c) => {
      const metadatabase = await storeHealthOf(deps);
      if (metadatabase.status === 'healthy') return c.json({ status: 'healthy' as const, metadatabase }, 200);
      return c.json({ status: 'degraded' as const, metadatabase }, 503);
    },
  );
  app.use('/api/v2/*', async (c, next) => {
    // The API's own description is public, like Airflow's; everything else needs the token.
    if (PUBLIC_PATHS.has(c.req.path)) return next();
    if (!bearerMatches(c.req.header('authorization'), deps.apiToken)) {
      return c.json({ detail: 'Missing or invalid bearer token', status: 401 }, 401, {
        'WWW-Authenticate': 'Bearer',
      });
    }
    await next();
  });
  app.use('/execution/*', async (c, next) => {
    const requested = c.req.header(EXECUTION_API_VERSION_HEADER);
    if (requested && !(EXECUTION_API_VERSIONS as readonly string[]).includes(requested)) {
      return c.json(
        {
          detail: `Unsupported ${EXECUTION_API_VERSION_HEADER} "${requested}"; this server supports ${EXECUTION_API_VERSIONS.join(', ')}`,
          status: 400,
        },
        400,
      );
    }
    c.header(EXECUTION_API_VERSION_HEADER, requested ?? EXECUTION_API_VERSIONS.at(-1));
    await next();
  });

  // While the store is known to be down every call would fail after the client's retries: say
  // so at once, with a status that tells callers (the worker's reports too) to try again.
  for (const prefix of ['/api/v2/*', '/execution/*']) {
    app.use(prefix, async (c, next) => {
      const health = deps.storeHealth?.();
      if (health?.status === 'unhealthy' && !PUBLIC_PATHS.has(c.req.path)) {
        return storeUnavailable(c, health.detail);
      }
      await next();
    });
  }
  app.use('/api/v2/*', async (c, next) => {
    const unknown = unknownQueryParameters(app, c.req.method, c.req.path, Object.keys(c.req.queries()));
    if (unknown) return c.json({ detail: unknown, status: 400 }, 400);
    await next();
  });

  // After authentication: a caller without a token learns nothing about ids.
  for (const prefix of ['/api/v2/*', '/execution/xcoms/*']) {
    app.use(prefix, async (c, next) => {
      const found = idWithHashIn(c.req.path);
      if (found) {
        return c.json(
          { detail: `${found.kind} "${found.id}" is not valid: ids never contain '#'`, status: 400 },
          400,
        );
      }
      await next();
    });
  }

  registerDagRoutes(app, deps);
  registerTaskRoutes(app, deps);
  registerTriggerListRoutes(app, deps);
  registerExecutionRoutes(app, deps);
  registerExecutionBatchRoute(app, deps);
  registerCallbackRoutes(app, deps);
  registerTriggerRoutes(app, deps);

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v2/metrics',
      tags: ['Monitor'],
      responses: { 200: jsonContent(metricsSchema, 'Gauges and counters of this server'), ...publicErrors },
    }),
    async (c) => c.json(await deps.metrics.snapshot(), 200),
  );
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/api/v2/openapi.json',
    tags: ['Monitor'],
    responses: { 200: { description: 'This OpenAPI 3.1 document' } },
  });
  let document: unknown;
  app.get('/api/v2/openapi.json', (c) => {
    document ??= openApiDocument(app);
    return c.json(document);
  });
  app.notFound((c) => c.json({ detail: `No route for ${c.req.method} ${c.req.path}`, status: 404 }, 404));
  app.onError((error, c) => errorResponse(error, c, deps.log));
  return app;
}

/**
 * The OpenAPI document with its security: the API token on `/api/v2` (health and this document
 * excepted), the task token (declared by the Execution API's routes) on `/execution`.
 */
function openApiDocument(app: OpenAPIHono) {
  app.openAPIRegistry.registerComponent('securitySchemes', 'apiToken', API_TOKEN_SCHEME);
  const document = app.getOpenAPI31Document({
    openapi: '3.1.0',
    info: { title: 'Updraft API', version: '2', description: 'Public REST API and Execution API of Updraft' },
  });
  for (const [path, item] of Object.entries(document.paths ?? {})) {
    for (const method of ['get', 'put', 'post', 'patch', 'delete'] as const) {
      const operation = item[method];
      if (!operation) continue;
      if (PUBLIC_PATHS.has(path)) operation.security = [];
      else if (path.startsWith('/execution/')) operation.security ??= [{ taskToken: [] }];
      else operation.security = [{ apiToken: [] }];
    }
  }
  return document;
}

async function storeHealthOf(deps: ApiDeps): Promise<StoreHealth> {
  const known = deps.storeHealth?.();
  if (known && known.status !== 'healthy') return known;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), HEALTH_PROBE_TIMEOUT_MS);
  });
  const probe = deps.store.getDag('updraft_health_probe');
  try {
    const answer = await Promise.race([probe, deadline]);
    if (answer === 'late') {
      // The probe goes on until the client's own timeouts end it; its outcome no longer matters.
      probe.catch(() => {});
      deps.log.warn(`Health check: the store did not answer within ${HEALTH_PROBE_TIMEOUT_MS} ms`);
      return {
        status: 'unhealthy',
        detail: `The store does not answer within ${HEALTH_PROBE_TIMEOUT_MS} ms`,
      };
    }
    return { status: 'healthy' };
  } catch (error) {
    deps.log.warn('Health check: the store did not answer', { error });
    return {
      status: 'unhealthy',
      detail: isStoreUnavailableError(error)
        ? 'The store does not answer'
        : 'The store answered with an error',
    };
  } finally {
    clearTimeout(timer);
  }
}

function storeUnavailable(c: Context, detail: string) {
  return c.json({ detail: `The store is unavailable: ${detail}. Retry shortly`, status: 503 }, 503, {
    'Retry-After': String(STORE_RETRY_AFTER_SECONDS),
  });
}

function errorResponse(error: Error, c: Context, log: Logger) {
  if (isStoreUnavailableError(error)) {
    // The cause is logged once by whoever watches the store; not once per request.
    log.debug('API request found the store unavailable', { method: c.req.method, path: c.req.path, error });
    return storeUnavailable(c, 'it did not answer');
  }
  if (error instanceof NotReadyError) {
    return c.json({ detail: error.message, status: 503 }, 503, { 'Retry-After': '1' });
  }
  const { status, detail } = errorAnswer(error, c, log);
  return c.json({ detail, status }, status);
}

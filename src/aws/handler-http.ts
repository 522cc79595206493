import { randomBytes } from 'node:crypto';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { Hono } from 'hono';
import { handle } from 'hono/aws-lambda';
import type { ApiApp } from '#api/app.ts';
import { bearerTokenOf } from '#api/auth.ts';
import { createApiStack } from '#api/stack.ts';
import { EXECUTION_BATCH_PATH } from '#contracts/execution-api.ts';
import type { SchedulingNotifier } from '#engine/notifier.ts';
import { type ExecutionKeys, keyIdOf, keyringEntries, type TaskTokenSigner } from '#engine/tokens.ts';
import { type AwsDefaults, type HandlerDeps, LazyDeps } from './handler-deps.ts';
import {
  createObservability,
  EmfMetricsRegistry,
  engineLoggerOf,
  type Observability,
  withObservability,
} from './handler-observability.ts';
import { restoreTaskToken } from './handler-signed-fetch.ts';

/**
 * The two HTTP functions over the one router of `src/api` (the same one standalone serves):
 * - `public`: the REST API under `/api/v2`, behind API Gateway (HTTP API, payload v2), checked
 *   against the bearer token in Secrets Manager.
 * - `execution`: the Execution API under `/execution`, behind the function URL (IAM auth), for
 *   workers and the triggerer, each call on a task-scoped token.
 * Each serves only its own half, so each holds only its own secret: the other half's secret is
 * a random value of this instance that no caller can know, and its routes answer 404 anyway.
 */
export type HttpFunction = 'public' | 'execution';

/** What API Gateway's payload v2 and function URLs both send. */
export type HttpEvent = APIGatewayProxyEventV2;

const PATH_PREFIX: Record<HttpFunction, string> = { public: '/api/v2/', execution: '/execution/' };

/**
 * The least time between two reads of the keyring made because a token named a key id the
 * instance does not hold: a key put first in a rotation verifies at once (not after the cache's
 * time to live), and tokens with made-up key ids cost at most one Secrets Manager read per
 * instance per this interval.
 */
export const KEYRING_REFRESH_INTERVAL_MS = 10_000;

/** The table, the scheduler queue (scheduling requests), the log bucket and this function's secret. */
const AWS_DEFAULTS: AwsDefaults = {
  store: () => import('./handler-defaults-table.ts'),
  queues: () => import('./handler-defaults-queues.ts'),
  logs: () => import('./handler-defaults-logs.ts'),
  apiToken: () => import('./handler-defaults-secrets.ts'),
  executionKeys: () => import('./handler-defaults-secrets.ts'),
};

export function makeHttpHandler(kind: HttpFunction, given: Partial<HandlerDeps & Observability> = {}) {
  const observability = createObservability(
    kind === 'public' ? 'updraft-api' : 'updraft-execution-api',
    given,
  );
  const deps = new LazyDeps(given, observability, AWS_DEFAULTS);
  const metrics = new EmfMetricsRegistry(observability.metrics);
  const log = engineLoggerOf(observability.logger);
  const unknowable = randomBytes(32).toString('base64url');
  let served:
    | {
        secrets: string;
        kids: ReadonlySet<string>;
        handle: ReturnType<typeof handle>;
        notifier: SchedulingNotifier;
        tokens: TaskTokenSigner;
      }
    | undefined;
  let keyringRefreshedAt = Number.NEGATIVE_INFINITY;

  /** The router, built once per instance and again when a secret it holds has rotated. */
  async function router(options: { refreshKeyring?: boolean } = {}) {
    const [store, queues, logs, settings, now] = await Promise.all([
      deps.get('store'),
      deps.get('queues'),
      deps.get('logs'),
      deps.get('settings'),
      deps.get('now'),
    ]);
    const apiToken = kind === 'public' ? await (await deps.get('apiToken'))() : unknowable;
    const executionKeys: ExecutionKeys =
      kind === 'execution'
        ? await (await deps.get('executionKeys'))(options.refreshKeyring ? { refresh: true } : undefined)
        : { unused: unknowable };
    const keys = keyringEntries(executionKeys);
    const secrets = JSON.stringify([apiToken, keys]);
    if (served?.secrets !== secrets) {
      const stack = createApiStack({
        store,
        queues,
        logs,
        metrics,
        settings,
        apiToken,
        executionKeys,
        log,
        now,
      });
      served = {
        secrets,
        kids: new Set(keys.map(([kid]) => kid)),
        handle: handle(servingOnly(stack.api, kind)),
        notifier: stack.notifier,
        tokens: stack.tokens,
      };
    }
    return served;
  }

  /**
   * The router for a request: for a task token signed with a key id the keyring held here does
   * not have (a rotation put a new key first, and the scheduler signs with it already), the
   * keyring is read again first, at most once per `KEYRING_REFRESH_INTERVAL_MS`.
   */
  async function routerFor(request: HttpEvent) {
    const current = await router();
    if (kind !== 'execution') return current;
    const kids = tokensOf(request).map(keyIdOf);
    if (kids.every((kid) => kid === undefined || current.kids.has(kid))) return current;
    const now = (await deps.get('now'))();
    if (now - keyringRefreshedAt < KEYRING_REFRESH_INTERVAL_MS) return current;
    keyringRefreshedAt = now;
    log.info('A task token names a key id this instance does not hold: reading the keyring again');
    return router({ refreshKeyring: true });
  }

  return withObservability(
    async (event: HttpEvent, context: Context): Promise<APIGatewayProxyStructuredResultV2> => {
      let request =
        kind === 'execution' ? { ...event, headers: restoreTaskToken(event.headers ?? {}) } : event;
      const { handle: serve, notifier, tokens } = await routerFor(request);
      if (kind === 'execution' && isTriggererRegistration(request, await deps.get('triggererRoleId'))) {
        const credential = await tokens.issueClaims(
          { kind: 'triggerer' },
          (await deps.get('now'))(),
          TRIGGERER_CREDENTIAL_TTL_SECONDS,
        );
        request = { ...request, headers: { ...request.headers, authorization: `Bearer ${credential}` } };
      }
      // hono declares its own copy of the v2 event type; the shapes are the same.
      const result = await serve(request as unknown as Parameters<typeof serve>[0], context);
      // Scheduling requests a route made are sent before the instance may be frozen.
      await notifier.drain();
      metrics.increment(kind === 'public' ? 'api.requests' : 'execution_api.requests');
      return result as APIGatewayProxyStructuredResultV2;
    },
    observability,
  );
}

/**
 * The task tokens a request carries: its bearer token, and for a batch (`POST /execution/batch`)
 * each call's. Only read to know which key ids it was signed with; the routes check them.
 */
function tokensOf(request: HttpEvent): string[] {
  const bearer = bearerTokenOf(request.headers?.authorization);
  const tokens = bearer === undefined ? [] : [bearer];
  if (request.rawPath !== EXECUTION_BATCH_PATH || !request.body) return tokens;
  try {
    const text = request.isBase64Encoded
      ? Buffer.from(request.body, 'base64').toString('utf8')
      : request.body;
    const calls = (JSON.parse(text) as { calls?: unknown }).calls;
    if (!Array.isArray(calls)) return tokens;
    for (const call of calls) {
      const token = (call as { token?: unknown } | null)?.token;
      if (typeof token === 'string') tokens.push(token);
    }
  } catch {
    // Not JSON: the route answers 422.
  }
  return tokens;
}

/** A credential given for one job registration lives only as long as that call may take. */
const TRIGGERER_CREDENTIAL_TTL_SECONDS = 300;

/**
 * A triggerer job registration (`POST /execution/jobs`) that carries no credential, signed by the
 * triggerer's task role: the function URL's IAM auth has verified the signature, so the role's
 * identity stands for the credential and the triggerer holds no secret. Any other caller, or a
 * call that brings its own token, is served as it came (no token: 401).
 */
export function isTriggererRegistration(event: HttpEvent, triggererRoleId: string | null): boolean {
  if (!triggererRoleId || event.headers?.authorization !== undefined) return false;
  if (event.requestContext.http.method !== 'POST') return false;
  if (event.rawPath !== '/execution/jobs') return false;
  const iam = (event.requestContext as { authorizer?: { iam?: { userId?: unknown } } }).authorizer?.iam;
  // An assumed role's user id is `<role id>:<session name>`.
  return typeof iam?.userId === 'string' && iam.userId.startsWith(`${triggererRoleId}:`);
}

/** The router limited to this function's half: anything else is a 404 that says where it lives. */
function servingOnly(api: ApiApp, kind: HttpFunction): Hono {
  const prefix = PATH_PREFIX[kind];
  const gate = new Hono();
  gate.all('*', (c) => {
    if (c.req.path.startsWith(prefix)) return api.fetch(c.req.raw);
    const elsewhere = kind === 'public' ? 'the Execution API function URL' : 'the public API';
    return c.json(
      {
        detail: `No route for ${c.req.method} ${c.req.path} here: this function serves ${prefix}* (see ${elsewhere})`,
        status: 404,
      },
      404,
    );
  });
  return gate;
}

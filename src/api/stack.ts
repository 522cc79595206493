import { AsyncLocalStorage } from 'node:async_hooks';
import type { Settings } from '#config/settings.ts';
import { CallbackService } from '#engine/callbacks.ts';
import { DagVersionCache } from '#engine/dag-cache.ts';
import type { Logger } from '#engine/logger.ts';
import { SchedulingNotifier } from '#engine/notifier.ts';
import { TaskLifecycle } from '#engine/task-lifecycle.ts';
import { type ExecutionKeys, TaskTokenSigner } from '#engine/tokens.ts';
import { TriggerLifecycle } from '#engine/triggers.ts';
import type { LogStore } from '#logs/port.ts';
import type { MetricsRegistry } from '#metrics/registry.ts';
import type { Queues } from '#queue/port.ts';
import type { StoreHealth } from '#store/availability.ts';
import type { Store } from '#store/port.ts';
import { type ApiApp, createApi } from './app.ts';

/** The engine pieces an API instance drives: caches, notifier and lifecycles, all in its memory. */
export interface ApiEngine {
  dags: DagVersionCache;
  notifier: SchedulingNotifier;
  tokens: TaskTokenSigner;
  lifecycle: TaskLifecycle;
  triggers: TriggerLifecycle;
  callbacks: CallbackService;
}

export interface ApiStack extends ApiEngine {
  api: ApiApp;
}

export interface ApiStackDeps {
  store: Store;
  queues: Queues;
  logs: LogStore;
  metrics: MetricsRegistry;
  settings: Settings;
  apiToken: string;
  /** Keys that sign and verify task tokens (`parseExecutionKeys`); a bare secret is the key `default`. */
  executionKeys: ExecutionKeys | string;
  log: Logger;
  now: () => number;
  /** What the health route says about the store (standalone's supervisor); else it probes. */
  storeHealth?: () => StoreHealth;
}

/**
 * The API with the engine pieces it drives, wired once for every place that serves it: the
 * adapters (store, queues, log store) are the caller's choice, everything above them is the same.
 */
export function createApiStack(deps: ApiStackDeps): ApiStack {
  const engine = createApiEngine(deps);
  return { api: createApi({ ...apiAdapters(deps), ...engine }), ...engine };
}

/**
 * The API as the Lambda shape runs it (benchmarks, the simulation): one route table, and for each
 * request a fresh engine instance (`createApiEngine`: empty caches, its own notifier) that lives
 * only as long as the request, as if every call were a new function instance. The calls of a batch
 * (`POST /execution/batch`) share their batch's instance, as they share one invocation on AWS.
 * The route table holds no state, so sharing it changes no decision; it spares each call the
 * building of the router, which a function instance does once, at its start.
 */
export function createFreshEngineApi(deps: ApiStackDeps): { fetch(request: Request): Promise<Response> } {
  const scope = new AsyncLocalStorage<ApiEngine>();
  const current = (): ApiEngine => {
    const engine = scope.getStore();
    if (!engine) throw new Error('The API engine is used outside of a request');
    return engine;
  };
  const api = createApi({
    ...apiAdapters(deps),
    get dags() {
      return current().dags;
    },
    get notifier() {
      return current().notifier;
    },
    get tokens() {
      return current().tokens;
    },
    get lifecycle() {
      return current().lifecycle;
    },
    get triggers() {
      return current().triggers;
    },
    get callbacks() {
      return current().callbacks;
    },
  });
  // A batch's calls go through the router from inside their batch's request (`app.request`), so
  // they run in its scope and share its engine.
  return { fetch: async (request) => scope.run(createApiEngine(deps), () => api.fetch(request)) };
}

/** The engine pieces behind one API instance, on the caller's adapters. */
export function createApiEngine(deps: ApiStackDeps): ApiEngine {
  const { store, settings, log, now } = deps;
  const dags = new DagVersionCache(store);
  const notifier = new SchedulingNotifier(deps.queues.scheduler, (error) =>
    log.warn('Sending a scheduling request failed; the next tick catches up', { error }),
  );
  const tokens = new TaskTokenSigner(deps.executionKeys, settings.executionTokenTtlSeconds);
  const callbacks = new CallbackService({
    store,
    dags,
    queues: deps.queues,
    tokens,
    logs: deps.logs,
    settings,
    now,
    log: log.child({ component: 'callbacks' }),
    metrics: deps.metrics,
  });
  const lifecycle = new TaskLifecycle({
    store,
    dags,
    notifier,
    logs: deps.logs,
    settings,
    now,
    metrics: deps.metrics,
    callbacks,
  });
  const triggers = new TriggerLifecycle({
    store,
    dags,
    logs: deps.logs,
    tokens,
    notifier,
    metrics: deps.metrics,
    log: log.child({ component: 'triggers' }),
    settings,
    now,
    callbacks,
  });
  return { dags, notifier, tokens, lifecycle, triggers, callbacks };
}

/** What the API takes from the caller as it is: the adapters and settings, not the engine pieces. */
function apiAdapters(deps: ApiStackDeps) {
  return {
    store: deps.store,
    logs: deps.logs,
    metrics: deps.metrics,
    settings: deps.settings,
    apiToken: deps.apiToken,
    log: deps.log.child({ component: 'api' }),
    now: deps.now,
    ...(deps.storeHealth ? { storeHealth: deps.storeHealth } : {}),
  };
}

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

export interface ApiStack {
  api: ApiApp;
  dags: DagVersionCache;
  notifier: SchedulingNotifier;
  tokens: TaskTokenSigner;
  lifecycle: TaskLifecycle;
  triggers: TriggerLifecycle;
  callbacks: CallbackService;
}

/**
 * The API with the engine pieces it drives, wired once for every place that serves it: the
 * adapters (store, queues, log store) are the caller's choice, everything above them is the same.
 */
export function createApiStack(deps: {
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
}): ApiStack {
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
  const api = createApi({
    store,
    dags,
    lifecycle,
    triggers,
    callbacks,
    notifier,
    tokens,
    logs: deps.logs,
    metrics: deps.metrics,
    settings,
    apiToken: deps.apiToken,
    log: log.child({ component: 'api' }),
    now,
    ...(deps.storeHealth ? { storeHealth: deps.storeHealth } : {}),
  });
  return { api, dags, notifier, tokens, lifecycle, triggers, callbacks };
}

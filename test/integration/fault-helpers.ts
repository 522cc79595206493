import type { DagRunKey, TaskInstanceKey } from '#core/models.ts';
import { DagVersionCache } from '#engine/dag-cache.ts';
import { silentLogger } from '#engine/logger.ts';
import { schedulingRequestsFor } from '#engine/notifier.ts';
import type { EngineDeps } from '#engine/scheduler.ts';
import type { ReceivedMessage } from '#queue/port.ts';
import type { Store } from '#store/port.ts';
import type { SchedulerHarness } from './scheduler-harness.ts';

/** The store with some methods replaced; `real` is the original store. */
export function wrapStore(store: Store, overrides: (real: Store) => Partial<Store>): Store {
  const replaced = overrides(store) as Record<string | symbol, unknown>;
  return new Proxy(store, {
    get(target, prop) {
      if (prop in replaced) return replaced[prop];
      const value = (target as unknown as Record<string | symbol, unknown>)[prop];
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  }) as Store;
}

/** Engine deps like the harness's newScheduler, on the given store (a fresh instance). */
export function engineDeps(h: SchedulerHarness, store: Store): EngineDeps {
  return {
    store,
    queues: h.queues.queues,
    dags: new DagVersionCache(store),
    tokens: h.tokens,
    timers: h.timers,
    metrics: h.metrics,
    settings: h.settings,
    log: silentLogger,
    now: h.now,
    readiness: h.readiness,
  };
}

/** A scheduling request for `run`, naming the TIs that changed as the API's requests do. */
export function requestFor(run: DagRunKey, changed: readonly TaskInstanceKey[] = []): ReceivedMessage {
  const [body] = schedulingRequestsFor(run, changed);
  return { messageId: 'm', receiptHandle: 'r', receiveCount: 1, body: JSON.stringify(body) };
}

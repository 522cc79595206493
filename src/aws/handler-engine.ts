import { CallbackService } from '#engine/callbacks.ts';
import { DagVersionCache } from '#engine/dag-cache.ts';
import type { Logger } from '#engine/logger.ts';
import type { EngineDeps } from '#engine/scheduler.ts';
import { keyringEntries, TaskTokenSigner } from '#engine/tokens.ts';
import type { Metrics } from '#metrics/port.ts';
import type { LazyDeps } from './handler-deps.ts';

/**
 * The scheduler's engine deps for one invocation. The serialized-DAG cache and the token signer
 * live as long as the instance (versions are immutable; the signer is rebuilt when the keyring
 * rotates); the readiness gauges start empty, so each invocation publishes only what it saw. No
 * orphan policy: on AWS nothing knows a worker is gone before its heartbeat times out.
 */
export function engineFactory(
  deps: LazyDeps,
  log: Logger,
  metrics: Metrics,
): () => Promise<EngineDeps & { readiness: Map<string, { ready: number; starving: number }> }> {
  let dags: DagVersionCache | undefined;
  let signer: { keyring: string; tokens: TaskTokenSigner } | undefined;
  return async () => {
    const [store, queues, timers, settings, now, executionKeys] = await Promise.all([
      deps.get('store'),
      deps.get('queues'),
      deps.get('timers'),
      deps.get('settings'),
      deps.get('now'),
      deps.get('executionKeys'),
    ]);
    const keys = await executionKeys();
    const keyring = JSON.stringify(keyringEntries(keys));
    if (signer?.keyring !== keyring) {
      signer = { keyring, tokens: new TaskTokenSigner(keys, settings.executionTokenTtlSeconds) };
    }
    dags ??= new DagVersionCache(store);
    return {
      store,
      queues,
      dags,
      tokens: signer.tokens,
      timers,
      metrics,
      settings,
      log,
      now,
      readiness: new Map(),
      callbacks: new CallbackService({
        store,
        dags,
        queues,
        tokens: signer.tokens,
        settings,
        now,
        log: log.child({ component: 'callbacks' }),
        metrics,
      }),
    };
  };
}

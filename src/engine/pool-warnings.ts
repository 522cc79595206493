import type { AdmissionResult } from '#core/admission.ts';
import { formatTaskInstanceKey } from '#core/models.ts';
import type { Logger } from './logger.ts';

/**
 * Logs, once per TI and try, a task instance that cannot run at all for want of a pool: the pool
 * is not configured, or has fewer slots than the task asks for. Waiting does not fix either.
 */
export class PoolWarnings {
  readonly #deps: { settings: { pools: Record<string, number> }; log: Logger };
  readonly #reported = new Set<string>();

  constructor(deps: { settings: { pools: Record<string, number> }; log: Logger }) {
    this.#deps = deps;
  }

  report(starving: AdmissionResult['starving']): void {
    for (const { ti, reason } of starving) {
      if (reason !== 'unknown_pool' && reason !== 'pool_too_small') continue;
      const id = `${formatTaskInstanceKey(ti)}@${ti.tryNumber}`;
      if (this.#reported.has(id)) continue;
      if (this.#reported.size > 10_000) this.#reported.clear();
      this.#reported.add(id);
      this.#deps.log.warn(
        reason === 'unknown_pool'
          ? `Task instance cannot run: pool ${ti.pool} is not configured (UPDRAFT_POOLS)`
          : `Task instance cannot run: it needs ${ti.poolSlots} slots of pool ${ti.pool}, which has ${this.#deps.settings.pools[ti.pool]}`,
        { ti: formatTaskInstanceKey(ti) },
      );
    }
  }
}

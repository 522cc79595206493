import type { AdmissionResult } from '#core/admission.ts';
import { formatTaskInstanceKey, type TaskInstance } from '#core/models.ts';
import type { TaskInstanceStore } from '#store/port.ts';
import { ignoreConflict } from './conflicts.ts';
import type { Logger } from './logger.ts';

/**
 * Reports, once per TI and try, a task instance that cannot run at all for want of a pool: the
 * pool is not configured, or has fewer slots than the task asks for. Waiting does not fix either.
 * The reason goes to the log and onto the TI itself (its `error_message`, while it stays `none`
 * or `scheduled`), so `runs show` and the API say why it waits; queueing the TI clears it.
 */
export class PoolWarnings {
  readonly #deps: { settings: { pools: Record<string, number> }; log: Logger };
  readonly #reported = new Set<string>();

  constructor(deps: { settings: { pools: Record<string, number> }; log: Logger }) {
    this.#deps = deps;
  }

  async report(
    starving: AdmissionResult['starving'],
    store?: Pick<TaskInstanceStore, 'transitionTaskInstance'>,
  ): Promise<void> {
    for (const { ti, reason } of starving) {
      if (reason !== 'unknown_pool' && reason !== 'pool_too_small') continue;
      const message = this.#message(ti, reason);
      // Written once: a TI that already shows the reason costs no write on later passes.
      if (store && ti.errorMessage !== message) await this.#note(store, ti, message);
      const id = `${formatTaskInstanceKey(ti)}@${ti.tryNumber}`;
      if (this.#reported.has(id)) continue;
      if (this.#reported.size > 10_000) this.#reported.clear();
      this.#reported.add(id);
      this.#deps.log.warn(message, { ti: formatTaskInstanceKey(ti) });
    }
  }

  #message(ti: TaskInstance, reason: 'unknown_pool' | 'pool_too_small'): string {
    const configured = Object.keys(this.#deps.settings.pools).join(', ') || 'none';
    return reason === 'unknown_pool'
      ? `Task instance cannot run: pool '${ti.pool}' is not configured (UPDRAFT_POOLS; configured: ${configured})`
      : `Task instance cannot run: it needs ${ti.poolSlots} slots of pool '${ti.pool}', which has ${this.#deps.settings.pools[ti.pool]} (UPDRAFT_POOLS)`;
  }

  async #note(store: Pick<TaskInstanceStore, 'transitionTaskInstance'>, ti: TaskInstance, message: string) {
    try {
      await ignoreConflict(
        store.transitionTaskInstance(
          ti,
          { state: ti.state, tryNumber: ti.tryNumber, revision: ti.revision },
          { errorMessage: message },
        ),
      );
    } catch (error) {
      // The reason is a courtesy: scheduling goes on without it.
      this.#deps.log.warn('Could not record why a task instance cannot run', {
        ti: formatTaskInstanceKey(ti),
        error,
      });
    }
  }
}

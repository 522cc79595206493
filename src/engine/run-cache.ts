import type { DagRun, DagRunKey } from '#core/models.ts';
import type { Store } from '#store/port.ts';

/** Runs kept at most; the oldest entry goes first. */
const RUN_CACHE_SIZE = 10_000;

/**
 * Runs by key, read once. Only a cache, and only for what never changes on a run (its DAG version,
 * dates, conf): never a source of decisions on its state.
 */
export class RunCache {
  readonly #store: Pick<Store, 'getDagRun'>;
  readonly #runs = new Map<string, DagRun>();

  constructor(store: Pick<Store, 'getDagRun'>) {
    this.#store = store;
  }

  /**
   * The run, read by `read` (default: the store's `getDagRun`) when it is not kept; undefined when
   * it does not exist (not remembered: it may be created later).
   */
  async get(
    key: DagRunKey,
    read: () => Promise<DagRun | undefined> = () => this.#store.getDagRun(key),
  ): Promise<DagRun | undefined> {
    const cacheKey = cacheKeyOf(key);
    const cached = this.#runs.get(cacheKey);
    if (cached) return cached;
    const run = await read();
    if (!run) return undefined;
    this.#runs.set(cacheKey, run);
    if (this.#runs.size > RUN_CACHE_SIZE) this.#runs.delete(this.#runs.keys().next().value as string);
    return run;
  }

  /** Whether the run is kept. */
  holds(key: DagRunKey): boolean {
    return this.#runs.has(cacheKeyOf(key));
  }
}

function cacheKeyOf(key: DagRunKey): string {
  return `${key.dagId}\u0000${key.runId}`;
}

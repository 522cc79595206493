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

  /** The run, or undefined when it does not exist (not remembered: it may be created later). */
  async get(key: DagRunKey): Promise<DagRun | undefined> {
    const cached = this.peek(key);
    if (cached) return cached;
    const run = await this.#store.getDagRun(key);
    if (run) this.remember(run);
    return run;
  }

  /** The run if it is kept; never reads. */
  peek(key: DagRunKey): DagRun | undefined {
    return this.#runs.get(cacheKeyOf(key));
  }

  /** Keeps a run read elsewhere. */
  remember(run: DagRun): void {
    this.#runs.set(cacheKeyOf(run), run);
    if (this.#runs.size > RUN_CACHE_SIZE) this.#runs.delete(this.#runs.keys().next().value as string);
  }
}

function cacheKeyOf(key: DagRunKey): string {
  return `${key.dagId}\u0000${key.runId}`;
}

import type { SerializedDag } from '#core/serialized-dag.ts';
import type { Store } from '#store/port.ts';
import { NotFoundError } from './errors.ts';

/**
 * Serialized DAG versions are immutable, so a version read once can be kept for good.
 * The cache is bounded: least recently used versions are dropped first. Callers that ask for a
 * version while it is being read share that read (the calls of a batch, served side by side).
 */
export class DagVersionCache {
  readonly #store: Store;
  readonly #maxEntries: number;
  readonly #entries = new Map<string, SerializedDag>();
  readonly #loading = new Map<string, Promise<SerializedDag>>();

  constructor(store: Store, maxEntries = 500) {
    this.#store = store;
    this.#maxEntries = maxEntries;
  }

  /** Whether the version is kept, or being read. */
  holds(dagId: string, versionHash: string): boolean {
    const cacheKey = `${dagId}@${versionHash}`;
    return this.#entries.has(cacheKey) || this.#loading.has(cacheKey);
  }

  /**
   * The version, read by `read` (default: the store's `getSerializedDag`) when it is neither kept
   * nor being read; undefined from `read` is a version that does not exist.
   */
  async get(
    dagId: string,
    versionHash: string,
    read?: () => Promise<SerializedDag | undefined>,
  ): Promise<SerializedDag> {
    const cacheKey = `${dagId}@${versionHash}`;
    const cached = this.#entries.get(cacheKey);
    if (cached) {
      this.#entries.delete(cacheKey);
      this.#entries.set(cacheKey, cached);
      return cached;
    }
    let loading = this.#loading.get(cacheKey);
    if (!loading) {
      loading = this.#load(dagId, versionHash, cacheKey, read).finally(() => this.#loading.delete(cacheKey));
      this.#loading.set(cacheKey, loading);
    }
    return loading;
  }

  async #load(
    dagId: string,
    versionHash: string,
    cacheKey: string,
    read = () => this.#store.getSerializedDag(dagId, versionHash),
  ): Promise<SerializedDag> {
    const dag = await read();
    if (!dag) throw new NotFoundError(`Serialized DAG ${dagId} version ${versionHash} is not in the store`);
    this.#entries.set(cacheKey, dag);
    if (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    return dag;
  }
}

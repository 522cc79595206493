import type { DagRun, DagRunKey } from '#core/models.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import type { DagVersionKey, ItemRead, RunsWithVersions, Store } from '#store/port.ts';

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

/**
 * Runs and DAG versions asked for in one turn of the event loop, read together: one request for
 * the start calls of a batch, which are served side by side and each need their run and its DAG
 * version. An item that cannot be decoded fails only the calls that need it; a failed request
 * fails them all (each is retried by its worker). Only a way to read; what is read is kept by the
 * caches (`RunCache`, `DagVersionCache`).
 */
export class RunReads {
  readonly #store: Pick<Store, 'getDagRunsWithDagVersions'>;
  #open: Gathering | undefined;

  constructor(store: Pick<Store, 'getDagRunsWithDagVersions'>) {
    this.#store = store;
  }

  /** The run (and the DAG version, when named), read with the others asked for in this turn. */
  async read(run: DagRunKey, version?: DagVersionKey): Promise<{ run?: DagRun; dag?: SerializedDag }> {
    const gathering = this.#open ?? this.#gather();
    gathering.runs.set(cacheKeyOf(run), { dagId: run.dagId, runId: run.runId });
    if (version) gathering.versions.set(`${version.dagId}\u0000${version.versionHash}`, version);
    const read = await gathering.result;
    const found = readValue(read.runs.find((each) => each.dagId === run.dagId && each.runId === run.runId));
    const dag = version
      ? readValue(
          read.versions.find(
            (each) => each.dagId === version.dagId && each.versionHash === version.versionHash,
          ),
        )
      : undefined;
    return { ...(found ? { run: found } : {}), ...(dag ? { dag } : {}) };
  }

  #gather(): Gathering {
    const gathering: Gathering = {
      runs: new Map(),
      versions: new Map(),
      result: new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        // Asked for from now on: the next request.
        if (this.#open === gathering) this.#open = undefined;
        return this.#store.getDagRunsWithDagVersions(
          [...gathering.runs.values()],
          [...gathering.versions.values()],
        );
      }),
    };
    this.#open = gathering;
    return gathering;
  }
}

/** The value read, undefined when absent; thrown when its item could not be decoded. */
function readValue<Value>(read: ItemRead<object, Value> | undefined): Value | undefined {
  if (read === undefined) return undefined;
  if ('error' in read) throw read.error;
  return read.value;
}

interface Gathering {
  runs: Map<string, DagRunKey>;
  versions: Map<string, DagVersionKey>;
  result: Promise<RunsWithVersions>;
}

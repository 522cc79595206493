import { RequestCounter } from '#store/instrument.ts';
import type { Store } from '#store/port.ts';

/** Who sent a store request, told from the (async) call stack of the request. */
export type Caller = 'scheduler' | 'tick' | 'api' | 'dag_processor' | 'other';

export const READ_OPERATIONS: ReadonlySet<string> = new Set([
  'GetItem',
  'BatchGetItem',
  'Query',
  'Scan',
  'TransactGetItems',
]);
export const WRITE_OPERATIONS: ReadonlySet<string> = new Set([
  'PutItem',
  'UpdateItem',
  'DeleteItem',
  'BatchWriteItem',
  'TransactWriteItems',
]);

export type CountsByCaller = Record<string, Record<string, number>>;

/**
 * A RequestCounter that also files each request under its caller. The store client is shared by
 * the scheduler and the API, so "reads per scheduling pass" would otherwise mix in the reads of
 * the Execution API's calls (start, heartbeat, finish), whose number grows with the TIs and not
 * with the passes. The caller is read from the call stack at send time: V8 keeps the awaiting
 * async frames, so the route handler or scheduler entry point that awaited the store shows up.
 */
export class CallerCounter extends RequestCounter {
  #byCaller: CountsByCaller = {};
  #byItem: CountsByCaller = {};

  override record(operation: string, input: unknown): void {
    super.record(operation, input);
    const caller = callerOf(captureStack());
    add(this.#byCaller, caller, operation);
    add(this.#byItem, caller, `${operation} ${itemKindOf(input)}`);
  }

  byCaller(): CountsByCaller {
    return copy(this.#byCaller);
  }

  /** By caller, then by operation and kind of item (`GetItem DAG#/V#`: a serialized DAG version). */
  byItem(): CountsByCaller {
    return copy(this.#byItem);
  }

  override reset(): void {
    super.reset();
    this.#byCaller = {};
    this.#byItem = {};
  }

  /**
   * Request counts hide how much one Query or BatchGetItem returns. This counts the items the
   * run reads returned (the run, its task-slot item, its summary, its TIs), by caller, by
   * wrapping the store's `getRunSnapshot`, `getRunHead` and `getTaskInstances`.
   */
  watchSnapshots(store: Store): void {
    const count = (caller: string, items: number) => add(this.#byItem, caller, SNAPSHOT_ITEMS, items);
    const snapshot = store.getRunSnapshot.bind(store);
    store.getRunSnapshot = async (key) => {
      const caller = callerOf(captureStack());
      const result = await snapshot(key);
      count(caller, result ? 2 + (result.summary ? 1 : 0) + result.taskInstances.length : 0);
      return result;
    };
    const head = store.getRunHead.bind(store);
    store.getRunHead = async (key) => {
      const caller = callerOf(captureStack());
      const result = await head(key);
      count(caller, result ? 2 + (result.summary ? 1 : 0) : 0);
      return result;
    };
    const taskInstances = store.getTaskInstances.bind(store);
    store.getTaskInstances = async (keys) => {
      const caller = callerOf(captureStack());
      const result = await taskInstances(keys);
      count(caller, result.length);
      return result;
    };
  }
}

/** The name under which `watchSnapshots` files the items the run reads returned. */
export const SNAPSHOT_ITEMS = 'run items read';

function add(counts: CountsByCaller, caller: string, name: string, by = 1): void {
  const forCaller = counts[caller] ?? {};
  forCaller[name] = (forCaller[name] ?? 0) + by;
  counts[caller] = forCaller;
}

function copy(counts: CountsByCaller): CountsByCaller {
  return Object.fromEntries(Object.entries(counts).map(([caller, byName]) => [caller, { ...byName }]));
}

/**
 * The kind of item a request reads or writes, from its key with the identifiers cut off
 * (`RUN#/TI#`, `DAGS/DAG#`); a Query by its index and partition. Inputs may arrive marshalled
 * (`{ S: '…' }`) or not, depending on where the document client's middleware ran.
 */
function itemKindOf(input: unknown): string {
  const request = (input ?? {}) as {
    Key?: Record<string, unknown>;
    Item?: Record<string, unknown>;
    IndexName?: string;
    ExpressionAttributeValues?: Record<string, unknown>;
  };
  const key = request.Key ?? request.Item;
  if (key) return `${prefixOf(key.pk)}/${prefixOf(key.sk)}`;
  if (request.ExpressionAttributeValues) {
    const values = Object.values(request.ExpressionAttributeValues).map(text).filter(Boolean);
    return `${request.IndexName ?? 'table'} ${values.length > 0 ? prefixOf(values[0]) : ''}`.trim();
  }
  return '';
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  const marshalled = (value as { S?: unknown } | undefined)?.S;
  return typeof marshalled === 'string' ? marshalled : undefined;
}

function prefixOf(value: unknown): string {
  const raw = text(value) ?? '?';
  const cut = raw.indexOf('#', 1);
  return cut === -1 ? raw : raw.slice(0, cut + 1);
}

/**
 * The files on the call stack (async frames included), read as V8 call sites rather than as a
 * formatted stack trace: formatting every request's stack cost more CPU than the request itself.
 */
function captureStack(): string {
  const limit = Error.stackTraceLimit;
  const prepare = Error.prepareStackTrace;
  Error.stackTraceLimit = 60;
  Error.prepareStackTrace = (_error, sites) => sites;
  const holder: { stack?: NodeJS.CallSite[] } = {};
  Error.captureStackTrace(holder);
  const sites = holder.stack ?? [];
  Error.prepareStackTrace = prepare;
  Error.stackTraceLimit = limit;
  let files = '';
  for (const site of sites) files += `${site.getFileName() ?? ''}\n`;
  return files;
}

/**
 * The API is checked first: its routes call engine code (task lifecycle, scheduling requests).
 * `scheduler` is a scheduling pass (`scheduleRun` in scheduler.ts, whether a request batch or a
 * tick started it); `tick` is the rest of a tick (cursor, active-run list, pool audits): work per
 * tick, not per pass.
 */
function callerOf(stack: string): Caller {
  if (stack.includes('/src/api/')) return 'api';
  if (stack.includes('/src/engine/scheduler.ts')) return 'scheduler';
  if (stack.includes('/src/engine/entrypoints.ts')) return 'tick';
  if (stack.includes('/src/engine/dag-registry.ts') || stack.includes('/src/standalone/parse-dags.ts'))
    return 'dag_processor';
  return 'other';
}

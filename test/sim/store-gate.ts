import { type DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { RUN_SUMMARY_SORT_KEY, TRIGGER_SORT_PREFIX, TRIGGERS_PARTITION } from '#store/keys.ts';
import { decodeSummaryEntry } from '#store/run-summary-store.ts';
import type { Kernel } from './kernel.ts';

/**
 * Gates every store call of the simulated engine: the document client's `send` parks the calling
 * actor at a kernel gate until the world lets it through. The writes that pass are mirrored
 * (task instance and run states, DAG pause flags, trigger rows) so the invariants can be checked
 * after every step without reading the table. Each change of a TI's state, try or deferral is kept
 * in its history with the actor that wrote it, so a check can tell what one API invocation changed.
 */

const WRITES = new Set(['Put', 'Update', 'Delete', 'BatchWrite', 'TransactWrite']);

export interface MirroredTaskInstance {
  dagId: string;
  runId: string;
  taskId: string;
  mapIndex: number;
  state: string;
  tryNumber: number;
  /** The try's deferrals so far (0 before its first). */
  deferralSeq: number;
  maxTries: number;
  pool: string;
  poolSlots: number;
  /** When the current deferral times out (sim epoch ms), null without one. */
  triggerTimeoutAtMs: number | null;
}

/** A callback item: its owner (`dag/run` or `dag/run/task/mapIndex`), kind, try or clear count, state. */
export interface MirroredCallback {
  callbackId: string;
  owner: string;
  kind: string;
  index: number;
  /** For `deadline_missed`: which deadline of the run. */
  deadlineIndex?: number;
  n: number;
  state: string;
  attempt: number;
  maxAttempts: number;
  queuedSends: number;
}

/** A deadline of a run as last written, and the sim time its state was decided at. */
export interface MirroredDeadline {
  run: string;
  index: number;
  atMs: number;
  state: string;
  /** The run's clear count when it was missed (its callbacks' `n`). */
  clearCount?: number;
}

/** A change of a TI's state, try or deferral number: the values after it, and who wrote it. */
export interface TaskInstanceChange {
  ti: string;
  state: string;
  tryNumber: number;
  deferralSeq: number;
  /** The deferral's timeout as the change left it (sim epoch ms), null without one. */
  triggerTimeoutAtMs: number | null;
  /** The actor whose store call made the change (its name). */
  writer: string | undefined;
  /** Sim time of the write. */
  atMs: number;
}

/** A tick's read of a run's partition: the tick reconciled that run from then on. */
export interface TickRead {
  actor: string;
  partition: string;
  atMs: number;
}

export interface MirroredRun {
  dagId: string;
  runId: string;
  state: string;
  clearCount: number;
  clearsInProgress: number;
}

/** A run's per-task state summary: the clear it is valid for and each task's state. */
export interface MirroredSummary {
  clearCount: number;
  states: Record<string, string>;
}

type Item = Record<string, unknown>;

/** The latest stored version of every TI, run and DAG record the engine wrote. */
export class StoreMirror {
  readonly taskInstances = new Map<string, MirroredTaskInstance>();
  readonly runs = new Map<string, MirroredRun>();
  /** By run partition key (`RUN#dag#run`). */
  readonly summaries = new Map<string, MirroredSummary>();
  readonly paused = new Map<string, boolean>();
  /** Every change of each TI's state, try or deferral number, in order. */
  readonly history = new Map<string, TaskInstanceChange[]>();
  /** The same changes by the actor that made them. */
  readonly changesBy = new Map<string, TaskInstanceChange[]>();
  /** Ids of the trigger rows in the table. */
  readonly triggers = new Set<string>();
  /** Every read of a run's partition by a tick (9e). */
  readonly tickReads: TickRead[] = [];
  /** When each tick that returned did (by actor name; a tick that threw or was killed is absent). */
  readonly ticksDone = new Map<string, number>();
  /** The sim clock (epoch ms) the changes are stamped with. */
  clock: () => number = () => 0;
  /** Bumped on every change, so checks can skip unchanged steps. */
  version = 0;
  readonly #byItemKey = new Map<string, () => void>();
  /** Owners (by item key) holding owed callbacks not yet materialized, and how many. */
  readonly owed = new Map<string, number>();
  /** Callback items by callback id, as last written. */
  readonly callbacks = new Map<string, MirroredCallback>();
  /** Every finish of a run: `dag/run|state|clearCount` (a cleared run may finish again). */
  readonly runFinishes = new Set<string>();
  /** Deadlines of runs by `dag/run#index`. */
  readonly deadlines = new Map<string, MirroredDeadline>();
  /** Violations of 10f seen as the writes passed (a decided deadline changed, one decided early or wrongly). */
  readonly deadlineViolations: string[] = [];

  observe(item: Item, writer?: string): void {
    const itemKey = `${String(item.pk)}|${String(item.sk)}`;
    const owed = item.owedCallbacks;
    if (owed instanceof Set && owed.size > 0) this.owed.set(itemKey, owed.size);
    else if (this.owed.delete(itemKey)) this.version++;
    if (
      typeof item.pk === 'string' &&
      item.pk.startsWith('CALLBACKS#') &&
      typeof item.callbackId === 'string'
    ) {
      this.callbacks.set(item.callbackId, {
        callbackId: item.callbackId,
        owner:
          typeof item.taskId === 'string'
            ? `${item.dagId}/${item.runId}/${item.taskId}/${item.mapIndex}`
            : `${item.dagId}/${item.runId}`,
        kind: String(item.kind),
        index: Number(item.index),
        ...(typeof item.deadlineIndex === 'number' ? { deadlineIndex: item.deadlineIndex } : {}),
        n: Number(item.taskId === null ? item.clearCount : item.tryNumber),
        state: String(item.state),
        attempt: Number(item.attempt),
        maxAttempts: Number(item.maxAttempts),
        queuedSends: Number(item.queuedSends),
      });
      this.version++;
      return;
    }
    if (isTaskInstance(item)) {
      const key = `${item.dagId}/${item.runId}/${item.taskId}/${item.mapIndex}`;
      const before = this.taskInstances.get(key);
      const after: MirroredTaskInstance = {
        dagId: item.dagId,
        runId: item.runId,
        taskId: item.taskId,
        mapIndex: item.mapIndex,
        state: item.state,
        tryNumber: item.tryNumber,
        deferralSeq: Number(item.deferralSeq ?? 0),
        maxTries: Number(item.maxTries),
        pool: String(item.pool),
        poolSlots: Number(item.poolSlots),
        triggerTimeoutAtMs:
          typeof item.triggerTimeoutAt === 'string' ? Date.parse(item.triggerTimeoutAt) : null,
      };
      this.taskInstances.set(key, after);
      if (
        before?.state !== after.state ||
        before.tryNumber !== after.tryNumber ||
        before.deferralSeq !== after.deferralSeq
      )
        this.#recordChange({ ti: key, ...pick(after), writer, atMs: this.clock() });
      this.#byItemKey.set(itemKey, () => this.taskInstances.delete(key));
    } else if (isRun(item)) {
      const key = `${item.dagId}/${item.runId}`;
      // A finish is a change into success or failed (a clear's own writes keep the state).
      if ((item.state === 'success' || item.state === 'failed') && this.runs.get(key)?.state !== item.state)
        this.runFinishes.add(`${key}|${item.state}|${Number(item.clearCount ?? 0)}`);
      this.#observeDeadlines(key, item);
      this.runs.set(key, {
        dagId: item.dagId,
        runId: item.runId,
        state: item.state,
        clearCount: Number(item.clearCount ?? 0),
        clearsInProgress: Number(item.clearsInProgress ?? 0),
      });
      this.#byItemKey.set(itemKey, () => this.runs.delete(key));
    } else if (item.pk === TRIGGERS_PARTITION && typeof item.sk === 'string') {
      this.triggers.add(item.sk.slice(TRIGGER_SORT_PREFIX.length));
    } else if (item.sk === RUN_SUMMARY_SORT_KEY && typeof item.pk === 'string') {
      // Decoded as the store reads them (short strings, lists, or maps of earlier versions).
      const tasks = (item.tasks ?? {}) as Record<string, unknown>;
      const states = Object.fromEntries(
        Object.entries(tasks).flatMap(([taskId, entry]) => {
          const state = decodeSummaryEntry(entry)?.state;
          return state === undefined ? [] : [[taskId, state]];
        }),
      );
      const partition = item.pk;
      this.summaries.set(partition, { clearCount: Number(item.clearCount ?? 0), states });
      this.#byItemKey.set(itemKey, () => this.summaries.delete(partition));
    } else if (
      typeof item.dagId === 'string' &&
      typeof item.isPaused === 'boolean' &&
      item.runId === undefined
    ) {
      this.paused.set(item.dagId, item.isPaused);
    } else {
      return;
    }
    this.version++;
  }

  /**
   * 10f as each run write passes: a deadline is decided once (pending → met or missed, never
   * changed after), missed only once its time has come and the run had not finished by then, met
   * only by a finish before its time.
   */
  #observeDeadlines(run: string, item: Item): void {
    const deadlines = item.deadlines as { index: number; at: string; state: string }[] | undefined;
    for (const deadline of deadlines ?? []) {
      const key = `${run}#${deadline.index}`;
      const before = this.deadlines.get(key);
      const atMs = Date.parse(deadline.at);
      const nowMs = this.clock();
      const endMs = typeof item.endDate === 'string' ? Date.parse(item.endDate) : undefined;
      if (before && before.state !== 'pending' && before.state !== deadline.state) {
        this.deadlineViolations.push(`${key} was ${before.state}, then written ${deadline.state}`);
      }
      if (before?.state !== deadline.state && deadline.state === 'missed') {
        if (nowMs < atMs) this.deadlineViolations.push(`${key} missed at ${nowMs}, before its time ${atMs}`);
        if (endMs !== undefined && endMs <= atMs)
          this.deadlineViolations.push(`${key} missed though the run ended at ${endMs}, by its time ${atMs}`);
      }
      if (
        before?.state !== deadline.state &&
        deadline.state === 'met' &&
        (endMs === undefined || endMs > atMs)
      ) {
        this.deadlineViolations.push(
          `${key} met though the run ended at ${endMs ?? 'no time'}, after ${atMs}`,
        );
      }
      this.deadlines.set(key, {
        run,
        index: deadline.index,
        atMs,
        state: deadline.state,
        ...(deadline.state === 'missed'
          ? { clearCount: before?.clearCount ?? Number(item.clearCount ?? 0) }
          : {}),
      });
    }
  }

  #recordChange(change: TaskInstanceChange): void {
    const history = this.history.get(change.ti) ?? [];
    history.push(change);
    this.history.set(change.ti, history);
    if (change.writer === undefined) return;
    const byWriter = this.changesBy.get(change.writer) ?? [];
    byWriter.push(change);
    this.changesBy.set(change.writer, byWriter);
  }

  forget(key: Item): void {
    if (key.pk === TRIGGERS_PARTITION) this.triggers.delete(String(key.sk).slice(TRIGGER_SORT_PREFIX.length));
    const itemKey = `${String(key.pk)}|${String(key.sk)}`;
    this.#byItemKey.get(itemKey)?.();
    this.#byItemKey.delete(itemKey);
    this.version++;
  }
}

function pick(ti: MirroredTaskInstance) {
  return {
    state: ti.state,
    tryNumber: ti.tryNumber,
    deferralSeq: ti.deferralSeq,
    triggerTimeoutAtMs: ti.triggerTimeoutAtMs,
  };
}

function isTaskInstance(item: Item): item is Item & MirroredTaskInstance {
  return (
    typeof item.taskId === 'string' &&
    typeof item.runId === 'string' &&
    typeof item.state === 'string' &&
    typeof item.tryNumber === 'number' &&
    typeof item.mapIndex === 'number' &&
    item.pool !== undefined
  );
}

function isRun(item: Item): item is Item & MirroredRun {
  return (
    typeof item.runId === 'string' &&
    typeof item.runType === 'string' &&
    typeof item.state === 'string' &&
    item.taskId === undefined
  );
}

export interface GateHooks {
  /** Sim ms the call is held back before it may pass (a slow store call); 0 mostly. */
  delayFor(operation: string): number;
  /** Called after every write that passed, with the mirror already updated. */
  afterWrite?(operation: string): void;
}

/** Wraps `client.send`: each call becomes a gate of the calling actor, then a mirrored store call. */
export function gateDocumentClient(
  client: DynamoDBDocumentClient,
  kernel: Kernel,
  mirror: StoreMirror,
  hooks: GateHooks,
): void {
  const send = client.send.bind(client) as (command: unknown) => Promise<unknown>;
  const gated = async (command: { constructor: { name: string }; input: Item }) => {
    const operation = command.constructor.name.replace(/Command$/, '');
    const isWrite = WRITES.has(operation);
    const done = await kernel.gate(`${operation} ${describeInput(command.input)}`, {
      delayMs: hooks.delayFor(operation),
      isWrite,
    });
    const writer = kernel.current()?.name;
    if (operation === 'Query' && writer?.startsWith('tick')) {
      const partition = Object.values((command.input.ExpressionAttributeValues ?? {}) as Item).find(
        (value): value is string => typeof value === 'string' && value.startsWith('RUN#'),
      );
      if (partition) mirror.tickReads.push({ actor: writer, partition, atMs: kernel.now });
    }
    try {
      const output = (await send(command)) as Item;
      if (isWrite) {
        await mirrorWrite(operation, command.input, output, mirror, writer, (input) =>
          send(new GetCommand(input)),
        );
        hooks.afterWrite?.(operation);
      }
      return output;
    } finally {
      done();
    }
  };
  (client as unknown as { send: unknown }).send = gated;
}

async function mirrorWrite(
  operation: string,
  input: Item,
  output: Item,
  mirror: StoreMirror,
  writer: string | undefined,
  get: (input: { TableName: string; Key: Item; ConsistentRead: boolean }) => Promise<unknown>,
): Promise<void> {
  switch (operation) {
    case 'Put':
      mirror.observe(input.Item as Item, writer);
      return;
    case 'Update': {
      const attributes = output.Attributes as Item | undefined;
      if (attributes && 'pk' in attributes) return mirror.observe(attributes, writer);
      // Not ALL_NEW: read the item back (still inside the gate, so nothing else ran in between).
      const read = (await get({
        TableName: String(input.TableName),
        Key: input.Key as Item,
        ConsistentRead: true,
      })) as Item;
      if (read.Item) mirror.observe(read.Item as Item, writer);
      return;
    }
    case 'Delete':
      mirror.forget(input.Key as Item);
      return;
    case 'BatchWrite': {
      const unprocessed = JSON.stringify(output.UnprocessedItems ?? {});
      for (const requests of Object.values(input.RequestItems as Record<string, Item[]>)) {
        for (const request of requests) {
          const put = request.PutRequest as { Item: Item } | undefined;
          const remove = request.DeleteRequest as { Key: Item } | undefined;
          // dynalite processes every item; anything it left unprocessed is retried by the store.
          if (put && !unprocessed.includes(JSON.stringify(put.Item.sk))) mirror.observe(put.Item, writer);
          if (remove) mirror.forget(remove.Key);
        }
      }
      return;
    }
    default:
      return;
  }
}

function describeInput(input: Item): string {
  const key = (input.Key ?? (input.Item as Item | undefined)) as Item | undefined;
  if (key) return `${String(key.pk)} ${String(key.sk)}`;
  if (input.KeyConditionExpression) {
    const values = input.ExpressionAttributeValues as Item | undefined;
    return `${input.IndexName ? `${String(input.IndexName)} ` : ''}${Object.values(values ?? {})
      .map(String)
      .join(' ')}`;
  }
  if (input.RequestItems) {
    const requests = Object.values(input.RequestItems as Record<string, unknown[]>).flat();
    return `${requests.length} items`;
  }
  return '';
}

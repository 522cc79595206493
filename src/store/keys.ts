import { decodeOwed } from '#core/callbacks.ts';
import type { DagRunKey, TaskInstanceKey } from '#core/models.ts';
import type { DagRunState } from '#core/states.ts';
import { InvalidKeyError } from './errors.ts';
import type { SlotPoolRef } from './port.ts';

/**
 * The single definition of the Updraft table: attribute names, key schema, indexes and key
 * builders. The CDK stack and the embedded bootstrap both build the table from this module,
 * so it stays plain data (no SDK, no CDK). The design is explained in `ADR.md`.
 */

export const PARTITION_KEY = 'pk';
export const SORT_KEY = 'sk';
export const GSI1_PARTITION_KEY = 'gsi1pk';
export const GSI1_SORT_KEY = 'gsi1sk';
export const GSI2_PARTITION_KEY = 'gsi2pk';
export const GSI2_SORT_KEY = 'gsi2sk';

/** Attributes that exist only to place an item; they are stripped before an item becomes a model. */
export const KEY_ATTRIBUTES: readonly string[] = [
  PARTITION_KEY,
  SORT_KEY,
  GSI1_PARTITION_KEY,
  GSI1_SORT_KEY,
  GSI2_PARTITION_KEY,
  GSI2_SORT_KEY,
];

export interface KeyAttribute {
  name: string;
  /** DynamoDB scalar type; every key of this table is a string. */
  type: 'S';
}

export interface GlobalSecondaryIndexDefinition {
  indexName: string;
  partitionKey: KeyAttribute;
  sortKey: KeyAttribute;
  projectionType: 'ALL' | 'KEYS_ONLY' | 'INCLUDE';
  nonKeyAttributes?: readonly string[];
}

export const RUNS_BY_LOGICAL_DATE_INDEX = 'gsi1';
export const ACTIVE_RUNS_INDEX = 'gsi2';
/** GSI1, overloaded as a sparse index of triggers by queue (unclaimed) and by job (claimed). */
export const TRIGGERS_BY_HOLDER_INDEX = RUNS_BY_LOGICAL_DATE_INDEX;

/** Shaped after CDK's `TableProps` / `GlobalSecondaryIndexProps` so the stack can pass it through. */
export const TABLE_DEFINITION: {
  partitionKey: KeyAttribute;
  sortKey: KeyAttribute;
  billingMode: 'PAY_PER_REQUEST';
  globalSecondaryIndexes: readonly GlobalSecondaryIndexDefinition[];
} = {
  partitionKey: { name: PARTITION_KEY, type: 'S' },
  sortKey: { name: SORT_KEY, type: 'S' },
  billingMode: 'PAY_PER_REQUEST',
  globalSecondaryIndexes: [
    {
      // listDagRuns returns whole runs, so the index carries them (runs are few and small).
      indexName: RUNS_BY_LOGICAL_DATE_INDEX,
      partitionKey: { name: GSI1_PARTITION_KEY, type: 'S' },
      sortKey: { name: GSI1_SORT_KEY, type: 'S' },
      projectionType: 'ALL',
    },
    {
      // Only what listActiveDagRuns returns: run updates that change nothing else skip the index.
      indexName: ACTIVE_RUNS_INDEX,
      partitionKey: { name: GSI2_PARTITION_KEY, type: 'S' },
      sortKey: { name: GSI2_SORT_KEY, type: 'S' },
      projectionType: 'INCLUDE',
      nonKeyAttributes: ['dagId', 'runId', 'state'],
    },
  ],
};

/**
 * The table's time-to-live attribute (epoch seconds): with a retention set, every write of a run's
 * items (the run, its TIs, summary and task slots) and of its XComs stamps it `retention` ahead,
 * and DynamoDB deletes them once a run has been left alone that long. DAGs, pools and the
 * scheduler's items, triggers and triggerer jobs never carry it.
 */
export const TTL_ATTRIBUTE = 'expiresAt';

export const DAGS_PARTITION = 'DAGS';
export const DAG_SORT_PREFIX = 'DAG#';
export const IMPORT_ERROR_SORT_PREFIX = 'IMPORT_ERROR#';
export const VERSION_SORT_PREFIX = 'VERSION#';
export const RUN_SORT_KEY = '#RUN';
export const TASK_INSTANCE_SORT_PREFIX = 'TI#';
export const ACTIVE_RUNS_PARTITION = 'ACTIVE_RUNS';
/** The run's `max_active_tasks` slot pool: in the run partition, sorted after `#RUN` and before the TIs. */
export const RUN_SLOTS_SORT_KEY = '#SLOTS';
/** The run's per-task state summary: in the run partition, read with `#RUN` and `#SLOTS` by one query. */
export const RUN_SUMMARY_SORT_KEY = '#SUMMARY';
/** Sort keys of the run's own items (run, slots, summary) start with this; TIs do not. */
export const RUN_HEAD_SORT_PREFIX = '#';
export const DAG_RUN_SLOTS_SORT_KEY = 'RUN_SLOTS';
export const POOLS_PARTITION = 'POOLS';
export const POOL_SORT_PREFIX = 'POOL#';
export const SCHEDULER_PARTITION = 'SCHEDULER';
export const RECONCILE_CURSOR_SORT_KEY = 'RECONCILE_CURSOR';
export const TRIGGERS_PARTITION = 'TRIGGERS';
export const TRIGGER_SORT_PREFIX = 'TRIGGER#';
export const JOBS_PARTITION = 'JOBS';
export const JOB_SORT_PREFIX = 'JOB#';
/**
 * A trigger item keeps its queue's GSI1 partition here, so a release can move it back there in one
 * UpdateItem (`SET gsi1pk = <this>`) without reading the queue first. Not part of the model.
 */
export const TRIGGER_QUEUE_PARTITION_ATTRIBUTE = 'queueGsi1pk';
/** Mapped TIs of one task spread over this many partitions (mapIndex % shards). */
export const MAPPED_TASK_INSTANCE_SHARDS = 32;
const MAP_INDEX_DIGITS = 7;

export interface ItemKey {
  pk: string;
  sk: string;
}

/** Whether `value` can be one segment of a key (see `assertKeySegment`). */
export function isKeySegment(value: string): boolean {
  return value.length > 0 && !value.includes('#');
}

/**
 * `#` separates key segments, so an identifier that contains one could make two different
 * items share a key. Free-form sort-key tails (file locations, version hashes) may contain it.
 */
export function assertKeySegment(kind: string, value: string): void {
  if (!isKeySegment(value)) {
    throw new InvalidKeyError(
      `${kind} '${value}' cannot be stored: it must be non-empty and must not contain '#'`,
    );
  }
}

export function dagKey(dagId: string): ItemKey {
  assertKeySegment('DAG id', dagId);
  return { pk: DAGS_PARTITION, sk: `${DAG_SORT_PREFIX}${dagId}` };
}

export function importErrorKey(fileloc: string): ItemKey {
  return { pk: DAGS_PARTITION, sk: `${IMPORT_ERROR_SORT_PREFIX}${fileloc}` };
}

export function serializedDagKey(dagId: string, versionHash: string): ItemKey {
  assertKeySegment('DAG id', dagId);
  return { pk: `DAG#${dagId}`, sk: `${VERSION_SORT_PREFIX}${versionHash}` };
}

/** The partition holding a run and its unmapped task instances. */
export function runPartition(key: DagRunKey): string {
  assertKeySegment('DAG id', key.dagId);
  assertKeySegment('run id', key.runId);
  return `RUN#${key.dagId}#${key.runId}`;
}

export function dagRunKey(key: DagRunKey): ItemKey {
  return { pk: runPartition(key), sk: RUN_SORT_KEY };
}

export function runSummaryKey(key: DagRunKey): ItemKey {
  return { pk: runPartition(key), sk: RUN_SUMMARY_SORT_KEY };
}

/**
 * The item of a slot pool: a named pool, a run's task slots (in the run partition, so the run
 * snapshot reads it with the same query) or a DAG's run slots. Pool names are the last segment,
 * so they may contain `#`; they must not be empty.
 */
export function slotPoolKey(ref: SlotPoolRef): ItemKey {
  switch (ref.kind) {
    case 'pool':
      if (ref.pool.length === 0) throw new InvalidKeyError('a pool name must not be empty');
      return { pk: POOLS_PARTITION, sk: `${POOL_SORT_PREFIX}${ref.pool}` };
    case 'run_tasks':
      return { pk: runPartition(ref), sk: RUN_SLOTS_SORT_KEY };
    case 'dag_runs':
      assertKeySegment('DAG id', ref.dagId);
      return { pk: `DAG#${ref.dagId}`, sk: DAG_RUN_SLOTS_SORT_KEY };
  }
}

export function reconcileCursorKey(): ItemKey {
  return { pk: SCHEDULER_PARTITION, sk: RECONCILE_CURSOR_SORT_KEY };
}

export function mappedShard(mapIndex: number): number {
  return mapIndex % MAPPED_TASK_INSTANCE_SHARDS;
}

export function taskInstanceKey(key: TaskInstanceKey): ItemKey {
  assertKeySegment('task id', key.taskId);
  if (!Number.isInteger(key.mapIndex) || key.mapIndex < -1) {
    throw new InvalidKeyError(
      `map index ${key.mapIndex} of task '${key.taskId}' is not -1 or a non-negative integer`,
    );
  }
  const partition = runPartition(key);
  if (key.mapIndex === -1) {
    return { pk: partition, sk: `${TASK_INSTANCE_SORT_PREFIX}${key.taskId}#-1` };
  }
  const paddedIndex = String(key.mapIndex).padStart(MAP_INDEX_DIGITS, '0');
  return {
    pk: `${partition}#MAP#${key.taskId}#${mappedShard(key.mapIndex)}`,
    sk: `${TASK_INSTANCE_SORT_PREFIX}${key.taskId}#${paddedIndex}`,
  };
}

export function runsByLogicalDateKey(run: DagRunKey & { logicalDate: string }): {
  gsi1pk: string;
  gsi1sk: string;
} {
  assertKeySegment('DAG id', run.dagId);
  return { gsi1pk: `RUNS#${run.dagId}`, gsi1sk: `${run.logicalDate}#${run.runId}` };
}

export function isActiveDagRunState(state: DagRunState): boolean {
  return state === 'queued' || state === 'running';
}

export function activeRunKey(key: DagRunKey): { gsi2pk: string; gsi2sk: string } {
  return { gsi2pk: ACTIVE_RUNS_PARTITION, gsi2sk: `${key.dagId}#${key.runId}` };
}

export function activeRunPrefix(dagId: string): string {
  assertKeySegment('DAG id', dagId);
  return `${dagId}#`;
}

export function xcomPartition(key: DagRunKey): string {
  assertKeySegment('DAG id', key.dagId);
  assertKeySegment('run id', key.runId);
  return `XCOM#${key.dagId}#${key.runId}`;
}

/** Sort-key prefix of all XComs of one task instance; ends with `#` so index 1 does not match 10. */
export function xcomTaskInstancePrefix(ti: TaskInstanceKey): string {
  assertKeySegment('task id', ti.taskId);
  return `${ti.taskId}#${ti.mapIndex}#`;
}

/** XCom keys must not contain `#` either: streamed pages will live at `<key>#PAGE#<n>` (ADR.md). */
export function xcomKey(key: TaskInstanceKey & { key: string }): ItemKey {
  assertKeySegment('XCom key', key.key);
  return { pk: xcomPartition(key), sk: `${xcomTaskInstancePrefix(key)}${key.key}` };
}

export function triggerKey(triggerId: string): ItemKey {
  assertKeySegment('trigger id', triggerId);
  return { pk: TRIGGERS_PARTITION, sk: `${TRIGGER_SORT_PREFIX}${triggerId}` };
}

/**
 * GSI2 partition of owners (task instances, finished runs) holding owed callbacks not yet turned
 * into callback items: the tick's backstop reads it (see `src/engine/callbacks.ts`). Sort key: when
 * the oldest element became owed, then the owner's key.
 */
export const CALLBACKS_OWED_PARTITION = 'CALLBACKS_OWED';
/** GSI1 partition of callbacks not final, sorted by when a tick must look at them again. */
export const CALLBACKS_DUE_PARTITION = 'CALLBACKS_DUE';
/** Callbacks a triggerer may claim (queued to run on a triggerer), by the time they may start. */
export const CALLBACKS_TRIGGERER_PARTITION = 'CALLBACKS_TRIGGERER';
/** Triggerer callbacks claimed or running, by when the tick must look at them (as `CALLBACKS_DUE`). */
export const CALLBACKS_TRIGGERER_DUE_PARTITION = 'CALLBACKS_TRIGGERER_DUE';
export const CALLBACK_SORT_PREFIX = 'CB#';
/** The attribute of an owner item holding its owed callbacks (a string set). */
export const OWED_CALLBACKS_ATTRIBUTE = 'owedCallbacks';

export function owedIndexKey(owner: ItemKey, owedAt: string): { gsi2pk: string; gsi2sk: string } {
  return { gsi2pk: CALLBACKS_OWED_PARTITION, gsi2sk: `${owedAt}#${owner.pk}#${owner.sk}` };
}

/** When the earliest of these owed elements became owed (their own time, the engine's clock); else `fallback`. */
export function owedSince(owed: readonly string[], fallback: string): string {
  let earliest: string | undefined;
  for (const element of owed) {
    const at = decodeOwed(element)?.at;
    if (at !== undefined && (earliest === undefined || at < earliest)) earliest = at;
  }
  return earliest ?? fallback;
}

/** A run's callbacks: a partition of their own, so the run's snapshot and head never read them. */
export function callbacksPartition(key: DagRunKey): string {
  assertKeySegment('DAG id', key.dagId);
  assertKeySegment('run id', key.runId);
  return `CALLBACKS#${key.dagId}#${key.runId}`;
}

export function callbackItemKey(key: DagRunKey & { callbackId: string }): ItemKey {
  assertKeySegment('callback id', key.callbackId);
  return { pk: callbacksPartition(key), sk: `${CALLBACK_SORT_PREFIX}${key.callbackId}` };
}

/** GSI1 keys of a callback that is not final: due at `dueAt`, the id breaking ties. */
/**
 * Which GSI1 partition holds a callback not final: `due` (the tick looks at it from `dueAt` on),
 * `triggerer` (a triggerer may claim it from `dueAt` on) or `triggerer_due` (a triggerer's
 * callback claimed or running: the tick looks at it from `dueAt` on, and the triggerers' scaling
 * counts it).
 */
export type CallbackIndex = 'due' | 'triggerer' | 'triggerer_due';

const CALLBACK_INDEX_PARTITIONS: Record<CallbackIndex, string> = {
  due: CALLBACKS_DUE_PARTITION,
  triggerer: CALLBACKS_TRIGGERER_PARTITION,
  triggerer_due: CALLBACKS_TRIGGERER_DUE_PARTITION,
};

export function callbackDueKey(
  callbackId: string,
  dueAt: string,
  index: CallbackIndex = 'due',
): { gsi1pk: string; gsi1sk: string } {
  return { gsi1pk: CALLBACK_INDEX_PARTITIONS[index], gsi1sk: `${dueAt}#${callbackId}` };
}

export function jobKey(jobId: string): ItemKey {
  assertKeySegment('job id', jobId);
  return { pk: JOBS_PARTITION, sk: `${JOB_SORT_PREFIX}${jobId}` };
}

/** GSI1 partition of a queue's unclaimed triggers. */
export function unclaimedTriggersPartition(queue: string): string {
  assertKeySegment('trigger queue', queue);
  return `TRIGGERS#QUEUE#${queue}`;
}

/** GSI1 partition of the triggers one job holds. */
export function jobTriggersPartition(jobId: string): string {
  assertKeySegment('job id', jobId);
  return `TRIGGERS#JOB#${jobId}`;
}

/** GSI1 sort key of a trigger in either partition: oldest first, the id breaking ties. */
export function triggerIndexSortKey(trigger: { createdAt: string; triggerId: string }): string {
  assertKeySegment('trigger id', trigger.triggerId);
  return `${trigger.createdAt}#${trigger.triggerId}`;
}

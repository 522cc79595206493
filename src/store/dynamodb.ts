import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { Callback, CallbackKey } from '#core/callbacks.ts';
import type {
  DagRun,
  DagRunKey,
  TaskInstance,
  TaskInstanceKey,
  Trigger,
  TriggererJob,
} from '#core/models.ts';
import type { RunSummary, SummaryEntry } from '#core/run-summary.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import type { DagRunState } from '#core/states.ts';
import { DynamoCallbackStore } from './callback-store.ts';
import { DynamoDagStore } from './dag-store.ts';
import { DynamoJobStore } from './job-store.ts';
import type { CallbackIndex, ItemKey } from './keys.ts';
import type {
  CallbackExpectation,
  DagRecord,
  DagRecordChanges,
  DagRecordUpsert,
  DagRunChanges,
  DagRunExpectation,
  DagVersionKey,
  ImportError,
  OwedOwner,
  Page,
  PageRequest,
  ReconcileCursor,
  RunHead,
  RunSnapshot,
  RunsWithVersions,
  RunTransitionOptions,
  SlotPoolChange,
  SlotPoolRef,
  SlotPoolState,
  Store,
  TaskInstanceChanges,
  TaskInstanceExpectation,
  TransitionOptions,
  XComEntry,
  XComKey,
} from './port.ts';
import { TableRequests } from './requests.ts';
import { DynamoRunStore } from './run-store.ts';
import { DynamoSchedulingStateStore } from './slot-pools.ts';
import { DynamoTaskInstanceStore } from './task-instance-store.ts';
import { DynamoTriggerStore } from './trigger-store.ts';
import { DynamoXComStore } from './xcom-store.ts';

export { MAX_VALUE_BYTES } from './dag-store.ts';

/**
 * The Store port over one DynamoDB table, one adapter per aggregate; see ADR.md for the key
 * design and its invariants.
 */
export class DynamoStore implements Store {
  readonly #dags: DynamoDagStore;
  readonly #runs: DynamoRunStore;
  readonly #taskInstances: DynamoTaskInstanceStore;
  readonly #xcoms: DynamoXComStore;
  readonly #scheduling: DynamoSchedulingStateStore;
  readonly #triggers: DynamoTriggerStore;
  readonly #jobs: DynamoJobStore;
  readonly #callbacks: DynamoCallbackStore;

  /**
   * `retentionDays` (UPDRAFT_RETENTION_DAYS): stamp a run's items with the table's time to live
   * that far ahead on every write (0 or absent: kept for good).
   */
  constructor(options: {
    client: DynamoDBDocumentClient;
    tableName: string;
    retentionDays?: number;
    now?: () => number;
  }) {
    const table = new TableRequests(options.client, options.tableName, {
      ...(options.retentionDays !== undefined ? { retentionDays: options.retentionDays } : {}),
      ...(options.now ? { now: options.now } : {}),
    });
    this.#dags = new DynamoDagStore(table);
    this.#taskInstances = new DynamoTaskInstanceStore(table);
    this.#runs = new DynamoRunStore(table, this.#dags, this.#taskInstances);
    this.#xcoms = new DynamoXComStore(table);
    this.#scheduling = new DynamoSchedulingStateStore(table);
    this.#triggers = new DynamoTriggerStore(table);
    this.#jobs = new DynamoJobStore(table);
    this.#callbacks = new DynamoCallbackStore(table);
  }

  // DAGs
  putSerializedDag(versionHash: string, dag: SerializedDag): Promise<void> {
    return this.#dags.putSerializedDag(versionHash, dag);
  }
  getSerializedDag(dagId: string, versionHash: string): Promise<SerializedDag | undefined> {
    return this.#dags.getSerializedDag(dagId, versionHash);
  }
  upsertDag(record: DagRecordUpsert): Promise<DagRecord> {
    return this.#dags.upsertDag(record);
  }
  getDag(dagId: string): Promise<DagRecord | undefined> {
    return this.#dags.getDag(dagId);
  }
  listDags(page: PageRequest): Promise<Page<DagRecord>> {
    return this.#dags.listDags(page);
  }
  countDags(): Promise<number> {
    return this.#dags.countDags();
  }
  updateDag(dagId: string, changes: DagRecordChanges, expectedRevision?: number): Promise<DagRecord> {
    return this.#dags.updateDag(dagId, changes, expectedRevision);
  }
  replaceImportErrors(errors: ImportError[]): Promise<void> {
    return this.#dags.replaceImportErrors(errors);
  }
  listImportErrors(): Promise<ImportError[]> {
    return this.#dags.listImportErrors();
  }

  // Runs
  createDagRun(run: DagRun, taskInstances: TaskInstance[]): Promise<void> {
    return this.#runs.createDagRun(run, taskInstances);
  }
  getDagRun(key: DagRunKey): Promise<DagRun | undefined> {
    return this.#runs.getDagRun(key);
  }
  getDagRunsWithDagVersions(
    runs: readonly DagRunKey[],
    versions: readonly DagVersionKey[],
  ): Promise<RunsWithVersions> {
    return this.#runs.getDagRunsWithDagVersions(runs, versions);
  }
  getRunSnapshot(key: DagRunKey): Promise<RunSnapshot | undefined> {
    return this.#runs.getRunSnapshot(key);
  }
  getRunHead(key: DagRunKey): Promise<RunHead | undefined> {
    return this.#runs.getRunHead(key);
  }
  putRunSummary(key: DagRunKey, summary: RunSummary): Promise<boolean> {
    return this.#runs.putRunSummary(key, summary);
  }
  updateRunSummary(
    key: DagRunKey,
    read: { clearCount: number; version: number },
    entries: Record<string, SummaryEntry>,
  ): Promise<boolean> {
    return this.#runs.updateRunSummary(key, read, entries);
  }
  listDagRuns(dagId: string, page: PageRequest): Promise<Page<DagRun>> {
    return this.#runs.listDagRuns(dagId, page);
  }
  countDagRuns(dagId: string): Promise<number> {
    return this.#runs.countDagRuns(dagId);
  }
  listActiveDagRuns(
    page: PageRequest & { dagId?: string },
  ): Promise<Page<DagRunKey & { state: DagRunState }>> {
    return this.#runs.listActiveDagRuns(page);
  }
  transitionDagRun(
    key: DagRunKey,
    expected: DagRunExpectation,
    changes: DagRunChanges,
    options?: RunTransitionOptions,
  ): Promise<DagRun> {
    return this.#runs.transitionDagRun(key, expected, changes, options);
  }
  markRunCleared(key: DagRunKey, phase: 'begin' | 'end'): Promise<DagRun> {
    return this.#runs.markRunCleared(key, phase);
  }

  // Task instances
  getTaskInstance(key: TaskInstanceKey): Promise<TaskInstance | undefined> {
    return this.#taskInstances.getTaskInstance(key);
  }
  getTaskInstances(keys: readonly TaskInstanceKey[]): Promise<TaskInstance[]> {
    return this.#taskInstances.getTaskInstances(keys);
  }
  createMissingTaskInstances(taskInstances: TaskInstance[]): Promise<void> {
    return this.#taskInstances.createMissingTaskInstances(taskInstances);
  }
  transitionTaskInstance(
    key: TaskInstanceKey,
    expected: TaskInstanceExpectation,
    changes: TaskInstanceChanges,
    options?: TransitionOptions,
  ): Promise<TaskInstance> {
    return this.#taskInstances.transitionTaskInstance(key, expected, changes, options);
  }

  // XCom
  putXCom(key: XComKey, value: string, tryNumber?: number): Promise<void> {
    return this.#xcoms.putXCom(key, value, tryNumber);
  }
  getXCom(key: XComKey): Promise<string | undefined> {
    return this.#xcoms.getXCom(key);
  }
  getXComEntry(key: XComKey): Promise<XComEntry | undefined> {
    return this.#xcoms.getXComEntry(key);
  }
  deleteXComs(ti: TaskInstanceKey): Promise<void> {
    return this.#xcoms.deleteXComs(ti);
  }

  // Scheduling state
  getSlotPool(ref: SlotPoolRef): Promise<SlotPoolState> {
    return this.#scheduling.getSlotPool(ref);
  }
  updateSlotPool(ref: SlotPoolRef, change: SlotPoolChange): Promise<SlotPoolState> {
    return this.#scheduling.updateSlotPool(ref, change);
  }
  getReconcileCursor(): Promise<ReconcileCursor> {
    return this.#scheduling.getReconcileCursor();
  }
  putReconcileCursor(cursor: string | undefined, expectedVersion: number): Promise<boolean> {
    return this.#scheduling.putReconcileCursor(cursor, expectedVersion);
  }

  // Triggers
  putTrigger(trigger: Trigger): Promise<void> {
    return this.#triggers.putTrigger(trigger);
  }
  getTrigger(triggerId: string): Promise<Trigger | undefined> {
    return this.#triggers.getTrigger(triggerId);
  }
  getTriggers(triggerIds: readonly string[]): Promise<Trigger[]> {
    return this.#triggers.getTriggers(triggerIds);
  }
  deleteTrigger(triggerId: string, expectedJobId?: string | null): Promise<void> {
    return this.#triggers.deleteTrigger(triggerId, expectedJobId);
  }
  deleteTriggers(triggerIds: readonly string[]): Promise<void> {
    return this.#triggers.deleteTriggers(triggerIds);
  }
  listUnclaimedTriggers(queues: readonly string[], limit: number): Promise<Trigger[]> {
    return this.#triggers.listUnclaimedTriggers(queues, limit);
  }
  listTriggersOfJob(jobId: string, page: PageRequest): Promise<Page<Trigger>> {
    return this.#triggers.listTriggersOfJob(jobId, page);
  }
  listTriggers(page: PageRequest): Promise<Page<Trigger>> {
    return this.#triggers.listTriggers(page);
  }

  countTriggers(cap: number): Promise<number> {
    return this.#triggers.countTriggers(cap);
  }

  claimTrigger(
    triggerId: string,
    expectedJobId: string | null,
    jobId: string,
    claimedAt: string,
    takeovers?: number,
  ): Promise<Trigger> {
    return this.#triggers.claimTrigger(triggerId, expectedJobId, jobId, claimedAt, takeovers);
  }
  releaseTrigger(triggerId: string, jobId: string): Promise<void> {
    return this.#triggers.releaseTrigger(triggerId, jobId);
  }

  // Triggerer jobs
  putJob(job: TriggererJob): Promise<void> {
    return this.#jobs.putJob(job);
  }
  getJob(jobId: string): Promise<TriggererJob | undefined> {
    return this.#jobs.getJob(jobId);
  }
  heartbeatJob(jobId: string, heartbeatAt: string, running: number): Promise<TriggererJob> {
    return this.#jobs.heartbeatJob(jobId, heartbeatAt, running);
  }
  completeJob(jobId: string, endedAt: string, expectedHeartbeatAt?: string): Promise<TriggererJob> {
    return this.#jobs.completeJob(jobId, endedAt, expectedHeartbeatAt);
  }
  listJobs(page: PageRequest): Promise<Page<TriggererJob>> {
    return this.#jobs.listJobs(page);
  }
  deleteJob(jobId: string): Promise<void> {
    return this.#jobs.deleteJob(jobId);
  }

  // Callbacks
  putCallback(callback: Callback, dueAt: string | null, index?: CallbackIndex): Promise<boolean> {
    return this.#callbacks.putCallback(callback, dueAt, index);
  }
  getCallback(key: CallbackKey): Promise<Callback | undefined> {
    return this.#callbacks.getCallback(key);
  }
  listCallbacks(run: DagRunKey, page: PageRequest): Promise<Page<Callback>> {
    return this.#callbacks.listCallbacks(run, page);
  }

  callbacksCursorAfter(key: CallbackKey): string {
    return this.#callbacks.callbacksCursorAfter(key);
  }

  listDueCallbacks(now: string, limit: number): Promise<Callback[]> {
    return this.#callbacks.listDueCallbacks(now, limit);
  }
  listClaimableCallbacks(now: string, limit: number): Promise<Callback[]> {
    return this.#callbacks.listClaimableCallbacks(now, limit);
  }
  countTriggererCallbacks(now: string, cap: number): Promise<number> {
    return this.#callbacks.countTriggererCallbacks(now, cap);
  }
  transitionCallback(
    key: CallbackKey,
    expected: CallbackExpectation,
    changes: Partial<Omit<Callback, 'callbackId' | 'dagId' | 'runId' | 'revision'>>,
    dueAt: string | null,
    index?: CallbackIndex,
  ): Promise<Callback> {
    return this.#callbacks.transitionCallback(key, expected, changes, dueAt, index);
  }
  settleOwed(owner: ItemKey, elements: readonly string[]): Promise<void> {
    return this.#callbacks.settleOwed(owner, elements);
  }
  listOwedOwners(before: string, limit: number): Promise<ItemKey[]> {
    return this.#callbacks.listOwedOwners(before, limit);
  }
  getOwedOwner(owner: ItemKey): Promise<OwedOwner | undefined> {
    return this.#callbacks.getOwedOwner(owner);
  }
}

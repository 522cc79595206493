import type { Callback, CallbackKey, CallbackState } from '#core/callbacks.ts';
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
import type { DagRunState, TaskInstanceState } from '#core/states.ts';
import type { CallbackIndex, ItemKey } from './keys.ts';

/** What the store keeps about a DAG besides its serialized versions. */
export interface DagRecord {
  dagId: string;
  fileloc: string;
  versionHash: string;
  isPaused: boolean;
  /** False once the DAG's file no longer defines it; its runs stay readable. */
  isActive: boolean;
  description: string | null;
  tags: string[];
  /** Human-readable schedule (`cron(...)`, `rate(...)`) or null for manual-only DAGs. */
  scheduleExpression: string | null;
  /** Logical date of the next scheduled run still to be created, or null when nothing is due. */
  nextRunAt: string | null;
  lastParsedAt: string;
  /** Runs created for this DAG; maintained by `createDagRun`, read by `countDagRuns`. */
  runCount: number;
  revision: number;
}

export interface ImportError {
  fileloc: string;
  message: string;
  timestamp: string;
}

export interface Page<T> {
  items: T[];
  /** Opaque cursor for the next page; absent on the last page. */
  nextCursor?: string;
}

export interface PageRequest {
  limit: number;
  cursor?: string;
}

/** The expected current state of an item: a write only applies when the stored item matches it. */
export interface TaskInstanceExpectation {
  state: TaskInstanceState | readonly TaskInstanceState[];
  tryNumber?: number;
  /** The write applies only when the stored item is at this revision (nothing changed since it was read). */
  revision?: number;
  /** The write applies only to this deferral of the try (`deferralSeq` as stored). */
  deferralSeq?: number;
  /** The write applies only when the stored `reportId` is not this one (the report is not recorded yet). */
  reportIdNot?: string;
}

export interface TransitionOptions {
  /** A clear: any state may go back to `none` (not a transition of the table, a reset). */
  reset?: boolean;
  /**
   * Callbacks the change owes (encoded `OwedCallback`s), added to the item's owed set by the same
   * conditional write. Required (`[]` for none) on every change into a state that can owe one, so
   * no caller can forget to say (`assertOwedStated`).
   */
  owed?: readonly string[];
}

export interface RunTransitionOptions {
  /** As `TransitionOptions.owed`, for a run's finish (and a missed deadline's callbacks). */
  owed?: readonly string[];
  /**
   * Decides deadlines of the run (`DagRun.deadlines`, by position): each is set to its state by the
   * same write, which applies only if each is still `pending` (else `ConditionFailedError`).
   */
  deadlines?: readonly DeadlineDecision[];
}

/** A deadline of a run decided: its position in `DagRun.deadlines` and its final state. */
export interface DeadlineDecision {
  position: number;
  state: 'met' | 'missed';
}

/** The expected current state of a run; `clearCount` guards a finish against a concurrent clear. */
export type DagRunExpectation =
  | DagRunState
  | readonly DagRunState[]
  | { state: DagRunState | readonly DagRunState[]; clearCount?: number };

export type TaskInstanceChanges = Partial<
  Omit<TaskInstance, 'dagId' | 'runId' | 'taskId' | 'mapIndex' | 'revision'>
>;
export type DagRunChanges = Partial<
  Omit<DagRun, 'dagId' | 'runId' | 'revision' | 'runType' | 'logicalDate' | 'clearCount' | 'deadlines'>
>;
export type DagRecordChanges = Partial<Omit<DagRecord, 'dagId' | 'revision' | 'runCount'>>;
/** What `upsertDag` takes: the store keeps revision and run count, and the stored pause state and next run win. */
export type DagRecordUpsert = Omit<DagRecord, 'revision' | 'runCount'>;

export interface XComKey extends TaskInstanceKey {
  key: string;
}

/** A run with all its task instances, as the scheduler evaluates it. */
export interface RunSnapshot {
  run: DagRun;
  taskInstances: TaskInstance[];
  /** The run's `run_tasks` slot pool (read by the same query); empty when never written. */
  taskSlots: SlotPoolState;
  /** The run's per-task state summary (read by the same query); undefined when never written. */
  summary?: RunSummary;
}

/** A run's own items without its TIs: what a scheduling pass reads first (one query). */
export type RunHead = Omit<RunSnapshot, 'taskInstances'>;

/** A slot pool: a named pool, a run's `max_active_tasks` or a DAG's `max_active_runs`. */
export type SlotPoolRef =
  | { kind: 'pool'; pool: string } // pk POOLS, sk POOL#<name>
  | { kind: 'run_tasks'; dagId: string; runId: string } // pk RUN#<dag>#<run>, sk #SLOTS (the run partition)
  | { kind: 'dag_runs'; dagId: string }; // pk DAG#<dag>, sk RUN_SLOTS

export interface SlotHolder {
  /** TI: a stable id of the task instance; run: the run id. Any string. */
  id: string;
  /** Weight: the TI's pool slots; 1 for run_tasks and dag_runs. */
  slots: number;
  /** The try the holder is for (the TI's try after queueing); for dag_runs, the run's clear count. */
  tryNumber: number;
  /** Who reserved it: the random id of the scheduling pass. */
  passId: string;
  /** ISO time reserved. */
  at: string;
  /** run_tasks holders: the named pool the TI also holds slots in. */
  pool?: string;
}

export interface SlotPoolState {
  /** Sum of the holders' slots. */
  used: number;
  holders: Record<string, SlotHolder>;
  /** `${dagId}#${runId}` -> ISO time it started waiting. */
  waiting: Record<string, string>;
}

export interface SlotPoolChange {
  /** Capacity enforced when acquiring. */
  size: number;
  /** Each only if absent; used + acquired - released <= size. */
  acquire: SlotHolder[];
  /**
   * Each only if present (and reserved by `passId` when given). `slots`, when the caller knows
   * it (from a read of the pool, or 1 for run_tasks and dag_runs), saves the read that finds it;
   * the write is conditional on it either way.
   */
  release: { id: string; passId?: string; slots?: number }[];
  setWaiting?: Record<string, string>;
  removeWaiting?: string[];
}

export interface ReconcileCursor {
  cursor: string | undefined;
  /** 0 before the first put. */
  version: number;
}

/** DAG records, their serialized versions and import errors. */
export interface DagStore {
  putSerializedDag(versionHash: string, dag: SerializedDag): Promise<void>;
  getSerializedDag(dagId: string, versionHash: string): Promise<SerializedDag | undefined>;
  /** Creates the DAG record, or updates its parse-time fields while keeping pause state and next run. */
  upsertDag(record: DagRecordUpsert): Promise<DagRecord>;
  getDag(dagId: string): Promise<DagRecord | undefined>;
  listDags(page: PageRequest): Promise<Page<DagRecord>>;
  /** Number of DAG records (every page counted). */
  countDags(): Promise<number>;
  /** Conditional on the stored revision when `expectedRevision` is given. */
  updateDag(dagId: string, changes: DagRecordChanges, expectedRevision?: number): Promise<DagRecord>;
  /** Writes only the differences: new errors, changed messages, and deletes of errors gone. */
  replaceImportErrors(errors: ImportError[]): Promise<void>;
  listImportErrors(): Promise<ImportError[]>;
}

/** One version of a DAG, by the hash of its serialized form. */
export interface DagVersionKey {
  dagId: string;
  versionHash: string;
}

/** One item of a read of several: its value, or why its stored item could not be decoded. */
export type ItemRead<Key, Value> = Key & ({ value: Value } | { error: Error });

/** What `getDagRunsWithDagVersions` returns. */
export interface RunsWithVersions {
  runs: ItemRead<DagRunKey, DagRun>[];
  versions: ItemRead<DagVersionKey, SerializedDag>[];
}

/** DAG runs. */
export interface RunStore {
  /**
   * Creates a run and its task instances (conditional puts: an existing TI is never overwritten)
   * and counts it on the DAG record; throws `AlreadyExistsError` when the run id is taken.
   */
  createDagRun(run: DagRun, taskInstances: TaskInstance[]): Promise<void>;
  getDagRun(key: DagRunKey): Promise<DagRun | undefined>;
  /**
   * Runs and versions of their DAGs read together: one BatchGetItem per 100 keys. Those that do
   * not exist are left out; one whose stored item cannot be decoded comes back as its error, so
   * it fails only the caller that needs it.
   */
  getDagRunsWithDagVersions(
    runs: readonly DagRunKey[],
    versions: readonly DagVersionKey[],
  ): Promise<RunsWithVersions>;
  /** A run with its unmapped task instances and its task slots: one consistent query of the run partition. */
  getRunSnapshot(key: DagRunKey): Promise<RunSnapshot | undefined>;
  /** The run, its task slots and its summary, without its TIs: one query of a few items, whatever the run's size. */
  getRunHead(key: DagRunKey): Promise<RunHead | undefined>;
  /**
   * Writes a run's whole summary unless the stored one is for the same or a later clear (a
   * rebuild from an older read never wins); tells whether it was written.
   */
  putRunSummary(key: DagRunKey, summary: RunSummary): Promise<boolean>;
  /** Sets summary entries, conditional on the summary being the one read (clear count and version); false when it is not. */
  updateRunSummary(
    key: DagRunKey,
    read: { clearCount: number; version: number },
    entries: Record<string, SummaryEntry>,
  ): Promise<boolean>;
  /** Runs of one DAG, newest logical date first. */
  listDagRuns(dagId: string, page: PageRequest): Promise<Page<DagRun>>;
  /** Number of runs of one DAG (the DAG record's run count; 0 for an unknown DAG). */
  countDagRuns(dagId: string): Promise<number>;
  /** Runs in `queued` or `running` state across all DAGs (or one DAG), in (dag id, run id) order. */
  listActiveDagRuns(
    page: PageRequest & { dagId?: string },
  ): Promise<Page<DagRunKey & { state: DagRunState }>>;
  transitionDagRun(
    key: DagRunKey,
    expected: DagRunExpectation,
    changes: DagRunChanges,
    options?: RunTransitionOptions,
  ): Promise<DagRun>;
  /**
   * A clear begins (`clearCount += 1`, `clearsInProgress += 1`) or ends (`clearCount += 1`,
   * `clearsInProgress -= 1`), in any state; `NotFoundError` when the run does not exist.
   */
  markRunCleared(key: DagRunKey, phase: 'begin' | 'end'): Promise<DagRun>;
}

/** Task instances. */
export interface TaskInstanceStore {
  getTaskInstance(key: TaskInstanceKey): Promise<TaskInstance | undefined>;
  /** Strongly consistent batch read (BatchGetItem, 100 keys a call); TIs that do not exist are left out. */
  getTaskInstances(keys: readonly TaskInstanceKey[]): Promise<TaskInstance[]>;
  /** Creates task instances that do not exist yet (a run's repair after a partial write); existing ones are kept. */
  createMissingTaskInstances(taskInstances: TaskInstance[]): Promise<void>;
  /**
   * Refuses (with a `StoreError`, before any request) a change of state that
   * `TASK_INSTANCE_TRANSITIONS` does not allow from an expected state; `reset` allows any → `none`.
   */
  transitionTaskInstance(
    key: TaskInstanceKey,
    expected: TaskInstanceExpectation,
    changes: TaskInstanceChanges,
    options?: TransitionOptions,
  ): Promise<TaskInstance>;
}

/** XCom values of task instances. */
/** An XCom value with the try that wrote it. */
export interface XComEntry {
  value: string;
  /** The try of the task instance that wrote it; 0 for values written without one. */
  tryNumber: number;
}

export interface XComStore {
  /**
   * Writes an XCom for try `tryNumber` (default 0). Conditional: an XCom written by a later try
   * is never overwritten by an earlier one (`ConditionFailedError`).
   */
  putXCom(key: XComKey, value: string, tryNumber?: number): Promise<void>;
  getXCom(key: XComKey): Promise<string | undefined>;
  getXComEntry(key: XComKey): Promise<XComEntry | undefined>;
  deleteXComs(ti: TaskInstanceKey): Promise<void>;
}

/** Scheduling state shared by every scheduler instance: slot pools and the reconcile cursor. */
export interface SchedulingStateStore {
  /** Consistent read; the empty state when the pool was never written. */
  getSlotPool(ref: SlotPoolRef): Promise<SlotPoolState>;
  /** One conditional UpdateItem. Throws `ConditionFailedError` (nothing written) when any condition fails. */
  updateSlotPool(ref: SlotPoolRef, change: SlotPoolChange): Promise<SlotPoolState>;
  getReconcileCursor(): Promise<ReconcileCursor>;
  /** Conditional on the version read; false when another tick moved it first. */
  putReconcileCursor(cursor: string | undefined, expectedVersion: number): Promise<boolean>;
}

/**
 * Trigger rows (one per deferral). Items live in one partition, `TRIGGERS`; the sparse index
 * gsi1 holds each under `TRIGGERS#QUEUE#<queue>` while unclaimed and `TRIGGERS#JOB#<jobId>`
 * while claimed, so a claim and a takeover query only what they need.
 */
export interface TriggerStore {
  /** Creates the trigger; a trigger with the same id already stored is kept (the same deferral again). */
  putTrigger(trigger: Trigger): Promise<void>;
  getTrigger(triggerId: string): Promise<Trigger | undefined>;
  /** Strongly consistent batch read; missing ids are left out. */
  getTriggers(triggerIds: readonly string[]): Promise<Trigger[]>;
  /** Deletes it (when held by `expectedJobId`, if given); a trigger already gone is not an error. */
  deleteTrigger(triggerId: string, expectedJobId?: string | null): Promise<void>;
  /**
   * Deletes these triggers whoever holds them (BatchWriteItem, 25 a request): for triggers whose
   * deferral is over. Ids already gone are not an error.
   */
  deleteTriggers(triggerIds: readonly string[]): Promise<void>;
  /** Unclaimed triggers of these queues, oldest first (the index is eventually consistent). */
  listUnclaimedTriggers(queues: readonly string[], limit: number): Promise<Trigger[]>;
  listTriggersOfJob(jobId: string, page: PageRequest): Promise<Page<Trigger>>;
  /** Every trigger, by id. */
  listTriggers(page: PageRequest): Promise<Page<Trigger>>;
  /** How many triggers are stored, counting at most `cap` (one query that returns no items). */
  countTriggers(cap: number): Promise<number>;
  /**
   * Gives the trigger to `jobId` if it is held by `expectedJobId` (null: unclaimed);
   * `ConditionFailedError` otherwise, nothing written.
   */
  claimTrigger(
    triggerId: string,
    expectedJobId: string | null,
    jobId: string,
    claimedAt: string,
    /** Sets the trigger's takeover count (a takeover from a dead job). */
    takeovers?: number,
  ): Promise<Trigger>;
  /** Back to unclaimed, if held by `jobId`; a trigger gone or held by another is left as it is. */
  releaseTrigger(triggerId: string, jobId: string): Promise<void>;
}

/** Triggerer liveness jobs. */
export interface JobStore {
  /** Creates the job; `AlreadyExistsError` when the id is taken. */
  putJob(job: TriggererJob): Promise<void>;
  getJob(jobId: string): Promise<TriggererJob | undefined>;
  /** Records a heartbeat of a running job; `ConditionFailedError` when the job is complete or gone. */
  heartbeatJob(jobId: string, heartbeatAt: string, running: number): Promise<TriggererJob>;
  /**
   * Marks it complete (idempotent); `NotFoundError` when it does not exist. With
   * `expectedHeartbeatAt` only if its last heartbeat is still that one (declaring a silent job
   * dead), else `ConditionFailedError`.
   */
  completeJob(jobId: string, endedAt: string, expectedHeartbeatAt?: string): Promise<TriggererJob>;
  listJobs(page: PageRequest): Promise<Page<TriggererJob>>;
  deleteJob(jobId: string): Promise<void>;
}

/** The expected state of a callback item: a write applies only when the stored item matches. */
export interface CallbackExpectation {
  state: CallbackState | readonly CallbackState[];
  attempt?: number;
  revision?: number;
}

/** An item holding owed callbacks, as the owed index names it. */
export type OwedOwner =
  | { kind: 'run'; itemKey: ItemKey; run: DagRun }
  | { kind: 'task_instance'; itemKey: ItemKey; ti: TaskInstance };

/**
 * Callbacks (`core/callbacks.ts`): their items, the due index over those not final, and the owed
 * sets their owners hold until they are settled.
 */
export interface CallbackStore {
  /**
   * Creates the item unless one with its id exists (the same callback owed again); tells whether
   * it wrote. `index`: where it waits from `dueAt` on (see `CallbackIndex`).
   */
  putCallback(callback: Callback, dueAt: string | null, index?: CallbackIndex): Promise<boolean>;
  getCallback(key: CallbackKey): Promise<Callback | undefined>;
  /** A run's callbacks, by id. */
  listCallbacks(run: DagRunKey, page: PageRequest): Promise<Page<Callback>>;
  /** The `listCallbacks` cursor that resumes right after this callback (a page cut short by a filter). */
  callbacksCursorAfter(key: CallbackKey): string;
  /** Callbacks not final whose due time is `now` or earlier, oldest first (eventually consistent). */
  listDueCallbacks(now: string, limit: number): Promise<Callback[]>;
  /** Callbacks a triggerer may claim now (claimable from `now` or earlier), oldest first (eventually consistent). */
  listClaimableCallbacks(now: string, limit: number): Promise<Callback[]>;
  /**
   * How many callbacks a triggerer has to run: claimable by `now`, or claimed or running on one;
   * counted up to `cap` (a retry waiting out its delay is not counted until it is claimable).
   */
  countTriggererCallbacks(now: string, cap: number): Promise<number>;
  /**
   * A conditional change; `dueAt` is when a tick must look at it next (null: final, out of the
   * due index), or with `index: 'triggerer'` when a triggerer may claim it.
   * `ConditionFailedError` when it does not match `expected`.
   */
  transitionCallback(
    key: CallbackKey,
    expected: CallbackExpectation,
    changes: Partial<Omit<Callback, 'callbackId' | 'dagId' | 'runId' | 'revision'>>,
    dueAt: string | null,
    index?: CallbackIndex,
  ): Promise<Callback>;
  /** Removes these elements from the owner's owed set, and the owner from the owed index once it is empty. */
  settleOwed(owner: ItemKey, elements: readonly string[]): Promise<void>;
  /** Owners whose owed index entry sorts before `before` (an ISO time): oldest first. */
  listOwedOwners(before: string, limit: number): Promise<ItemKey[]>;
  /** The owner item, read consistently; undefined when it is gone. */
  getOwedOwner(owner: ItemKey): Promise<OwedOwner | undefined>;
}

/**
 * The store port. Every state change is a conditional write that states its precondition;
 * a write whose precondition no longer holds throws `ConditionFailedError` and changes nothing,
 * so a duplicated or late message is harmless. Listing methods are paginated.
 */
export interface Store
  extends DagStore,
    RunStore,
    TaskInstanceStore,
    XComStore,
    SchedulingStateStore,
    TriggerStore,
    JobStore,
    CallbackStore {}

import type { DagRun, DagRunKey, TaskInstance, TaskInstanceKey } from '#core/models.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import type { DagRunState, TaskInstanceState } from '#core/states.ts';

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
}

export type TaskInstanceChanges = Partial<
  Omit<TaskInstance, 'dagId' | 'runId' | 'taskId' | 'mapIndex' | 'revision'>
>;
export type DagRunChanges = Partial<Omit<DagRun, 'dagId' | 'runId' | 'revision' | 'runType' | 'logicalDate'>>;
export type DagRecordChanges = Partial<Omit<DagRecord, 'dagId' | 'revision'>>;

export interface XComKey extends TaskInstanceKey {
  key: string;
}

/** A run with all its task instances, as the scheduler evaluates it. */
export interface RunSnapshot {
  run: DagRun;
  taskInstances: TaskInstance[];
}

/**
 * The store port. Every state change is a conditional write that states its precondition;
 * a write whose precondition no longer holds throws `ConditionFailedError` and changes nothing,
 * so a duplicated or late message is harmless. Listing methods are paginated.
 */
export interface Store {
  // DAGs and their serialized versions
  putSerializedDag(versionHash: string, dag: SerializedDag): Promise<void>;
  getSerializedDag(dagId: string, versionHash: string): Promise<SerializedDag | undefined>;
  /** Creates the DAG record, or updates its parse-time fields while keeping pause state and next run. */
  upsertDag(
    record: Omit<DagRecord, 'revision' | 'isPaused' | 'nextRunAt'> & {
      isPaused: boolean;
      nextRunAt: string | null;
    },
  ): Promise<DagRecord>;
  getDag(dagId: string): Promise<DagRecord | undefined>;
  listDags(page: PageRequest): Promise<Page<DagRecord>>;
  /** Number of DAG records (every page counted). */
  countDags(): Promise<number>;
  /** Conditional on the stored revision when `expectedRevision` is given. */
  updateDag(dagId: string, changes: DagRecordChanges, expectedRevision?: number): Promise<DagRecord>;
  replaceImportErrors(errors: ImportError[]): Promise<void>;
  listImportErrors(): Promise<ImportError[]>;

  // DAG runs
  /** Creates a run and its task instances; throws `AlreadyExistsError` when the run id is taken. */
  createDagRun(run: DagRun, taskInstances: TaskInstance[]): Promise<void>;
  getDagRun(key: DagRunKey): Promise<DagRun | undefined>;
  /** Runs of one DAG, newest logical date first. */
  listDagRuns(dagId: string, page: PageRequest): Promise<Page<DagRun>>;
  /** Number of runs of one DAG (every page counted; the API's `total_entries`). */
  countDagRuns(dagId: string): Promise<number>;
  /** Runs in `queued` or `running` state across all DAGs (or one DAG), in (dag id, run id) order. */
  listActiveDagRuns(
    page: PageRequest & { dagId?: string },
  ): Promise<Page<DagRunKey & { state: DagRunState }>>;
  transitionDagRun(
    key: DagRunKey,
    expected: DagRunState | readonly DagRunState[],
    changes: DagRunChanges,
  ): Promise<DagRun>;

  // Task instances
  getRunSnapshot(key: DagRunKey): Promise<RunSnapshot | undefined>;
  getTaskInstance(key: TaskInstanceKey): Promise<TaskInstance | undefined>;
  /** Creates task instances that do not exist yet (a run's repair after a partial write); existing ones are kept. */
  createMissingTaskInstances(taskInstances: TaskInstance[]): Promise<void>;
  transitionTaskInstance(
    key: TaskInstanceKey,
    expected: TaskInstanceExpectation,
    changes: TaskInstanceChanges,
  ): Promise<TaskInstance>;

  // XCom
  putXCom(key: XComKey, value: string): Promise<void>;
  getXCom(key: XComKey): Promise<string | undefined>;
  deleteXComs(ti: TaskInstanceKey): Promise<void>;
}

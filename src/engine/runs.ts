import { invalidIdReason } from '#core/ids.ts';
import { type DagRun, newTaskInstance, type RunType } from '#core/models.ts';
import { effectivePriorityWeights } from '#core/priority.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import { AlreadyExistsError } from '#store/errors.ts';
import type { Store } from '#store/port.ts';
import { armDeadlines, deadlinesOfNewRun } from './deadlines.ts';
import { InvalidRequestError, LimitExceededError, StateConflictError } from './errors.ts';
import type { Logger } from './logger.ts';
import type { WakeTimers } from './ports.ts';

export interface CreateRunRequest {
  dag: SerializedDag;
  versionHash: string;
  runType: RunType;
  logicalDate: string;
  runId?: string;
  conf?: Record<string, unknown>;
  dataIntervalStart?: string | null;
  dataIntervalEnd?: string | null;
  now: string;
  confMaxBytes: number;
}

/** Airflow's run id format: `manual__<logical date>` or `scheduled__<logical date>`. */
export function defaultRunId(runType: RunType, logicalDate: string): string {
  return `${runType}__${logicalDate}`;
}

/**
 * Creates a DAG run in `queued` state with one task instance per task, all in state `none`, and
 * its deadlines (written with the run). With `timers` (the scheduler has them, the API does not)
 * a wake-up is set at each deadline; a run created without is armed when it starts.
 */
export async function createDagRun(
  store: Store,
  request: CreateRunRequest,
  arming?: { timers: WakeTimers; log: Logger },
): Promise<DagRun> {
  const { dag } = request;
  const runId = request.runId ?? defaultRunId(request.runType, request.logicalDate);
  const invalidRunId = invalidIdReason('run', runId);
  if (invalidRunId !== undefined) throw new InvalidRequestError(`Invalid dag_run_id: ${invalidRunId}`);
  const conf = request.conf ?? {};
  const confBytes = Buffer.byteLength(JSON.stringify(conf));
  if (confBytes > request.confMaxBytes) {
    throw new LimitExceededError(
      `conf of the run is ${confBytes} bytes, over the limit of ${request.confMaxBytes} bytes (UPDRAFT_CONF_MAX_BYTES)`,
    );
  }
  const run: DagRun = {
    dagId: dag.dagId,
    runId,
    runType: request.runType,
    state: 'queued',
    logicalDate: request.logicalDate,
    dataIntervalStart: request.dataIntervalStart ?? null,
    dataIntervalEnd: request.dataIntervalEnd ?? null,
    conf,
    dagVersion: request.versionHash,
    queuedAt: request.now,
    startDate: null,
    endDate: null,
    clearCount: 0,
    revision: 0,
  };
  const deadlines = await deadlinesOfNewRun(store, dag, run);
  if (deadlines) run.deadlines = deadlines;
  const weights = effectivePriorityWeights(dag);
  const taskInstances = dag.tasks.map((task) =>
    newTaskInstance(
      { dagId: dag.dagId, runId, taskId: task.taskId, mapIndex: -1 },
      { ...task, priorityWeight: weights.get(task.taskId) ?? task.priorityWeight },
    ),
  );
  try {
    await store.createDagRun(run, taskInstances);
  } catch (error) {
    if (error instanceof AlreadyExistsError) {
      throw new StateConflictError(`DAG run ${dag.dagId}/${runId} already exists`, { cause: error });
    }
    throw error;
  }
  if (arming && run.deadlines) await armDeadlines(arming, run);
  return run;
}

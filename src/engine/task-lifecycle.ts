import {
  type DagRun,
  type DagRunKey,
  formatTaskInstanceKey,
  type TaskInstance,
  type TaskInstanceKey,
} from '#core/models.ts';
import { failureTransition } from '#core/retry.ts';
import type { SerializedDag, SerializedTask } from '#core/serialized-dag.ts';
import { ConditionFailedError } from '#store/errors.ts';
import type { Store, TaskInstanceChanges, TaskInstanceExpectation } from '#store/port.ts';
import type { DagVersionCache } from './dag-cache.ts';
import { InvalidRequestError, LimitExceededError, NotFoundError, StateConflictError } from './errors.ts';
import type { SchedulingNotifier } from './notifier.ts';

export interface TaskLifecycleDeps {
  store: Store;
  dags: DagVersionCache;
  notifier: SchedulingNotifier;
  xcomMaxBytes: number;
  now: () => number;
}

export interface StartedTaskInstance {
  ti: TaskInstance;
  run: DagRun;
  dag: SerializedDag;
  task: SerializedTask;
}

export type TaskReport =
  | { state: 'success'; xcom?: string; followTaskIds?: string[] }
  | { state: 'skipped'; reason?: string }
  | { state: 'failed'; errorMessage: string; retryable: boolean }
  /** The worker stopped before the task finished (a graceful shutdown): run it again without using a try. */
  | { state: 'handed_back' };

/**
 * The task instance lifecycle as the Execution API drives it. Each step is one conditional
 * write on the TI (expected state and try number), so a duplicated or late report changes
 * nothing and gets a `StateConflictError`.
 */
export class TaskLifecycle {
  readonly #deps: TaskLifecycleDeps;
  /** A run's logical date, intervals, conf and DAG version never change: read each run once. */
  readonly #runs = new Map<string, DagRun>();

  constructor(deps: TaskLifecycleDeps) {
    this.#deps = deps;
  }

  /** queued → running, only for the try the workload was issued for. */
  async start(key: TaskInstanceKey, tryNumber: number, worker: { hostname: string; workerId: string }) {
    const run = await this.#run(key);
    const now = new Date(this.#deps.now()).toISOString();
    const ti = await this.#transition(
      key,
      { state: 'queued', tryNumber },
      {
        state: 'running',
        startDate: now,
        endDate: null,
        heartbeatAt: now,
        hostname: worker.hostname,
        workerId: worker.workerId,
        errorMessage: null,
        durationMs: null,
      },
    );
    const dag = await this.#deps.dags.get(run.dagId, run.dagVersion);
    const task = findTask(dag, key);
    return { ti, run, dag, task } satisfies StartedTaskInstance;
  }

  /** Records liveness; refused once the TI left `running` (cleared, failed as a zombie, …). */
  async heartbeat(key: TaskInstanceKey, tryNumber: number): Promise<TaskInstance> {
    return this.#transition(
      key,
      { state: 'running', tryNumber },
      {
        heartbeatAt: new Date(this.#deps.now()).toISOString(),
      },
    );
  }

  /**
   * Records how a try ended. Success and skip are one conditional write (plus the XCom); only
   * a failure or a hand-back reads the TI first, to decide on a retry or to give the try back.
   */
  async finish(key: TaskInstanceKey, tryNumber: number, report: TaskReport): Promise<TaskInstance> {
    const nowMs = this.#deps.now();
    const ended = { endDate: new Date(nowMs).toISOString(), heartbeatAt: null };
    let changes: TaskInstanceChanges;
    switch (report.state) {
      case 'success': {
        if (report.followTaskIds) await this.#checkBranchChoice(key, report.followTaskIds);
        if (report.xcom !== undefined) {
          const bytes = Buffer.byteLength(report.xcom);
          if (bytes > this.#deps.xcomMaxBytes) {
            throw new LimitExceededError(
              `XCom return_value of ${formatTaskInstanceKey(key)} is ${bytes} bytes, over the limit of ${this.#deps.xcomMaxBytes} bytes (UPDRAFT_XCOM_MAX_BYTES)`,
            );
          }
          await this.#expectRunning(key, tryNumber);
          // Written before the state change, so a downstream task never sees success without its XCom.
          await this.#deps.store.putXCom({ ...key, key: 'return_value' }, report.xcom);
        }
        changes = { ...ended, state: 'success', followTaskIds: report.followTaskIds ?? null };
        break;
      }
      case 'skipped':
        changes = { ...ended, state: 'skipped', errorMessage: report.reason ?? null };
        break;
      case 'failed': {
        const current = await this.#expectRunning(key, tryNumber);
        const task = findTask(await this.#dagOf(key), key);
        const next = failureTransition(current, task, nowMs, { retryable: report.retryable });
        changes = {
          ...ended,
          state: next.state,
          nextRetryAt: next.state === 'up_for_retry' ? next.nextRetryAt : null,
          errorMessage: report.errorMessage,
        };
        break;
      }
      case 'handed_back': {
        const current = await this.#expectRunning(key, tryNumber);
        changes = {
          state: 'scheduled',
          maxTries: current.maxTries + 1,
          startDate: null,
          heartbeatAt: null,
          workerId: null,
          hostname: null,
        };
        break;
      }
    }
    const ti = await this.#transition(key, { state: 'running', tryNumber }, changes);
    this.#deps.notifier.notify(key);
    return ti;
  }

  async #expectRunning(key: TaskInstanceKey, tryNumber: number): Promise<TaskInstance> {
    const current = await this.#deps.store.getTaskInstance(key);
    if (!current) throw new NotFoundError(`Task instance ${formatTaskInstanceKey(key)} not found`);
    if (current.state !== 'running' || current.tryNumber !== tryNumber)
      throw conflict(key, current, 'running', tryNumber);
    return current;
  }

  async #run(key: DagRunKey): Promise<DagRun> {
    const cacheKey = `${key.dagId}\u0000${key.runId}`;
    const cached = this.#runs.get(cacheKey);
    if (cached) return cached;
    const run = await this.#deps.store.getDagRun(key);
    if (!run) throw new NotFoundError(`DAG run ${key.dagId}/${key.runId} not found`);
    this.#runs.set(cacheKey, run);
    if (this.#runs.size > 10_000) this.#runs.delete(this.#runs.keys().next().value as string);
    return run;
  }

  async #dagOf(key: DagRunKey): Promise<SerializedDag> {
    const run = await this.#run(key);
    return this.#deps.dags.get(run.dagId, run.dagVersion);
  }

  async #checkBranchChoice(key: TaskInstanceKey, followTaskIds: string[]): Promise<void> {
    const dag = await this.#dagOf(key);
    const downstream = new Set(dag.tasks.filter((t) => t.upstream.includes(key.taskId)).map((t) => t.taskId));
    const unknown = followTaskIds.filter((id) => !downstream.has(id));
    if (unknown.length > 0) {
      throw new InvalidRequestError(
        `Branch ${key.taskId} chose ${unknown.join(', ')}, which ${unknown.length > 1 ? 'are' : 'is'} not directly downstream of it`,
      );
    }
  }

  async #transition(
    key: TaskInstanceKey,
    expected: TaskInstanceExpectation & { tryNumber: number },
    changes: TaskInstanceChanges,
  ): Promise<TaskInstance> {
    try {
      return await this.#deps.store.transitionTaskInstance(key, expected, changes);
    } catch (error) {
      if (!(error instanceof ConditionFailedError)) throw error;
      const current = await this.#deps.store.getTaskInstance(key);
      if (!current)
        throw new NotFoundError(`Task instance ${formatTaskInstanceKey(key)} not found`, { cause: error });
      throw conflict(key, current, String(expected.state), expected.tryNumber);
    }
  }
}

function findTask(dag: SerializedDag, key: TaskInstanceKey): SerializedTask {
  const task = dag.tasks.find((t) => t.taskId === key.taskId);
  if (!task) throw new NotFoundError(`Task ${key.taskId} is not in DAG ${dag.dagId}`);
  return task;
}

function conflict(key: TaskInstanceKey, current: TaskInstance, expected: string, tryNumber: number) {
  return new StateConflictError(
    `Task instance ${formatTaskInstanceKey(key)} is ${current.state} at try ${current.tryNumber}, expected ${expected} at try ${tryNumber}`,
  );
}

import type { Settings } from '#config/settings.ts';
import { logMaxChunksOf } from '#config/settings.ts';
import type { CallbackErrorType } from '#core/callbacks.ts';
import {
  type DagRun,
  type DagRunKey,
  formatTaskInstanceKey,
  type TaskInstance,
  type TaskInstanceKey,
  taskInstanceKeyOf,
} from '#core/models.ts';
import { failureTransition } from '#core/retry.ts';
import type { SerializedDag, SerializedTask } from '#core/serialized-dag.ts';
import { type LogStore, noteChunkId, workerChunkId } from '#logs/port.ts';
import type { Metrics } from '#metrics/port.ts';
import { ConditionFailedError } from '#store/errors.ts';
import type { Store, TaskInstanceChanges, TaskInstanceExpectation } from '#store/port.ts';
import { type CallbackService, owedOnTask } from './callbacks.ts';
import type { DagVersionCache } from './dag-cache.ts';
import { InvalidRequestError, LimitExceededError, NotFoundError, StateConflictError } from './errors.ts';
import { RunCache, RunReads } from './run-cache.ts';
import { DEFAULT_TRIGGER_QUEUE, deferralTimeoutAt, triggerIdOf } from './triggers.ts';

export interface TaskLifecycleDeps {
  store: Store;
  dags: DagVersionCache;
  /** Resolves once the scheduling request is sent: awaited before the API call answers. */
  notifier: { notify(run: DagRunKey): Promise<void> };
  logs: LogStore;
  settings: Pick<Settings, 'xcomMaxBytes' | 'logChunkMaxBytes' | 'logMaxBytes'>;
  now: () => number;
  metrics?: Metrics;
  /** Materializes what a recorded change owes before the call answers; without it, the tick does. */
  callbacks?: Pick<CallbackService, 'materialize'>;
}

/**
 * The TI a call names, with its run's DAG version when the caller's token names it (a run keeps
 * its version for life): the DAG is then read without reading the run first.
 */
export type CalledTaskInstance = TaskInstanceKey & { dagVersion?: string | undefined };

export interface StartedTaskInstance {
  ti: TaskInstance;
  run: DagRun;
  dag: SerializedDag;
  task: SerializedTask;
}

export type TaskReport =
  | { state: 'success'; xcom?: string; followTaskIds?: string[] }
  | { state: 'skipped'; reason?: string }
  | { state: 'failed'; errorMessage: string; retryable: boolean; errorType?: CallbackErrorType }
  /** The worker stopped before the task finished (a graceful shutdown): run it again without using a try. */
  | { state: 'handed_back' }
  /** The task deferred: its trigger is stored, its slot freed, and it waits in `deferred`. */
  | { state: 'deferred'; deferral: DeferralReport };

/** A deferral as the worker reports it; kwargs are serde JSON text, kept opaque. */
export interface DeferralReport {
  trigger: { name: string; kwargs: string; queue?: string | undefined };
  nextMethod: string;
  nextKwargs: string;
  timeoutMs: number | null;
}

/** One numbered piece of a try's log, as the worker sends it (`seq` from 1). */
export interface LogChunk {
  seq: number;
  text: string;
}

export interface FinishOptions {
  /** Names the report: a repeat of a report already recorded is answered as a duplicate. */
  reportId: string;
  log?: LogChunk | undefined;
}

/**
 * What a log chunk's append came to, once the TI write it rides on succeeded: the call itself
 * succeeded either way. `logError` is set when the log store refused or failed the chunk (it is
 * not recorded); the caller reports it, and answers the call with `log_accepted: false`.
 */
export interface LogAppendOutcome {
  logError?: unknown;
}

export interface HeartbeatResult extends LogAppendOutcome {
  ti: TaskInstance;
}

export interface FinishedTaskInstance extends LogAppendOutcome {
  ti: TaskInstance;
  /** True when this report had already been recorded; nothing changed but the log chunk, again. */
  duplicate: boolean;
}

/** The TI is no longer running at the reported try; carries what it is now. */
class TryMovedOnError extends Error {
  readonly current: TaskInstance;
  constructor(current: TaskInstance) {
    super('The task instance moved on');
    this.current = current;
  }
}

/**
 * The task instance lifecycle as the Execution API drives it. Each step is one conditional
 * write on the TI (expected state and try number), so a duplicated or late call changes nothing
 * (its log chunk included) and gets a `StateConflictError`. Nothing here relies on memory kept
 * between calls: any instance can serve any call of any try.
 */
export class TaskLifecycle {
  readonly #deps: TaskLifecycleDeps;
  readonly #logMaxChunks: number;
  /** Runs by key: what is read of them (dates, conf, DAG version) never changes. */
  readonly #runs: RunCache;
  readonly #reads: RunReads;

  constructor(deps: TaskLifecycleDeps) {
    this.#deps = deps;
    this.#runs = new RunCache(deps.store);
    this.#reads = new RunReads(deps.store);
    this.#logMaxChunks = logMaxChunksOf(deps.settings);
  }

  get logMaxChunks(): number {
    return this.#logMaxChunks;
  }

  /** queued → running, only for the try the workload was issued for. */
  async start(
    key: CalledTaskInstance,
    tryNumber: number,
    worker: { hostname: string; workerId: string; startId?: string | undefined },
  ): Promise<StartedTaskInstance> {
    const { run, dag } = await this.#runAndDag(key);
    const task = findTask(dag, key);
    const nowMs = this.#deps.now();
    const now = new Date(nowMs).toISOString();
    // A try resuming after a deferral owes the same callback as its first start: the same id, stored once.
    const owed = owedOnTask(task, { to: 'running', tryNumber, atMs: nowMs, newTry: true });
    let ti: TaskInstance;
    try {
      ti = await this.#transition(
        key,
        { state: 'queued', tryNumber },
        {
          state: 'running',
          startDate: now,
          endDate: null,
          heartbeatAt: now,
          hostname: worker.hostname,
          workerId: worker.workerId,
          startId: worker.startId ?? null,
          errorMessage: null,
          durationMs: null,
        },
        { movedOn: true, owed },
      );
    } catch (error) {
      if (!(error instanceof TryMovedOnError)) throw error;
      const { current } = error;
      // The same start again (its answer was lost): the try is this caller's; answer it again.
      const repeated =
        worker.startId !== undefined &&
        current.startId === worker.startId &&
        current.state === 'running' &&
        current.tryNumber === tryNumber;
      if (!repeated) throw conflict(key, current, 'queued', tryNumber);
      ti = current;
    }
    if (typeof ti.nextEventAt === 'string' && ti.nextMethod) {
      // A resumed try: how long its trigger's event took to reach a worker again.
      this.#deps.metrics?.gauge('triggers.event_to_resume_ms', Date.parse(now) - Date.parse(ti.nextEventAt));
    }
    await this.#materialize(run, ti, dag);
    return { ti, run, dag, task };
  }

  /**
   * Records liveness, then appends the chunk: refused (the TI left `running` at this try) means
   * nothing is written, log included. A recorded heartbeat whose chunk the log store fails is
   * still a recorded heartbeat: the failure comes back as `logError`, never as a thrown error.
   */
  async heartbeat(key: TaskInstanceKey, tryNumber: number, log?: LogChunk): Promise<HeartbeatResult> {
    if (log) this.#checkChunk(key, tryNumber, log);
    const ti = await this.#transition(
      key,
      { state: 'running', tryNumber },
      { heartbeatAt: new Date(this.#deps.now()).toISOString() },
    );
    return { ti, ...(await this.#appendChunk(key, tryNumber, log, ti.deferralSeq ?? 0)) };
  }

  /**
   * Records how a try ended, with the report's id, then appends its log chunk and asks the
   * scheduler to look at the run. Success and skip are one conditional write (plus the XCom);
   * a failure or a hand-back reads the TI first, to decide on a retry or to give the try back.
   * A repeat of a recorded report is a duplicate (nothing changes); a report for a try that
   * moved on is refused, and the try's log says so. Once the report is recorded, a chunk the log
   * store fails is returned as `logError` (the scheduler is still asked), never thrown.
   */
  async finish(
    key: CalledTaskInstance,
    tryNumber: number,
    report: TaskReport,
    options: FinishOptions,
  ): Promise<FinishedTaskInstance> {
    if (options.log) this.#checkChunk(key, tryNumber, options.log);
    if (report.state === 'success' && report.xcom !== undefined) this.#checkXCom(key, report.xcom);
    if (report.state === 'deferred') this.#checkDeferral(key, report.deferral);
    let ti: TaskInstance;
    try {
      ti = await this.#record(key, tryNumber, report, options.reportId);
    } catch (error) {
      if (!(error instanceof TryMovedOnError)) throw error;
      const { current } = error;
      // Report ids are unique and kept until the next report, also while a retry is queued and
      // while the try resumes after the deferral that report recorded.
      const recorded = current.reportId === options.reportId;
      if (!recorded) {
        await this.#noteLateReport(key, tryNumber, report.state, current);
        throw conflict(key, current, 'running', tryNumber);
      }
      // The first call's answer was lost, perhaps before its chunk or scheduling request left. A
      // try that runs again (resumed after that deferral) numbers its chunks anew: the late chunk stays out.
      const resumedSince = current.state === 'running' && current.tryNumber === tryNumber;
      const appended = resumedSince
        ? {}
        : await this.#appendChunk(key, tryNumber, options.log, reportPhase(current, report));
      // The first call may have died before it materialized what the report owed.
      await this.#materialize(key, current);
      await this.#deps.notifier.notify(key);
      return { ti: current, duplicate: true, ...appended };
    }
    await this.#materialize(key, ti);
    const appended = await this.#appendChunk(key, tryNumber, options.log, reportPhase(ti, report));
    if (report.state === 'deferred') this.#deps.metrics?.increment('ti.deferred');
    await this.#deps.notifier.notify(key);
    return { ti, duplicate: false, ...appended };
  }

  /** Ids of the tasks upstream of `key`'s task, transitively, in the run's DAG version. */
  async upstreamTaskIds(key: CalledTaskInstance): Promise<ReadonlySet<string>> {
    const dag = await this.#dagOf(key);
    const byId = new Map(dag.tasks.map((task) => [task.taskId, task]));
    const found = new Set<string>();
    const pending = [...findTask(dag, key).upstream];
    for (let id = pending.pop(); id !== undefined; id = pending.pop()) {
      if (found.has(id)) continue;
      found.add(id);
      pending.push(...(byId.get(id)?.upstream ?? []));
    }
    return found;
  }

  async #record(key: CalledTaskInstance, tryNumber: number, report: TaskReport, reportId: string) {
    const nowMs = this.#deps.now();
    const ended = { endDate: new Date(nowMs).toISOString(), heartbeatAt: null, reportId };
    const task = findTask(await this.#dagOf(key), key);
    let changes: TaskInstanceChanges;
    let errorType: CallbackErrorType | undefined;
    switch (report.state) {
      case 'success': {
        if (report.followTaskIds) await this.#checkBranchChoice(key, report.followTaskIds);
        if (report.xcom !== undefined) {
          await this.#expectRunning(key, tryNumber, reportId);
          // Written before the state change, so a downstream task never sees success without its XCom.
          try {
            await this.#deps.store.putXCom({ ...key, key: 'return_value' }, report.xcom, tryNumber);
          } catch (error) {
            if (!(error instanceof ConditionFailedError)) throw error;
            throw new StateConflictError(
              `Task instance ${formatTaskInstanceKey(key)} has moved past try ${tryNumber}: its XCom was not written`,
              { cause: error },
            );
          }
        }
        changes = { ...ended, state: 'success', followTaskIds: report.followTaskIds ?? null };
        break;
      }
      case 'skipped':
        changes = { ...ended, state: 'skipped', errorMessage: report.reason ?? null };
        break;
      case 'failed': {
        const current = await this.#expectRunning(key, tryNumber, reportId);
        errorType = report.errorType ?? 'task_error';
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
        const current = await this.#expectRunning(key, tryNumber, reportId);
        changes = {
          state: 'scheduled',
          // A resumed try goes back to `scheduled` and resumes again at the same try: no try to give back.
          maxTries: typeof current.nextMethod === 'string' ? current.maxTries : current.maxTries + 1,
          startDate: null,
          heartbeatAt: null,
          workerId: null,
          hostname: null,
          reportId,
        };
        break;
      }
      case 'deferred': {
        const current = await this.#expectRunning(key, tryNumber, reportId);
        const deferralSeq = (current.deferralSeq ?? 0) + 1;
        const tryStartedAt = current.tryStartedAt ?? current.startDate ?? new Date(nowMs).toISOString();
        const timeoutAt = deferralTimeoutAt(
          nowMs,
          report.deferral.timeoutMs,
          tryStartedAt,
          task.executionTimeoutMs,
        );
        const triggerId = triggerIdOf(key, tryNumber, deferralSeq);
        // Stored before the TI waits on it, so a deferred TI always has its trigger. A trigger whose
        // TI never deferred (the write below lost) is stale: its event is dropped, and it is deleted.
        await this.#deps.store.putTrigger({
          triggerId,
          name: report.deferral.trigger.name,
          kwargs: report.deferral.trigger.kwargs,
          queue: report.deferral.trigger.queue ?? DEFAULT_TRIGGER_QUEUE,
          ti: taskInstanceKeyOf(key),
          tryNumber,
          deferralSeq,
          createdAt: new Date(nowMs).toISOString(),
          timeoutAt,
          jobId: null,
          claimedAt: null,
          revision: 0,
        });
        changes = {
          state: 'deferred',
          reportId,
          heartbeatAt: null,
          workerId: null,
          hostname: null,
          startId: null,
          deferralSeq,
          nextMethod: report.deferral.nextMethod,
          nextKwargs: report.deferral.nextKwargs,
          nextEvent: null,
          triggerId,
          triggerTimeoutAt: timeoutAt,
          tryStartedAt,
        };
        break;
      }
    }
    const owed =
      changes.state === undefined
        ? []
        : owedOnTask(task, {
            to: changes.state,
            tryNumber,
            atMs: nowMs,
            errorMessage: changes.errorMessage,
            errorType,
          });
    // Not a report already recorded: after a deferral the try runs again, still at this try.
    return this.#transition(key, { state: 'running', tryNumber, reportIdNot: reportId }, changes, {
      movedOn: true,
      owed,
    });
  }

  /**
   * Turns what the TI owes into callback items before the call answers (the tick does it
   * otherwise). The run is read only when something is owed.
   */
  async #materialize(run: DagRun | DagRunKey, ti: TaskInstance, dag?: SerializedDag): Promise<void> {
    const owed = ti.owedCallbacks;
    if (!owed || owed.length === 0 || !this.#deps.callbacks) return;
    try {
      const fullRun = 'state' in run ? run : await this.#run(run);
      await this.#deps.callbacks.materialize({ run: fullRun, ti }, owed, dag);
    } catch {
      // The change is recorded and its callbacks are owed durably: the tick's sweep materializes them.
      this.#deps.metrics?.increment('callbacks.materialize_deferred');
    }
  }

  #checkDeferral(key: TaskInstanceKey, deferral: DeferralReport): void {
    const limit = this.#deps.settings.xcomMaxBytes;
    for (const [what, text] of [
      [`The kwargs of trigger ${deferral.trigger.name}`, deferral.trigger.kwargs],
      [`The kwargs of next method ${deferral.nextMethod}`, deferral.nextKwargs],
    ] as const) {
      const bytes = Buffer.byteLength(text);
      if (bytes > limit) {
        throw new LimitExceededError(
          `${what} of ${formatTaskInstanceKey(key)} are ${bytes} bytes, over the limit of ${limit} bytes (UPDRAFT_XCOM_MAX_BYTES)`,
        );
      }
    }
  }

  #checkXCom(key: TaskInstanceKey, xcom: string): void {
    const bytes = Buffer.byteLength(xcom);
    const limit = this.#deps.settings.xcomMaxBytes;
    if (bytes > limit) {
      throw new LimitExceededError(
        `XCom return_value of ${formatTaskInstanceKey(key)} is ${bytes} bytes, over the limit of ${limit} bytes (UPDRAFT_XCOM_MAX_BYTES)`,
      );
    }
  }

  #checkChunk(key: TaskInstanceKey, tryNumber: number, log: LogChunk): void {
    const { logChunkMaxBytes, logMaxBytes } = this.#deps.settings;
    const what = `Log chunk ${log.seq} of try ${tryNumber} of ${formatTaskInstanceKey(key)}`;
    const bytes = Buffer.byteLength(log.text);
    if (bytes > logChunkMaxBytes) {
      throw new LimitExceededError(
        `${what} is ${bytes} bytes, over the limit of ${logChunkMaxBytes} bytes per chunk (UPDRAFT_LOG_CHUNK_MAX_BYTES)`,
      );
    }
    if (log.seq > this.#logMaxChunks) {
      throw new LimitExceededError(
        `${what} is past the last chunk a try may have, ${this.#logMaxChunks}: a try's log is at most ${logMaxBytes} bytes (UPDRAFT_LOG_MAX_BYTES) in chunks of ${logChunkMaxBytes} bytes (UPDRAFT_LOG_CHUNK_MAX_BYTES)`,
      );
    }
  }

  /** Appends after the TI write succeeded: a failure is returned, so it cannot undo that write's answer. */
  async #appendChunk(
    key: TaskInstanceKey,
    tryNumber: number,
    log: LogChunk | undefined,
    phase: number,
  ): Promise<LogAppendOutcome> {
    if (!log || log.text === '') return {};
    try {
      await this.#deps.logs.appendChunk(key, tryNumber, workerChunkId(log.seq, phase), log.text);
      return {};
    } catch (error) {
      return { logError: error ?? new Error('The log store failed without an error') };
    }
  }

  /** The try's history says why its outcome is not the reported one. */
  async #noteLateReport(key: TaskInstanceKey, tryNumber: number, reported: string, current: TaskInstance) {
    const nowMs = this.#deps.now();
    const note = `Report of try ${tryNumber} (${reported}) arrived after the task instance moved on: it is now ${current.state} at try ${current.tryNumber}; the report was refused`;
    await this.#deps.logs.appendChunk(
      key,
      tryNumber,
      noteChunkId(nowMs),
      `[${new Date(nowMs).toISOString()}] ${note}\n`,
    );
  }

  async #expectRunning(key: TaskInstanceKey, tryNumber: number, reportId?: string): Promise<TaskInstance> {
    const current = await this.#deps.store.getTaskInstance(key);
    if (!current) throw new NotFoundError(`Task instance ${formatTaskInstanceKey(key)} not found`);
    if (current.state !== 'running' || current.tryNumber !== tryNumber) throw new TryMovedOnError(current);
    // The same report again, after the try resumed from the deferral it recorded.
    if (reportId !== undefined && current.reportId === reportId) throw new TryMovedOnError(current);
    return current;
  }

  /** The run and its DAG version, read side by side when the call names the version. */
  async #runAndDag(key: CalledTaskInstance): Promise<{ run: DagRun; dag: SerializedDag }> {
    const named = key.dagVersion;
    if (named === undefined) {
      const run = await this.#run(key);
      return { run, dag: await this.#deps.dags.get(run.dagId, run.dagVersion) };
    }
    // What is neither kept nor being read (a fresh instance) is read in one request with what
    // the calls served beside this one need (a batch's starts).
    const dagKept = this.#deps.dags.holds(key.dagId, named);
    const together = this.#runs.holds(key)
      ? undefined
      : this.#reads.read(key, dagKept ? undefined : { dagId: key.dagId, versionHash: named });
    const [run, dag] = await Promise.all([
      this.#run(key, together && (async () => (await together).run)),
      this.#storedVersion(
        key.dagId,
        named,
        together && !dagKept ? async () => (await together).dag : undefined,
      ),
    ]);
    // Never differs for a token this API signed; the run is the truth if it does.
    if (dag && run.dagVersion === named) return { run, dag };
    return { run, dag: await this.#deps.dags.get(run.dagId, run.dagVersion) };
  }

  async #run(key: DagRunKey, read?: () => Promise<DagRun | undefined>): Promise<DagRun> {
    const run = await this.#runs.get(key, read);
    if (!run) throw new NotFoundError(`DAG run ${key.dagId}/${key.runId} not found`);
    return run;
  }

  /** A DAG version a token names, or undefined when the store has no such version. */
  async #storedVersion(
    dagId: string,
    versionHash: string,
    read?: () => Promise<SerializedDag | undefined>,
  ): Promise<SerializedDag | undefined> {
    try {
      return await this.#deps.dags.get(dagId, versionHash, read);
    } catch (error) {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    }
  }

  /** The DAG version of the call's run: named by its token, else read from the run. */
  async #dagOf(key: CalledTaskInstance): Promise<SerializedDag> {
    if (key.dagVersion !== undefined) {
      const named = await this.#storedVersion(key.dagId, key.dagVersion);
      if (named) return named;
    }
    const run = await this.#run(key);
    return this.#deps.dags.get(run.dagId, run.dagVersion);
  }

  async #checkBranchChoice(key: CalledTaskInstance, followTaskIds: string[]): Promise<void> {
    const dag = await this.#dagOf(key);
    const downstream = new Set(dag.tasks.filter((t) => t.upstream.includes(key.taskId)).map((t) => t.taskId));
    const unknown = followTaskIds.filter((id) => !downstream.has(id));
    if (unknown.length > 0) {
      throw new InvalidRequestError(
        `Branch ${key.taskId} chose ${unknown.join(', ')}, which ${unknown.length > 1 ? 'are' : 'is'} not directly downstream of it`,
      );
    }
  }

  /** A failed condition reads the TI to say what it is now: a conflict, or (`movedOn`) a `TryMovedOnError`. */
  async #transition(
    key: TaskInstanceKey,
    expected: TaskInstanceExpectation & { tryNumber: number },
    changes: TaskInstanceChanges,
    options: { movedOn?: boolean; owed?: readonly string[] } = {},
  ): Promise<TaskInstance> {
    try {
      return await this.#deps.store.transitionTaskInstance(
        key,
        expected,
        changes,
        options.owed === undefined ? {} : { owed: options.owed },
      );
    } catch (error) {
      if (!(error instanceof ConditionFailedError)) throw error;
      const current = await this.#deps.store.getTaskInstance(key);
      if (!current)
        throw new NotFoundError(`Task instance ${formatTaskInstanceKey(key)} not found`, { cause: error });
      if (options.movedOn) throw new TryMovedOnError(current);
      throw conflict(key, current, String(expected.state), expected.tryNumber);
    }
  }
}

/** The deferral whose worker phase a report's log chunk belongs to (a deferral report's is the one before it). */
function reportPhase(ti: TaskInstance, report: TaskReport): number {
  const seq = ti.deferralSeq ?? 0;
  return report.state === 'deferred' && ti.state === 'deferred' ? Math.max(0, seq - 1) : seq;
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

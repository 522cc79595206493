import type { Settings } from '#config/settings.ts';
import { admitTaskInstances } from '#core/admission.ts';
import { mapConcurrently } from '#core/concurrency.ts';
import { type DagRun, type DagRunKey, newTaskInstance, type TaskInstance } from '#core/models.ts';
import { evaluateRun } from '#core/run-evaluation.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import type { MetricsRegistry } from '#metrics/registry.ts';
import type { Queues } from '#queue/port.ts';
import { ConditionFailedError } from '#store/errors.ts';
import type { DagRecord, RunSnapshot, Store } from '#store/port.ts';
import { ignoreConflict } from './conflicts.ts';
import type { DagVersionCache } from './dag-cache.ts';
import type { Logger } from './logger.ts';
import { OccupancyLedger } from './occupancy.ts';
import { reconcileActiveTaskInstances } from './reconcile.ts';
import { createDueRuns } from './schedules.ts';
import type { TaskTokenSigner } from './tokens.ts';
import { PoolWarnings, runId, WaitingRuns } from './waiting-runs.ts';
import { WorkloadSender } from './workloads.ts';

/** Wakes a run's scheduling at a future moment (a retry coming due); durable timers on AWS. */
export interface WakeTimers {
  wakeAt(run: DagRunKey, atMs: number): void;
}

export interface SchedulerDeps {
  store: Store;
  queues: Queues;
  dags: DagVersionCache;
  tokens: TaskTokenSigner;
  timers: WakeTimers;
  metrics: MetricsRegistry;
  settings: Pick<
    Settings,
    'pools' | 'heartbeatTimeoutMs' | 'queuedTimeoutMs' | 'maxRunsPerPass' | 'maxTaskInstancesPerPass'
  >;
  log: Logger;
  now: () => number;
}

/** Store writes one pass keeps in flight: one queue batch (SQS sends at most 10 per call). */
const WRITE_CONCURRENCY = 10;

/**
 * The scheduler: turns a run's stored state into the next writes. It is one logical actor
 * (one loop in standalone, one reserved-concurrency function on AWS), driven by scheduling
 * requests (event-driven) and a periodic tick (due schedules and reconciliation). See ADR.md.
 */
export class Scheduler {
  readonly #deps: SchedulerDeps;
  readonly #workloads: WorkloadSender;
  readonly #poolWarnings: PoolWarnings;
  readonly #ledger = new OccupancyLedger();
  readonly #waiting = new WaitingRuns();
  readonly #dagRecords = new Map<string, DagRecord>();
  #reconcileCursor: string | undefined;
  readonly #activeRunCounts = { queued: 0, running: 0 };
  /** Per active run, as last evaluated: TIs whose dependencies are met, and those of them held back by a limit. */
  readonly #readiness = new Map<string, { ready: number; starving: number }>();
  #exclusive: Promise<unknown> = Promise.resolve();

  constructor(deps: SchedulerDeps) {
    this.#deps = deps;
    this.#workloads = new WorkloadSender(deps);
    this.#poolWarnings = new PoolWarnings(deps);
    deps.metrics.addSource(() => {
      const counts = this.#ledger.stateCounts();
      let executable = 0;
      let starving = 0;
      for (const run of this.#readiness.values()) {
        executable += run.ready;
        starving += run.starving;
      }
      return {
        'ti.queued': counts.queued,
        'ti.running': counts.running,
        'ti.deferred': counts.deferred,
        'scheduler.tasks.executable': executable,
        'scheduler.tasks.starving': starving,
      };
    });
  }

  /**
   * Rebuilds the occupancy ledger and DAG records from the store. With `recoverOrphans` (a
   * standalone restart, whose queues and workers died with the previous process) queued
   * workloads are sent again and running tries are failed or retried at once, instead of
   * waiting for the queued and heartbeat timeouts.
   */
  async start(options: { recoverOrphans?: boolean } = {}): Promise<void> {
    await this.#serially(async () => {
      await this.#refreshDagRecords();
      this.#ledger.clear();
      let cursor: string | undefined;
      do {
        const page = await this.#deps.store.listActiveDagRuns({ limit: 100, cursor });
        for (const key of page.items) {
          const snapshot = await this.#deps.store.getRunSnapshot(key);
          if (!snapshot) continue;
          this.#ledger.observe(snapshot.taskInstances);
          if (options.recoverOrphans && snapshot.run.state === 'running') {
            const dag = await this.#deps.dags.get(snapshot.run.dagId, snapshot.run.dagVersion);
            await this.#reconcileActive(snapshot.run, snapshot.taskInstances, dag, this.#deps.now(), true);
            await this.#processRunSafely(key);
          }
        }
        cursor = page.nextCursor;
      } while (cursor);
    });
  }

  /** Schedules each distinct run once, one run at a time so admission sees every slot it took. */
  async handleRequests(runs: readonly DagRunKey[]): Promise<void> {
    const distinct = new Map(runs.map((run) => [runId(run), run]));
    await this.#serially(async () => {
      for (const run of distinct.values()) await this.#processRunSafely(run);
      await this.#offerFreedSlots(new Set(distinct.keys()));
    });
  }

  /** Gives slots freed during this batch to runs that were waiting for them. */
  async #offerFreedSlots(processed: Set<string>): Promise<void> {
    for (let round = 0; round < this.#deps.settings.maxRunsPerPass; round += 1) {
      const [next] = this.#waiting.due(this.#ledger, this.#deps.settings.pools, processed);
      if (!next) return;
      processed.add(runId(next));
      await this.#processRunSafely(next);
    }
  }

  /** The periodic pass: creates due scheduled runs, then reconciles a bounded slice of active runs. */
  async tick(): Promise<void> {
    await this.#serially(async () => {
      const { store, settings } = this.#deps;
      await this.#refreshDagRecords();
      const created = await createDueRuns(this.#deps, [...this.#dagRecords.values()]);
      for (const record of created.updatedDags) this.#dagRecords.set(record.dagId, record);
      const page = await store.listActiveDagRuns({
        limit: settings.maxRunsPerPass,
        cursor: this.#reconcileCursor,
      });
      const counts = this.#activeRunCounts;
      if (this.#reconcileCursor === undefined) [counts.queued, counts.running] = [0, 0];
      this.#reconcileCursor = page.nextCursor;
      for (const key of page.items) {
        counts[key.state === 'queued' ? 'queued' : 'running'] += 1;
        await this.#processRunSafely(key);
      }
      await this.#offerFreedSlots(new Set(page.items.map(runId)));
      // Published once the cursor has gone round every active run.
      if (!this.#reconcileCursor) {
        this.#deps.metrics.gauge('dag_runs.queued', counts.queued);
        this.#deps.metrics.gauge('dag_runs.running', counts.running);
      }
    });
  }

  async #serially<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#exclusive.then(work, work);
    this.#exclusive = result.catch(() => undefined);
    return result;
  }

  async #refreshDagRecords(): Promise<void> {
    let cursor: string | undefined;
    do {
      const page = await this.#deps.store.listDags({ limit: 100, cursor });
      for (const record of page.items) this.#dagRecords.set(record.dagId, record);
      cursor = page.nextCursor;
    } while (cursor);
  }

  async #processRunSafely(key: DagRunKey): Promise<void> {
    try {
      await this.#processRun(key);
    } catch (error) {
      this.#deps.log.error('Scheduling the run failed; the next tick retries it', {
        dagId: key.dagId,
        runId: key.runId,
        error,
      });
    }
  }

  /** Returns false when the run is queued and stays so (max_active_runs reached, or started by another). */
  async #processRun(key: DagRunKey): Promise<boolean> {
    const { store } = this.#deps;
    let snapshot = await store.getRunSnapshot(key);
    if (!snapshot) return true;
    this.#ledger.observe(snapshot.taskInstances);
    if (snapshot.run.state === 'success' || snapshot.run.state === 'failed') {
      this.#ledger.forgetRun(key.dagId, key.runId);
      this.#waiting.forget(key);
      this.#readiness.delete(runId(key));
      return true;
    }
    const dagRecord = this.#dagRecords.get(key.dagId) ?? (await store.getDag(key.dagId));
    if (dagRecord?.isPaused) return true;
    const dag = await this.#deps.dags.get(snapshot.run.dagId, snapshot.run.dagVersion);
    if (snapshot.run.state === 'queued') {
      const started = await this.#startRun(snapshot.run, dag);
      if (!started) return false;
      snapshot = { ...snapshot, run: started };
    }
    await this.#evaluate(snapshot, dag);
    return true;
  }

  /** queued → running when the DAG has fewer than `maxActiveRuns` running runs. */
  async #startRun(run: DagRun, dag: SerializedDag): Promise<DagRun | undefined> {
    if ((await this.#countRunningRuns(run.dagId, dag.maxActiveRuns)) >= dag.maxActiveRuns) return undefined;
    try {
      return await this.#deps.store.transitionDagRun(run, 'queued', {
        state: 'running',
        startDate: new Date(this.#deps.now()).toISOString(),
      });
    } catch (error) {
      if (error instanceof ConditionFailedError) return undefined;
      throw error;
    }
  }

  /**
   * Running runs of a DAG, counted up to `atLeast`. Every page is read: queued runs may sort
   * before the running ones, so the first page alone can miss them.
   */
  async #countRunningRuns(dagId: string, atLeast: number): Promise<number> {
    let running = 0;
    let cursor: string | undefined;
    do {
      const page = await this.#deps.store.listActiveDagRuns({ limit: 100, dagId, cursor });
      running += page.items.filter((item) => item.state === 'running').length;
      cursor = page.nextCursor;
    } while (cursor && running < atLeast);
    return running;
  }

  async #evaluate(snapshot: RunSnapshot, dag: SerializedDag): Promise<void> {
    const { store } = this.#deps;
    const nowMs = this.#deps.now();
    const { run } = snapshot;
    // Zombies first: their failure or retry is then decided on in this same pass (downstream
    // tasks, the run's state, the retry's wake-up) instead of waiting for another request.
    const taskInstances = await this.#reconcileActive(run, snapshot.taskInstances, dag, nowMs);
    const evaluation = evaluateRun(dag, run, taskInstances, nowMs);

    if (evaluation.missing.length > 0) {
      this.#deps.log.warn('Run is missing task instances; creating them', {
        runId: run.runId,
        tasks: evaluation.missing,
      });
      await this.#createMissing(run, dag, evaluation.missing);
      await this.#processRun(run);
      return;
    }
    await mapConcurrently(evaluation.finalize, WRITE_CONCURRENCY, (change) =>
      ignoreConflict(
        store.transitionTaskInstance(
          change.key,
          { state: change.from, tryNumber: change.tryNumber },
          { state: change.to, endDate: new Date(nowMs).toISOString() },
        ),
      ),
    );

    const admission = admitTaskInstances({
      candidates: evaluation.ready.map(({ ti, priorityWeight }) => ({
        ti,
        priorityWeight,
        logicalDate: run.logicalDate,
        maxActiveTasks: dag.maxActiveTasks,
      })),
      pools: this.#deps.settings.pools,
      poolOccupancy: this.#ledger.poolOccupancy(),
      runOccupancy: this.#ledger.runOccupancy(),
      maxToAdmit: this.#deps.settings.maxTaskInstancesPerPass,
    });
    this.#readiness.set(runId(run), { ready: evaluation.ready.length, starving: admission.starving.length });
    this.#poolWarnings.report(admission.starving);
    this.#waiting.update(run, admission.starving);
    await this.#queue(run, dag, admission.admitted, nowMs);

    if (evaluation.runState) {
      await this.#finishRun(run, evaluation.runState, nowMs);
    } else if (evaluation.nextWakeAt) {
      this.#deps.timers.wakeAt(run, Date.parse(evaluation.nextWakeAt));
    }
  }

  async #createMissing(run: DagRun, dag: SerializedDag, taskIds: string[]): Promise<void> {
    const tasks = dag.tasks.filter((task) => taskIds.includes(task.taskId));
    await this.#deps.store.createMissingTaskInstances(
      tasks.map((task) =>
        newTaskInstance({ dagId: run.dagId, runId: run.runId, taskId: task.taskId, mapIndex: -1 }, task),
      ),
    );
  }

  /**
   * Fails or retries zombies and sends again workloads queued too long (see reconcile.ts).
   * Returns the run's TIs with these changes applied.
   */
  async #reconcileActive(
    run: DagRun,
    taskInstances: TaskInstance[],
    dag: SerializedDag,
    nowMs: number,
    orphaned = false,
  ): Promise<TaskInstance[]> {
    const result = await reconcileActiveTaskInstances(this.#deps, taskInstances, dag, nowMs, orphaned);
    if (result.resend.length > 0) await this.#workloads.send(run, result.resend, dag);
    // A zombie no longer holds its slot: admission in this pass may give it to another TI.
    if (result.changed.length > 0) this.#ledger.observe(result.changed);
    return result.taskInstances;
  }

  /**
   * none/scheduled/up_for_retry → queued with the next try number. Written a batch at a time and
   * sent as soon as each batch is written, so workers start on the first TIs while the rest are
   * still being written, and no burst of writes holds up other requests to the store.
   */
  async #queue(run: DagRun, dag: SerializedDag, admitted: TaskInstance[], nowMs: number): Promise<void> {
    if (admitted.length === 0) return;
    const queuedAt = new Date(nowMs).toISOString();
    for (let start = 0; start < admitted.length; start += WRITE_CONCURRENCY) {
      const batch = admitted.slice(start, start + WRITE_CONCURRENCY);
      const results = await Promise.all(
        batch.map((ti) =>
          ignoreConflict(
            this.#deps.store.transitionTaskInstance(
              ti,
              { state: ti.state, tryNumber: ti.tryNumber },
              {
                state: 'queued',
                tryNumber: ti.tryNumber + 1,
                queuedAt,
                startDate: null,
                endDate: null,
                durationMs: null,
                nextRetryAt: null,
                heartbeatAt: null,
                errorMessage: null,
              },
            ),
          ),
        ),
      );
      const queued = results.filter((ti): ti is TaskInstance => ti !== undefined);
      this.#ledger.observe(queued);
      this.#deps.metrics.increment('ti.scheduled', queued.length);
      await this.#workloads.send(run, queued, dag);
    }
  }

  async #finishRun(run: DagRun, state: 'success' | 'failed', nowMs: number): Promise<void> {
    const finished = await ignoreConflict(
      this.#deps.store.transitionDagRun(run, 'running', { state, endDate: new Date(nowMs).toISOString() }),
    );
    if (!finished) return;
    this.#ledger.forgetRun(run.dagId, run.runId);
    this.#readiness.delete(runId(run));
    this.#deps.metrics.increment(`dag_runs.${state}`);
    this.#deps.log.info(`DAG run ${state}`, { dagId: run.dagId, runId: run.runId });
    // A finished run frees a place under max_active_runs: start the next queued runs of this DAG now.
    const active = await this.#deps.store.listActiveDagRuns({ limit: 100, dagId: run.dagId });
    // Runs of one DAG: once one cannot start, the others cannot either.
    for (const next of active.items) {
      if (next.state === 'queued' && !(await this.#processRun(next))) break;
    }
  }
}

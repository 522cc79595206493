import { createHash } from 'node:crypto';
import type { Settings } from '#config/settings.ts';
import type { CallbackWorkload } from '#contracts/messages.ts';
import {
  CALLBACK_MAX_RETRY_DELAY_MS,
  type Callback,
  type CallbackErrorType,
  type CallbackKey,
  type CallbackOwner,
  type CallbackRef,
  callbacksOwedOnRunFinish,
  callbacksOwedOnTaskTransition,
  decodeOwed,
  encodeOwed,
  eventOfKind,
  type OwedCallback,
  placeOfCallback,
} from '#core/callbacks.ts';
import type { DagRun, TaskInstance } from '#core/models.ts';
import type { SerializedDag, SerializedTask } from '#core/serialized-dag.ts';
import type { DagRunState, TaskInstanceState } from '#core/states.ts';
import type { LogStore } from '#logs/port.ts';
import type { Metrics } from '#metrics/port.ts';
import type { Queues } from '#queue/port.ts';
import { sendAll } from '#queue/send.ts';
import { ConditionFailedError } from '#store/errors.ts';
import { dagRunKey, taskInstanceKey } from '#store/keys.ts';
import type { CallbackExpectation, OwedOwner, Store } from '#store/port.ts';
import type { DagVersionCache } from './dag-cache.ts';
import { LimitExceededError, NotFoundError, StateConflictError } from './errors.ts';
import type { Logger } from './logger.ts';
import type { TaskTokenSigner } from './tokens.ts';

/**
 * Callbacks as stored work (see `core/callbacks.ts` for what owes one).
 *
 * 1. **Owed**: the conditional write that changes a task instance's or a run's state adds what it
 *    owes to the item's `owedCallbacks` set, in the same request (`owedOnTask`, `owedOnRunFinish`).
 *    If the write loses, nothing is owed; if it wins, the callback is owed durably.
 * 2. **Materialized** (`materialize`): each owed element becomes a callback item (a conditional
 *    put under its derived id, so a repeat writes nothing), its workload is sent to the `callbacks`
 *    queue, and the element leaves the set. The call that owed it does this before it answers;
 *    should it die first, the tick finds the owner in the owed index (`sweep`) and does it.
 * 3. **Run** by a worker through the Execution API (`start`, `finish`): one conditional write per
 *    step on (state, attempt), so a duplicated or late call changes nothing. A failed attempt with
 *    attempts left goes back to `queued` after its delay; an attempt that never reports (its
 *    worker died) is ended by the tick once its timeout and the heartbeat timeout have passed,
 *    by when the worker has stopped it for sure.
 *
 * Callbacks never change a task instance or a run: a callback that raises fails only itself.
 */

export type CallbackSettings = Pick<
  Settings,
  | 'callbackExecutionTimeoutMs'
  | 'callbackRetries'
  | 'callbackRetryDelayMs'
  | 'callbackOwedGraceMs'
  | 'queuedTimeoutMs'
  | 'maxQueuedSends'
  | 'heartbeatTimeoutMs'
  | 'logChunkMaxBytes'
  | 'asyncCallbacksRunOn'
  | 'triggererEnabled'
  | 'callbackTriggererClaimTimeoutMs'
>;

export interface CallbackDeps {
  store: Store;
  dags: DagVersionCache;
  queues: Pick<Queues, 'callbacks'>;
  tokens: TaskTokenSigner;
  /** Where attempts' logs go; needed by the Execution API's side (`finish`) only. */
  logs?: LogStore;
  settings: CallbackSettings;
  now: () => number;
  log?: Logger;
  metrics?: Metrics;
}

/** Owners and due callbacks one sweep looks at, at most. */
export const CALLBACK_SWEEP_LIMIT = 100;
/** Callbacks of each due index a standalone restart recovers at once (`recoverOrphans`). */
const ORPHANS_RECOVERED_MAX = 1_000;
/** How long a worker retries an attempt's report (its token must outlive that too). */
const REPORT_WINDOW_SECONDS = 60;
/** Later than every due time: lists a whole due index. */
const LAST_INSTANT = '9999-12-31T23:59:59.999Z';
/** Longest wait before a queued callback's workload is sent again (the wait doubles each send). */
const MAX_RESEND_WAIT_MS = 3_600_000;
/** Claimable callbacks one claim reads at most, and conditional claim writes it sends at once. */
const CLAIM_READ_MAX = 2_000;
const CLAIM_WRITES_AT_ONCE = 16;
/** SQS's longest delivery delay: a longer retry delay waits in the due index instead. */
const MAX_DELAY_SECONDS = 900;

/**
 * The callback's id: the hash of what owes it (owner, kind, try or clear count, position), so a
 * repeated or racing attempt to owe the same callback names the same item. 22 base64url characters.
 */
export function callbackIdOf(owner: CallbackOwner, owed: Pick<OwedCallback, 'k' | 'i' | 'n' | 'd'>): string {
  return createHash('sha256')
    .update(
      JSON.stringify([
        'callback',
        owner.dagId,
        owner.runId,
        owner.taskId ?? null,
        owner.mapIndex ?? null,
        owed.k,
        owed.n,
        owed.i,
        // A deadline's callbacks: which deadline (absent for every other kind, whose ids stay as they were).
        ...(owed.d === undefined ? [] : [owed.d]),
      ]),
    )
    .digest('base64url')
    .slice(0, 22);
}

/** What a task instance's state change owes, encoded for the store (`owed` of the transition). */
export function owedOnTask(
  task: Pick<SerializedTask, 'callbacks'> | undefined,
  change: {
    to: TaskInstanceState;
    tryNumber: number;
    atMs: number;
    newTry?: boolean;
    errorMessage?: string | null | undefined;
    errorType?: CallbackErrorType | undefined;
  },
): string[] {
  return callbacksOwedOnTaskTransition(task?.callbacks, {
    ...change,
    at: new Date(change.atMs).toISOString(),
  }).map(encodeOwed);
}

/** What a run's finish owes, encoded for the store. */
export function owedOnRunFinish(
  dag: Pick<SerializedDag, 'callbacks'>,
  change: {
    to: DagRunState;
    clearCount: number;
    atMs: number;
    errorMessage?: string;
    errorType?: CallbackErrorType;
  },
): string[] {
  return callbacksOwedOnRunFinish(dag.callbacks, { ...change, at: new Date(change.atMs).toISOString() }).map(
    encodeOwed,
  );
}

/** A callback's log is filed under its run, as a "task" no task id can name (`~` is not in the id grammar). */
export function callbackLogKey(key: CallbackKey) {
  return { dagId: key.dagId, runId: key.runId, taskId: `~callback~${key.callbackId}`, mapIndex: -1 };
}

export interface StartedCallback {
  callback: Callback;
  run: DagRun;
  dag: SerializedDag;
}

export type CallbackReport =
  | { state: 'success' }
  | { state: 'failed'; errorMessage: string; retryable: boolean }
  /** A stopping worker or triggerer gave the attempt back unfinished: it runs again, not counted. */
  | { state: 'handed_back' };

/** Hand-backs of one callback that are not counted as attempts; later ones are (a process that always stops). */
const MAX_HANDED_BACK = 5;

/** The due index of a callback's entries while it is queued (claimed) or running, by where it runs. */
function dueIndexOf(callback: Pick<Callback, 'place'>): 'due' | 'triggerer_due' {
  return callback.place === 'triggerer' ? 'triggerer_due' : 'due';
}

export class CallbackService {
  readonly #deps: CallbackDeps;

  constructor(deps: CallbackDeps) {
    this.#deps = deps;
  }

  /**
   * Turns the owner's owed elements into callback items, sends the new ones' workloads, and
   * settles the elements. Idempotent in every step; an error leaves the rest for the tick.
   */
  async materialize(
    owner: { run: DagRun; ti?: TaskInstance | undefined },
    elements: readonly string[],
    dag?: SerializedDag,
  ): Promise<void> {
    if (elements.length === 0) return;
    const serialized = dag ?? (await this.#deps.dags.get(owner.run.dagId, owner.run.dagVersion));
    const ownerRef: CallbackOwner = owner.ti
      ? {
          dagId: owner.run.dagId,
          runId: owner.run.runId,
          taskId: owner.ti.taskId,
          mapIndex: owner.ti.mapIndex,
        }
      : { dagId: owner.run.dagId, runId: owner.run.runId };
    const task = owner.ti ? serialized.tasks.find((t) => t.taskId === owner.ti?.taskId) : undefined;
    const created: Callback[] = [];
    for (const element of elements) {
      const owed = decodeOwed(element);
      if (!owed) {
        this.#deps.log?.error('An owed callback could not be read; it is dropped', {
          owner: ownerRef,
          element,
        });
        continue;
      }
      const ref = refOf(serialized, task, owed);
      if (!ref) {
        this.#deps.log?.error('An owed callback names no callback of its DAG version; it is dropped', {
          owner: ownerRef,
          owed,
        });
        continue;
      }
      const callback = this.#callbackOf(owner.run, serialized, ownerRef, owed, ref);
      const queuedAt = callback.queuedAt as string;
      // A triggerer's callback waits in the triggerers' index until one claims it; a worker's
      // workload is sent, and the tick sends it again should it not start in time.
      const written =
        callback.place === 'triggerer'
          ? await this.#deps.store.putCallback(callback, queuedAt, 'triggerer')
          : await this.#deps.store.putCallback(callback, this.#queuedDueAt(Date.parse(queuedAt)));
      if (written) {
        if (callback.place !== 'triggerer') created.push(callback);
        this.#deps.metrics?.increment('callbacks.owed');
      }
    }
    await this.#send(created);
    const itemKey = owner.ti ? taskInstanceKey(owner.ti) : dagRunKey(owner.run);
    await this.#deps.store.settleOwed(itemKey, elements);
  }

  /**
   * The tick's part: owners still holding owed callbacks after the grace (their writer died before
   * it materialized them), then callbacks past their due time: a queued one is sent again (or
   * failed after `maxQueuedSends` sends), a running one whose attempt never reported is ended.
   */
  async sweep(limit = CALLBACK_SWEEP_LIMIT): Promise<{ materialized: number; due: number }> {
    const nowMs = this.#deps.now();
    const before = new Date(nowMs - this.#deps.settings.callbackOwedGraceMs).toISOString();
    const owners = await this.#deps.store.listOwedOwners(before, limit);
    let materialized = 0;
    for (const itemKey of owners) {
      try {
        const owner = await this.#deps.store.getOwedOwner(itemKey);
        if (!owner) continue;
        if (await this.#materializeOwner(owner)) {
          materialized += 1;
          this.#deps.metrics?.increment('callbacks.materialized_by_sweep');
        }
      } catch (error) {
        this.#deps.log?.warn('Owed callbacks could not be materialized; the next tick tries again', {
          owner: itemKey,
          error,
        });
      }
    }
    await this.#moveUnclaimedToWorkers(nowMs, limit);
    const due = await this.#deps.store.listDueCallbacks(new Date(nowMs).toISOString(), limit);
    for (const callback of due) {
      try {
        await this.#handleDue(callback, nowMs);
      } catch (error) {
        if (error instanceof ConditionFailedError) continue; // it moved on since the index was read
        this.#deps.log?.warn('A due callback could not be handled; the next tick tries again', {
          callbackId: callback.callbackId,
          error,
        });
      }
    }
    return { materialized, due: due.length };
  }

  /**
   * Callbacks no triggerer claimed within `callbackTriggererClaimTimeoutMs` of when they could
   * first start (no triggerer runs, or none keeps up) run on a worker instead: a callback never
   * waits for a triggerer forever.
   */
  async #moveUnclaimedToWorkers(nowMs: number, limit: number): Promise<void> {
    const waitMs = this.#deps.settings.callbackTriggererClaimTimeoutMs;
    const stale = await this.#deps.store.listClaimableCallbacks(
      new Date(nowMs - waitMs).toISOString(),
      limit,
    );
    for (const callback of stale) {
      if (callback.state !== 'queued' || callback.place !== 'triggerer') continue;
      try {
        const moved = await this.#deps.store.transitionCallback(
          keyOf(callback),
          stillQueued(callback),
          { place: 'worker', queuedSends: 1, queuedAt: new Date(nowMs).toISOString(), workerId: null },
          this.#queuedDueAt(nowMs),
        );
        await this.#send([moved]);
        this.#deps.metrics?.increment('callbacks.moved_to_workers');
        this.#deps.log?.warn(
          `No triggerer claimed callback ${callback.callbackId} within ${waitMs} ms (UPDRAFT_CALLBACK_TRIGGERER_CLAIM_TIMEOUT_MS): it runs on a worker`,
          { run: `${callback.dagId}/${callback.runId}`, kind: callback.kind, attempt: callback.attempt },
        );
      } catch (error) {
        if (!(error instanceof ConditionFailedError)) throw error;
        // Claimed since the index was read.
      }
    }
  }

  /** Materializes what the owner still owes; false when it owed nothing (only its index entry was left). */
  async #materializeOwner(owner: OwedOwner): Promise<boolean> {
    const owed = owner.kind === 'run' ? owner.run.owedCallbacks : owner.ti.owedCallbacks;
    // Settled by a call that died before it left the index: only the index entry is left to go.
    if (!owed || owed.length === 0) {
      await this.#deps.store.settleOwed(owner.itemKey, []);
      return false;
    }
    if (owner.kind === 'run') {
      await this.materialize({ run: owner.run }, owed);
      return true;
    }
    const run = await this.#deps.store.getDagRun(owner.ti);
    if (!run) {
      // The run is gone (expired with its retention): nothing can run for it.
      await this.#deps.store.settleOwed(owner.itemKey, owed);
      return false;
    }
    await this.materialize({ run, ti: owner.ti }, owed);
    return true;
  }

  async #handleDue(callback: Callback, nowMs: number): Promise<void> {
    const key = keyOf(callback);
    if (callback.state === 'queued') {
      // A triggerer's callback is here once claimed: its triggerer did not start it in time (it
      // died, or lost its job). A worker's is here when its workload may have been lost.
      const onTriggerer = callback.place === 'triggerer';
      if (!onTriggerer && callback.notBefore !== null && Date.parse(callback.notBefore) > nowMs) return;
      const expected = stillQueued(callback);
      if (callback.queuedSends >= this.#deps.settings.maxQueuedSends) {
        await this.#deps.store.transitionCallback(
          key,
          expected,
          {
            state: 'failed',
            endDate: new Date(nowMs).toISOString(),
            errorMessage: onTriggerer
              ? `No triggerer started attempt ${callback.attempt} after ${callback.queuedSends} claims (UPDRAFT_MAX_QUEUED_SENDS), each given up after UPDRAFT_QUEUED_TIMEOUT_MS`
              : `No worker started attempt ${callback.attempt} after ${callback.queuedSends} sends of its workload (UPDRAFT_MAX_QUEUED_SENDS), the first after UPDRAFT_QUEUED_TIMEOUT_MS and each later one after twice the wait before it`,
          },
          null,
        );
        this.#deps.metrics?.increment('callbacks.failed');
        return;
      }
      if (onTriggerer) {
        await this.#claimableAgain(callback, nowMs);
        return;
      }
      // The wait doubles with each send: a long backlog of callbacks is not taken for lost workloads.
      const wait = Math.min(
        MAX_RESEND_WAIT_MS,
        this.#deps.settings.queuedTimeoutMs * 2 ** Math.max(0, callback.queuedSends),
      );
      const sent = await this.#deps.store.transitionCallback(
        key,
        expected,
        { queuedSends: callback.queuedSends + 1, queuedAt: new Date(nowMs).toISOString() },
        new Date(nowMs + wait).toISOString(),
      );
      await this.#send([sent]);
      return;
    }
    if (callback.state === 'running') {
      if (this.#runningDueAtMs(callback) > nowMs) return;
      await this.#endAttempt(
        callback,
        {
          state: 'failed',
          retryable: true,
          errorMessage: `Attempt ${callback.attempt} did not report within its timeout of ${callback.timeoutMs} ms (and UPDRAFT_HEARTBEAT_TIMEOUT_MS after it): its worker was lost`,
        },
        nowMs,
      );
    }
  }

  /**
   * A standalone restart: the previous process's workers, triggerer and in-process queues died
   * with it, so a callback it had queued lost its workload and one it was running lost its attempt.
   * Known at once rather than after the queued timeout, or the attempt's timeout plus the heartbeat
   * timeout: each queued before `startedAtMs` is sent again (or made claimable again, for a
   * triggerer), each started before it is ended as lost and retried if it may. Only for a store one
   * process serves at a time (standalone holds its home's lock). The first `limit` entries of each
   * due index (worker and triggerer) are read, whatever their state: callbacks beyond them are
   * left to the tick's sweep, after the timeouts.
   */
  async recoverOrphans(startedAtMs: number, limit = ORPHANS_RECOVERED_MAX): Promise<number> {
    const nowMs = this.#deps.now();
    const before = (iso: string | null) => iso !== null && Date.parse(iso) < startedAtMs;
    const listed = await this.#deps.store.listDueCallbacks(LAST_INSTANT, limit);
    let recovered = 0;
    for (const callback of listed) {
      try {
        if (callback.state === 'running' && before(callback.startDate)) {
          await this.#endAttempt(
            callback,
            {
              state: 'failed',
              retryable: true,
              errorMessage: `Attempt ${callback.attempt} was running in a process that stopped without reporting it (found at the next start): its worker was lost`,
            },
            nowMs,
          );
        } else if (callback.state === 'queued' && callback.queuedSends > 0 && before(callback.queuedAt)) {
          // (A retry never sent waits for the tick to send it at its time: nothing of it was lost.)
          if (callback.place === 'triggerer') await this.#claimableAgain(callback, nowMs);
          else {
            // A retry still waiting for its delay is sent with what is left of it, and due after it.
            const waitMs = Math.max(
              0,
              callback.notBefore === null ? 0 : Date.parse(callback.notBefore) - nowMs,
            );
            const sent = await this.#deps.store.transitionCallback(
              keyOf(callback),
              stillQueued(callback),
              { queuedAt: new Date(nowMs).toISOString() },
              this.#queuedDueAt(nowMs + waitMs),
            );
            await this.#send([sent], Math.min(MAX_DELAY_SECONDS, Math.ceil(waitMs / 1000)));
          }
        } else continue;
        recovered += 1;
      } catch (error) {
        if (error instanceof ConditionFailedError) continue; // it moved on since the index was read
        this.#deps.log?.warn('A callback of the previous process could not be recovered; the tick does it', {
          callbackId: callback.callbackId,
          error,
        });
      }
    }
    if (recovered > 0) this.#deps.metrics?.increment('callbacks.recovered_at_start', recovered);
    return recovered;
  }

  /** A claimed callback its triggerer did not start: claimable again, by any triggerer. */
  async #claimableAgain(callback: Callback, nowMs: number): Promise<void> {
    await this.#deps.store.transitionCallback(
      keyOf(callback),
      stillQueued(callback),
      { workerId: null },
      new Date(nowMs).toISOString(),
      'triggerer',
    );
  }

  /**
   * A triggerer job's claim: up to `limit` callbacks waiting for a triggerer move to the job (each
   * in one conditional write on its revision, so two triggerers never claim the same one) and come
   * back as workloads. The triggerer starts each through the same route as a worker; one it does
   * not start within the queued timeout becomes claimable again (`sweep`).
   */
  async claimForTriggerer(jobId: string, limit: number): Promise<CallbackWorkload[]> {
    if (limit <= 0) return [];
    const nowMs = this.#deps.now();
    // Read twice as many as wanted and claim them in an order of the job's own: triggerers
    // claiming at once mostly try different callbacks instead of all racing for the oldest.
    const claimable = orderedForJob(
      (
        await this.#deps.store.listClaimableCallbacks(
          new Date(nowMs).toISOString(),
          Math.min(2 * limit, CLAIM_READ_MAX),
        )
      ).filter((callback) => callback.state === 'queued'),
      jobId,
    );
    const claimed: Callback[] = [];
    for (let next = 0; next < claimable.length && claimed.length < limit; next += CLAIM_WRITES_AT_ONCE) {
      const batch = claimable.slice(next, next + Math.min(CLAIM_WRITES_AT_ONCE, limit - claimed.length));
      const results = await Promise.all(batch.map((callback) => this.#claimOne(callback, jobId, nowMs)));
      for (const callback of results) if (callback) claimed.push(callback);
    }
    return Promise.all(claimed.map((callback) => this.#workloadOf(callback, nowMs, 0)));
  }

  async #claimOne(callback: Callback, jobId: string, nowMs: number): Promise<Callback | undefined> {
    try {
      return await this.#deps.store.transitionCallback(
        keyOf(callback),
        stillQueued(callback),
        { queuedSends: callback.queuedSends + 1, queuedAt: new Date(nowMs).toISOString(), workerId: jobId },
        this.#queuedDueAt(nowMs),
        'triggerer_due',
      );
    } catch (error) {
      if (!(error instanceof ConditionFailedError)) throw error;
      return undefined; // claimed by another triggerer, or moved on, since the index was read
    }
  }

  /** queued → running at the workload's attempt; a repeat of the same start is answered again. */
  async start(
    key: CallbackKey,
    attempt: number,
    worker: { hostname: string; workerId: string; startId?: string | undefined },
  ): Promise<StartedCallback> {
    const nowMs = this.#deps.now();
    let callback: Callback;
    const stored = await this.#get(key);
    if (stored.state === 'queued' && stored.notBefore !== null && Date.parse(stored.notBefore) > nowMs) {
      throw new StateConflictError(
        `Callback ${key.callbackId} attempt ${attempt} may not start before ${stored.notBefore} (its retry delay)`,
      );
    }
    try {
      callback = await this.#deps.store.transitionCallback(
        key,
        { state: 'queued', attempt },
        {
          state: 'running',
          startDate: new Date(nowMs).toISOString(),
          hostname: worker.hostname,
          workerId: worker.workerId,
          startId: worker.startId ?? null,
          notBefore: null,
        },
        this.#runningDueAt(nowMs, stored.timeoutMs),
        dueIndexOf(stored),
      );
    } catch (error) {
      if (!(error instanceof ConditionFailedError)) throw error;
      const current = await this.#get(key);
      const repeated =
        worker.startId !== undefined &&
        current.state === 'running' &&
        current.attempt === attempt &&
        current.startId === worker.startId;
      if (!repeated) throw conflictOf(key, current, 'queued', attempt);
      callback = current;
    }
    const run = await this.#deps.store.getDagRun(key);
    if (!run) throw new NotFoundError(`DAG run ${key.dagId}/${key.runId} not found`);
    const dag = await this.#deps.dags.get(run.dagId, callback.dagVersion);
    // From the change that owed it to its first start: what a backlog of callbacks costs.
    if (callback.attempt === 1 && !callback.handedBack) {
      this.#deps.metrics?.gauge('callbacks.start_latency_ms', nowMs - Date.parse(callback.owedAt));
    }
    return { callback, run, dag };
  }

  /**
   * Records how an attempt ended, then its log. A repeat of a recorded report is a duplicate;
   * a report for an attempt that moved on is refused and changes nothing (its log included).
   */
  async finish(
    key: CallbackKey,
    attempt: number,
    report: CallbackReport,
    options: { reportId: string; log?: string | undefined },
  ): Promise<{ callback: Callback; duplicate: boolean }> {
    if (options.log !== undefined) {
      const bytes = Buffer.byteLength(options.log);
      const limit = this.#deps.settings.logChunkMaxBytes;
      if (bytes > limit) {
        throw new LimitExceededError(
          `The log of callback ${key.callbackId} attempt ${attempt} is ${bytes} bytes, over the limit of ${limit} bytes (UPDRAFT_LOG_CHUNK_MAX_BYTES)`,
        );
      }
    }
    const current = await this.#get(key);
    if (current.reportId === options.reportId && current.attempt >= attempt) {
      return { callback: current, duplicate: true };
    }
    if (current.state !== 'running' || current.attempt !== attempt)
      throw conflictOf(key, current, 'running', attempt);
    const ended = await this.#endAttempt(current, report, this.#deps.now(), options.reportId);
    if (options.log && this.#deps.logs) {
      await this.#deps.logs.appendChunk(callbackLogKey(key), attempt, '000001', options.log);
    }
    return { callback: ended, duplicate: false };
  }

  async #endAttempt(
    current: Callback,
    report: CallbackReport,
    nowMs: number,
    reportId?: string,
  ): Promise<Callback> {
    const key = keyOf(current);
    const expected = { state: 'running' as const, attempt: current.attempt, revision: current.revision };
    const base = { endDate: new Date(nowMs).toISOString(), reportId: reportId ?? null };
    if (report.state === 'handed_back') {
      const handedBack = (current.handedBack ?? 0) + 1;
      if (handedBack > MAX_HANDED_BACK) {
        return this.#endAttempt(
          current,
          {
            state: 'failed',
            retryable: true,
            errorMessage: `Attempt ${current.attempt} was handed back unfinished ${handedBack} times (its workers or triggerers kept stopping): counted as a failed attempt`,
          },
          nowMs,
          reportId,
        );
      }
      const onTriggerer = current.place === 'triggerer';
      const queued = await this.#deps.store.transitionCallback(
        key,
        expected,
        {
          reportId: reportId ?? null,
          state: 'queued',
          handedBack,
          notBefore: null,
          queuedAt: new Date(nowMs).toISOString(),
          queuedSends: onTriggerer ? 0 : 1,
          startDate: null,
          hostname: null,
          workerId: null,
          startId: null,
        },
        onTriggerer ? new Date(nowMs).toISOString() : this.#queuedDueAt(nowMs),
        onTriggerer ? 'triggerer' : 'due',
      );
      if (!onTriggerer) await this.#send([queued]);
      return queued;
    }
    if (report.state === 'success') {
      const done = await this.#deps.store.transitionCallback(
        key,
        expected,
        { ...base, state: 'success', errorMessage: null },
        null,
      );
      this.#deps.metrics?.increment('callbacks.succeeded');
      return done;
    }
    if (report.retryable && current.attempt < current.maxAttempts) {
      const delayMs = Math.min(
        CALLBACK_MAX_RETRY_DELAY_MS,
        current.retryDelayMs * 2 ** (current.attempt - 1),
      );
      const notBeforeMs = nowMs + delayMs;
      const onTriggerer = current.place === 'triggerer';
      const sendNow = !onTriggerer && delayMs <= MAX_DELAY_SECONDS * 1000;
      const queued = await this.#deps.store.transitionCallback(
        key,
        expected,
        {
          ...base,
          state: 'queued',
          attempt: current.attempt + 1,
          // Each attempt has its own hand-backs (at most MAX_HANDED_BACK).
          handedBack: 0,
          errorMessage: report.errorMessage,
          notBefore: new Date(notBeforeMs).toISOString(),
          queuedAt: new Date(nowMs).toISOString(),
          queuedSends: sendNow ? 1 : 0,
          startDate: null,
          hostname: null,
          workerId: null,
          startId: null,
        },
        sendNow ? this.#queuedDueAt(notBeforeMs) : new Date(notBeforeMs).toISOString(),
        onTriggerer ? 'triggerer' : 'due',
      );
      this.#deps.metrics?.increment('callbacks.retried');
      if (sendNow) await this.#send([queued], Math.ceil(delayMs / 1000));
      return queued;
    }
    const failed = await this.#deps.store.transitionCallback(
      key,
      expected,
      { ...base, state: 'failed', errorMessage: report.errorMessage },
      null,
    );
    this.#deps.metrics?.increment('callbacks.failed');
    this.#deps.log?.warn('A callback failed for good', {
      callbackId: current.callbackId,
      kind: current.kind,
      run: `${current.dagId}/${current.runId}`,
      attempt: current.attempt,
      error: report.errorMessage,
    });
    return failed;
  }

  async #send(callbacks: readonly Callback[], delaySeconds = 0): Promise<void> {
    if (callbacks.length === 0) return;
    const nowMs = this.#deps.now();
    const messages = await Promise.all(
      callbacks.map(async (callback) => {
        const workload = await this.#workloadOf(callback, nowMs, delaySeconds);
        return { body: JSON.stringify(workload), ...(delaySeconds > 0 ? { delaySeconds } : {}) };
      }),
    );
    await sendAll(this.#deps.queues.callbacks, messages);
  }

  async #workloadOf(callback: Callback, nowMs: number, delaySeconds: number): Promise<CallbackWorkload> {
    // Callbacks have no heartbeat to refresh a token on: it outlives the longest the workload
    // may wait (its delay, then under the queued timeout), the attempt and the report's retries.
    const lifetimeSeconds =
      this.#deps.tokens.ttlSeconds +
      delaySeconds +
      Math.ceil(callback.timeoutMs / 1000) +
      REPORT_WINDOW_SECONDS;
    const token = await this.#deps.tokens.issueClaims(
      {
        kind: 'callback',
        dagId: callback.dagId,
        runId: callback.runId,
        callbackId: callback.callbackId,
        attempt: callback.attempt,
      },
      nowMs,
      lifetimeSeconds,
    );
    return {
      type: 'run_callback',
      dag_id: callback.dagId,
      run_id: callback.runId,
      callback_id: callback.callbackId,
      attempt: callback.attempt,
      token,
      fileloc: callback.fileloc,
      dag_version: callback.dagVersion,
    };
  }

  #callbackOf(
    run: DagRun,
    dag: SerializedDag,
    owner: CallbackOwner,
    owed: OwedCallback,
    ref: CallbackRef,
  ): Callback {
    const settings = this.#deps.settings;
    const isTask = owner.taskId !== undefined;
    const place = placeOfCallback(ref, settings);
    return {
      callbackId: callbackIdOf(owner, owed),
      kind: owed.k,
      dagId: run.dagId,
      runId: run.runId,
      dagVersion: run.dagVersion,
      fileloc: dag.fileloc,
      taskId: owner.taskId ?? null,
      mapIndex: owner.mapIndex ?? null,
      tryNumber: isTask ? owed.n : null,
      clearCount: isTask ? null : owed.n,
      index: owed.i,
      name: ref.name,
      ...(owed.d === undefined ? {} : { deadlineIndex: owed.d }),
      place,
      state: 'queued',
      attempt: 1,
      maxAttempts: (ref.retries ?? settings.callbackRetries) + 1,
      retryDelayMs: ref.retryDelayMs ?? settings.callbackRetryDelayMs,
      timeoutMs: ref.timeoutMs ?? settings.callbackExecutionTimeoutMs,
      ownerError: owed.e ?? null,
      ownerErrorType: owed.t ?? null,
      owedAt: owed.at,
      queuedAt: new Date(this.#deps.now()).toISOString(),
      // A triggerer's callback counts claims instead of sends.
      queuedSends: place === 'worker' ? 1 : 0,
      notBefore: null,
      startDate: null,
      endDate: null,
      hostname: null,
      workerId: null,
      startId: null,
      reportId: null,
      errorMessage: null,
      revision: 0,
    };
  }

  #queuedDueAt(fromMs: number): string {
    return new Date(fromMs + this.#deps.settings.queuedTimeoutMs).toISOString();
  }

  #runningDueAt(startMs: number, timeoutMs: number): string {
    return new Date(startMs + timeoutMs + this.#deps.settings.heartbeatTimeoutMs).toISOString();
  }

  #runningDueAtMs(callback: Callback): number {
    const start = callback.startDate === null ? 0 : Date.parse(callback.startDate);
    return start + callback.timeoutMs + this.#deps.settings.heartbeatTimeoutMs;
  }

  async #get(key: CallbackKey): Promise<Callback> {
    const callback = await this.#deps.store.getCallback(key);
    if (!callback)
      throw new NotFoundError(`Callback ${key.callbackId} of ${key.dagId}/${key.runId} not found`);
    return callback;
  }
}

/** The precondition of a change to a queued callback: still queued, at the attempt and revision read. */
function stillQueued(callback: Callback): CallbackExpectation {
  return { state: 'queued', attempt: callback.attempt, revision: callback.revision };
}

/**
 * The callbacks in an order of the job's own: by a hash of (job, callback). Each triggerer tries
 * them in a different order, the same for every claim of one job (no randomness: a replay of the
 * simulation claims the same way).
 */
function orderedForJob(callbacks: readonly Callback[], jobId: string): Callback[] {
  return callbacks
    .map((callback) => ({
      callback,
      rank: createHash('sha256').update(`${jobId}\u0000${callback.callbackId}`).digest().readUInt32BE(0),
    }))
    .sort((a, b) => a.rank - b.rank)
    .map(({ callback }) => callback);
}

function keyOf(callback: Callback): CallbackKey {
  return { dagId: callback.dagId, runId: callback.runId, callbackId: callback.callbackId };
}

/** The callback's reference in the run's DAG version. */
function refOf(
  dag: SerializedDag,
  task: SerializedTask | undefined,
  owed: OwedCallback,
): CallbackRef | undefined {
  if (owed.k === 'deadline_missed') {
    return owed.d === undefined ? undefined : dag.deadlines?.[owed.d]?.callbacks[owed.i];
  }
  const { owner, event } = eventOfKind(owed.k);
  const lists = (owner === 'dag' ? dag.callbacks : task?.callbacks) as
    | Record<string, CallbackRef[] | undefined>
    | undefined;
  return lists?.[event]?.[owed.i];
}

function conflictOf(
  key: CallbackKey,
  current: Callback,
  expected: string,
  attempt: number,
): StateConflictError {
  return new StateConflictError(
    `Callback ${key.callbackId} is ${current.state} at attempt ${current.attempt}, expected ${expected} at attempt ${attempt}`,
  );
}

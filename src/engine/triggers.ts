import { createHash, randomBytes } from 'node:crypto';
import type { Settings } from '#config/settings.ts';
import type { TriggerEventType } from '#contracts/triggers.ts';
import type { CallbackErrorType } from '#core/callbacks.ts';
import { mapConcurrently } from '#core/concurrency.ts';
import {
  type DagRunKey,
  formatTaskInstanceKey,
  type TaskInstance,
  type TaskInstanceKey,
  type Trigger,
  type TriggererJob,
} from '#core/models.ts';
import { failureTransition } from '#core/retry.ts';
import { type LogStore, triggerChunkId } from '#logs/port.ts';
import type { Metrics } from '#metrics/port.ts';
import { ConditionFailedError, NotFoundError as StoreNotFoundError } from '#store/errors.ts';
import { assertKeySegment, isKeySegment } from '#store/keys.ts';
import type { Store, TaskInstanceChanges } from '#store/port.ts';
import { type CallbackService, owedOnTask } from './callbacks.ts';
import type { DagVersionCache } from './dag-cache.ts';
import { NotFoundError, NotReadyError, StateConflictError } from './errors.ts';
import type { Logger } from './logger.ts';
import { RunCache } from './run-cache.ts';
import type { TaskTokenSigner } from './tokens.ts';

export const DEFAULT_TRIGGER_QUEUE = 'default';

/** The id of the trigger of one deferral: the same deferral always gets the same id. */
export function triggerIdOf(key: TaskInstanceKey, tryNumber: number, deferralSeq: number): string {
  return createHash('sha256')
    .update(JSON.stringify([key.dagId, key.runId, key.taskId, key.mapIndex, tryNumber, deferralSeq]))
    .digest('base64url')
    .slice(0, 22);
}

/**
 * When a deferral's wait ends: its own timeout, or the task's execution timeout counted from the
 * try's first start (Airflow counts the execution timeout across deferrals), whichever is first.
 */
export function deferralTimeoutAt(
  nowMs: number,
  timeoutMs: number | null,
  tryStartedAt: string,
  executionTimeoutMs: number | null,
): string | null {
  const candidates: number[] = [];
  if (timeoutMs !== null) candidates.push(nowMs + timeoutMs);
  if (executionTimeoutMs !== null) candidates.push(Date.parse(tryStartedAt) + executionTimeoutMs);
  return candidates.length === 0 ? null : new Date(Math.min(...candidates)).toISOString();
}

/** Whether `ti` waits on exactly this trigger's deferral. */
export function waitsOn(ti: TaskInstance | undefined, trigger: Trigger): boolean {
  return (
    ti !== undefined &&
    ti.state === 'deferred' &&
    ti.tryNumber === trigger.tryNumber &&
    (ti.deferralSeq ?? 0) === trigger.deferralSeq
  );
}

/**
 * Whether the TI is about to wait on this trigger: the trigger is stored before the TI's own
 * write (a worker's deferral report, or the scheduler starting a try in its trigger), so for a
 * moment it exists while the TI still runs the phase before it.
 */
export function deferralInFlight(ti: TaskInstance | undefined, trigger: Trigger): boolean {
  if (!ti) return false;
  const seq = ti.deferralSeq ?? 0;
  if (ti.state === 'running') return ti.tryNumber === trigger.tryNumber && seq === trigger.deferralSeq - 1;
  const startsInTrigger = ti.state === 'none' || ti.state === 'scheduled' || ti.state === 'up_for_retry';
  return startsInTrigger && trigger.deferralSeq === 1 && ti.tryNumber === trigger.tryNumber - 1;
}

export type EventOutcome = 'applied' | 'duplicate' | 'stale';

export interface TriggerLifecycleDeps {
  store: Store;
  dags: DagVersionCache;
  logs: LogStore;
  tokens: TaskTokenSigner;
  notifier: { notify(run: DagRunKey | TaskInstanceKey): Promise<void> };
  metrics: Metrics;
  log: Logger;
  settings: Pick<
    Settings,
    'xcomMaxBytes' | 'logChunkMaxBytes' | 'triggererHeartbeatIntervalMs' | 'triggererHeartbeatTimeoutMs'
  >;
  now: () => number;
  /** Materializes what an applied event owes before the call answers; without it, the tick does. */
  callbacks?: Pick<CallbackService, 'materialize'>;
}

/** An event as `TriggerLifecycle.events` takes it. */
export interface TriggerEventItem {
  triggerId: string;
  event: { type: TriggerEventType; payload: string };
  log?: { seq: number; text: string } | undefined;
}

/** Removes a trigger whose deferral is over: at once, or with the rest of a batch. */
type DropTrigger = (trigger: Trigger) => Promise<void>;

/** The stored trigger if `jobId` holds it; a trigger held by no job or another one is a conflict. */
function heldBy(jobId: string, triggerId: string, trigger: Trigger | undefined): Trigger | undefined {
  if (!trigger) return undefined;
  if (trigger.jobId !== jobId) {
    throw new StateConflictError(
      trigger.jobId === null
        ? `Trigger ${triggerId} is not claimed by this triggerer (job ${jobId}); it was released`
        : `Trigger ${triggerId} is held by another triggerer now (job ${trigger.jobId}), not by job ${jobId}`,
    );
  }
  return trigger;
}

/** Dead jobs that hold no trigger any more are deleted this long after they ended. */
const DEAD_JOB_RETENTION_MS = 24 * 60 * 60 * 1000;
const PAGE = 100;
/** Trigger ids one answer of `held` names at most (a cleanup call's bound). */
const HELD_PAGE = 1_000;
/** Claim writes one load keeps in flight. */
const CLAIM_CONCURRENCY = 25;
/** Events of one `events` call applied at once. */
const EVENT_BATCH_CONCURRENCY = 16;
/** Takeovers of one trigger before it is taken for the cause of its triggerers' deaths. */
const MAX_TAKEOVERS = 3;

/**
 * The triggerer's side of the Execution API: liveness jobs, claims, workloads, events, failures
 * and cleanup. A triggerer acts only on triggers its job holds; every change to a TI is one
 * conditional write on its state, try and deferral, so an event for an earlier deferral or try,
 * a duplicate, or one after a timeout changes nothing (first event wins). Nothing here is kept
 * between calls. See `src/triggerer/ADR.md`.
 */
export class TriggerLifecycle {
  readonly #deps: TriggerLifecycleDeps;
  /** Runs by key: only their DAG version is read, which never changes. */
  readonly #runs: RunCache;

  constructor(deps: TriggerLifecycleDeps) {
    this.#deps = deps;
    this.#runs = new RunCache(deps.store);
  }

  async registerJob(input: { hostname: string; capacity: number; queues: string[] }) {
    const nowIso = this.#nowIso();
    const job: TriggererJob = {
      jobId: randomBytes(12).toString('base64url'),
      hostname: input.hostname,
      capacity: input.capacity,
      queues: [...new Set(input.queues)],
      state: 'running',
      startedAt: nowIso,
      heartbeatAt: nowIso,
      endedAt: null,
      running: 0,
      revision: 0,
    };
    await this.#deps.store.putJob(job);
    this.#deps.log.info('Triggerer job registered', {
      jobId: job.jobId,
      hostname: job.hostname,
      capacity: job.capacity,
      queues: job.queues,
    });
    const token = await this.#deps.tokens.issueClaims({ kind: 'job', jobId: job.jobId }, this.#deps.now());
    return { job, token };
  }

  /** Records a heartbeat; `StateConflictError` when the job is no longer running (it must register again). */
  async heartbeat(jobId: string, running: number): Promise<TriggererJob> {
    try {
      return await this.#deps.store.heartbeatJob(jobId, this.#nowIso(), running);
    } catch (error) {
      if (!(error instanceof ConditionFailedError)) throw error;
      throw new StateConflictError(
        `Triggerer job ${jobId} is not running (it completed, or was found dead and its triggers taken over): register again`,
        { cause: error },
      );
    }
  }

  /** Ends the job and hands its triggers back, so other triggerers claim them at once. */
  async complete(jobId: string): Promise<void> {
    try {
      await this.#deps.store.completeJob(jobId, this.#nowIso());
    } catch (error) {
      if (error instanceof StoreNotFoundError) {
        throw new NotFoundError(`Triggerer job ${jobId} not found (ended long ago)`, { cause: error });
      }
      throw error;
    }
    const released = await this.#releaseAll(jobId);
    this.#deps.log.info('Triggerer job completed', { jobId, released });
  }

  /**
   * Claims up to `limit` triggers for the job: first those of dead jobs (silent longer than the
   * heartbeat timeout, or completed), then unclaimed ones, oldest first. Each claim is one
   * conditional write, so two triggerers never hold one trigger.
   */
  async load(jobId: string, limit: number, queues?: readonly string[]): Promise<string[]> {
    const job = await this.runningJob(jobId);
    const served = new Set(queues ?? job.queues);
    const claimed: string[] = [];
    const nowIso = this.#nowIso();
    for (const dead of await this.#deadJobs(jobId)) {
      let cursor: string | undefined;
      do {
        if (claimed.length >= limit) return claimed;
        const page = await this.#deps.store.listTriggersOfJob(dead.jobId, {
          limit: PAGE,
          ...(cursor ? { cursor } : {}),
        });
        for (const trigger of page.items) {
          if (claimed.length >= limit) return claimed;
          if (!served.has(trigger.queue)) continue;
          const takeovers = (trigger.takeovers ?? 0) + 1;
          if (takeovers > MAX_TAKEOVERS) {
            // Every triggerer that ran it stopped heartbeating: most likely it blocks the event
            // loop. Handing it on would take down the next one too.
            await this.#quarantine(trigger).catch((error: unknown) =>
              this.#deps.log.warn(
                'Could not fail the task of a quarantined trigger; the next load tries again',
                {
                  triggerId: trigger.triggerId,
                  error,
                },
              ),
            );
            continue;
          }
          if (await this.#claim(trigger.triggerId, dead.jobId, jobId, nowIso, takeovers)) {
            claimed.push(trigger.triggerId);
            this.#deps.metrics.increment('triggers.taken_over');
          }
        }
        cursor = page.nextCursor;
      } while (cursor);
    }
    if (claimed.length < limit) {
      const unclaimed = await this.#deps.store.listUnclaimedTriggers([...served], limit - claimed.length);
      // Claims are independent conditional writes: several in flight, not one after another.
      await mapConcurrently(unclaimed, CLAIM_CONCURRENCY, async (trigger) => {
        if (await this.#claim(trigger.triggerId, null, jobId, nowIso)) claimed.push(trigger.triggerId);
      });
    }
    return claimed;
  }

  /** The run-trigger workloads of `ids` the job holds; the rest (and triggers no TI waits on) are to stop. */
  async workloads(jobId: string, ids: readonly string[]): Promise<{ workloads: Trigger[]; stop: string[] }> {
    await this.runningJob(jobId);
    const { wanted, stop } = await this.#sortHeld(jobId, ids);
    return { workloads: wanted, stop };
  }

  /**
   * The ids of `ids` the job must stop: not its own any more, gone, or no longer waited on. With
   * `complete` (`ids` are all the job runs), also the triggers it holds but did not name, which a
   * load whose answer was lost claimed for it: it runs those.
   */
  async cleanup(
    jobId: string,
    ids: readonly string[],
    complete = false,
  ): Promise<{ stop: string[]; adopt: string[] }> {
    const { stop } = await this.#sortHeld(jobId, ids);
    if (!complete) return { stop, adopt: [] };
    const named = new Set(ids);
    const adopt: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.#deps.store.listTriggersOfJob(jobId, {
        limit: PAGE,
        ...(cursor ? { cursor } : {}),
      });
      for (const trigger of page.items) if (!named.has(trigger.triggerId)) adopt.push(trigger.triggerId);
      cursor = page.nextCursor;
    } while (cursor && adopt.length < 1_000);
    return { stop, adopt: adopt.slice(0, 1_000) };
  }

  /**
   * One page (up to 1,000) of the ids of the triggers the job holds, for a triggerer that holds
   * more than one cleanup call may name: it runs the ones it does not know (a lost load answer).
   */
  async held(jobId: string, cursor?: string): Promise<{ ids: string[]; nextCursor?: string }> {
    await this.runningJob(jobId);
    const page = await this.#deps.store.listTriggersOfJob(jobId, {
      limit: HELD_PAGE,
      ...(cursor === undefined ? {} : { cursor }),
    });
    return {
      ids: page.items.map((trigger) => trigger.triggerId),
      ...(page.nextCursor === undefined ? {} : { nextCursor: page.nextCursor }),
    };
  }

  /**
   * Applies a trigger's event to its deferral: `resume` schedules the TI again with the payload
   * as its next event; `success` / `failure` end it there. The payload stays opaque text.
   */
  async event(
    jobId: string,
    triggerId: string,
    event: { type: TriggerEventType; payload: string },
    log?: { seq: number; text: string },
  ): Promise<EventOutcome> {
    const trigger = await this.#heldTrigger(jobId, triggerId);
    if (!trigger) return this.#stale(triggerId, 'the trigger is gone');
    return this.#event(trigger, event, log, this.#dropOne);
  }

  /**
   * Events of several triggers the job holds, each applied as `event` applies it, with its own
   * outcome or error (held by another job, its TI not waiting yet, a store failure), in the order
   * given. The triggers are read in one batch request, and the ones that are done deleted in
   * batches at the end: about one store request an event instead of three. Deletes that fail are
   * logged, not answered: the events are applied either way.
   */
  async events(jobId: string, items: readonly TriggerEventItem[]): Promise<(EventOutcome | Error)[]> {
    // An id that no key can hold is answered on its own (400), not by failing the whole call.
    const readable = items.map((item) => item.triggerId).filter(isKeySegment);
    const stored = new Map(
      (await this.#deps.store.getTriggers(readable)).map((trigger) => [trigger.triggerId, trigger]),
    );
    const done: string[] = [];
    const drop = async (trigger: Trigger) => {
      done.push(trigger.triggerId);
    };
    const results = await mapConcurrently(items, EVENT_BATCH_CONCURRENCY, async (item) => {
      try {
        assertKeySegment('Trigger id', item.triggerId);
        const trigger = heldBy(jobId, item.triggerId, stored.get(item.triggerId));
        if (!trigger) return this.#stale(item.triggerId, 'the trigger is gone');
        return await this.#event(trigger, item.event, item.log, drop);
      } catch (error) {
        return error instanceof Error ? error : new Error(String(error));
      }
    });
    // The events are applied: a trigger left behind is answered `duplicate` or `stale` if its
    // event comes again, and cleanup deletes it once its TI has moved on.
    await this.#deps.store.deleteTriggers(done).catch((error: unknown) => {
      this.#deps.log.warn('Could not delete the triggers of applied events; cleanup deletes them', {
        triggers: done.length,
        error,
      });
    });
    return results;
  }

  async #event(
    trigger: Trigger,
    event: { type: TriggerEventType; payload: string },
    log: { seq: number; text: string } | undefined,
    drop: DropTrigger,
  ): Promise<EventOutcome> {
    await this.#appendLog(trigger, log);
    // A failure's payload only names the reason, cut to fit the task's error message.
    const oversize = event.type === 'failure' ? undefined : this.#oversizePayload(trigger, event.payload);
    // Refusing it would leave the task waiting for an event that can never be accepted.
    if (oversize) return this.#failTry(trigger, oversize, false, drop);
    const nowIso = this.#nowIso();
    const base: TaskInstanceChanges = { triggerId: null, triggerTimeoutAt: null };
    let changes: TaskInstanceChanges;
    switch (event.type) {
      case 'resume':
        changes = { ...base, state: 'scheduled', nextEvent: event.payload, nextEventAt: nowIso };
        break;
      case 'success': {
        const ti = await this.#deps.store.getTaskInstance(trigger.ti);
        if (!waitsOn(ti, trigger)) return this.#settle(trigger, ti, drop);
        if (event.payload !== 'null') {
          try {
            await this.#deps.store.putXCom(
              { ...trigger.ti, key: 'return_value' },
              event.payload,
              trigger.tryNumber,
            );
          } catch (error) {
            if (!(error instanceof ConditionFailedError)) throw error;
            return this.#settle(trigger, await this.#deps.store.getTaskInstance(trigger.ti), drop);
          }
        }
        changes = { ...base, state: 'success', endDate: nowIso, ...finished() };
        break;
      }
      case 'failure':
        changes = {
          ...base,
          state: 'failed',
          endDate: nowIso,
          errorMessage: `The trigger ended the task as failed: ${messageOf(event.payload)}`,
          ...finished(),
        };
        break;
    }
    return this.#apply(trigger, changes, `event (${event.type})`, 'trigger_failure', drop);
  }

  /** A trigger that failed (raised, or could not be run): the try fails, and retries if it may. */
  async failure(jobId: string, triggerId: string, error: string, log?: { seq: number; text: string }) {
    const trigger = await this.#heldTrigger(jobId, triggerId);
    if (!trigger) return this.#stale(triggerId, 'the trigger is gone');
    await this.#appendLog(trigger, log);
    this.#deps.metrics.increment('triggers.failed');
    return this.#failTry(trigger, `Trigger ${trigger.name} failed: ${error}`, true);
  }

  /** Fails the try of a trigger that took down every triggerer that ran it. */
  async #quarantine(trigger: Trigger): Promise<void> {
    this.#deps.metrics.increment('triggers.quarantined');
    this.#deps.log.error(
      'A trigger outlived every triggerer that ran it; its task fails instead of being handed on',
      {
        triggerId: trigger.triggerId,
        trigger: trigger.name,
        ti: formatTaskInstanceKey(trigger.ti),
        takeovers: trigger.takeovers ?? 0,
      },
    );
    await this.#failTry(
      trigger,
      `Trigger ${trigger.name} was taken over ${trigger.takeovers ?? 0} times from triggerers that stopped heartbeating while they ran it (a trigger that blocks the event loop does this): the task fails rather than take down another triggerer`,
      false,
    );
  }

  /** Ends the deferral's try as failed (up for retry when `retryable` and tries are left). */
  async #failTry(
    trigger: Trigger,
    message: string,
    retryable: boolean,
    drop: DropTrigger = this.#dropOne,
  ): Promise<EventOutcome> {
    const ti = await this.#deps.store.getTaskInstance(trigger.ti);
    if (!ti || !waitsOn(ti, trigger)) return this.#settle(trigger, ti, drop);
    const run = await this.#runs.get(trigger.ti);
    const dag = run ? await this.#deps.dags.get(run.dagId, run.dagVersion) : undefined;
    const task = dag?.tasks.find((t) => t.taskId === trigger.ti.taskId);
    const nowMs = this.#deps.now();
    const next = task ? failureTransition(ti, task, nowMs, { retryable }) : { state: 'failed' as const };
    return this.#apply(
      trigger,
      {
        state: next.state,
        nextRetryAt: next.state === 'up_for_retry' ? next.nextRetryAt : null,
        endDate: new Date(nowMs).toISOString(),
        errorMessage: message,
        triggerId: null,
        triggerTimeoutAt: null,
        ...finished(),
      },
      'failure',
      'trigger_failure',
      drop,
    );
  }

  /** Log chunks of triggers the job holds; others are ignored. */
  async appendLogs(jobId: string, chunks: readonly { trigger_id: string; seq: number; text: string }[]) {
    const ids = [...new Set(chunks.map((chunk) => chunk.trigger_id))];
    const held = new Map(
      (await this.#deps.store.getTriggers(ids))
        .filter((trigger) => trigger.jobId === jobId)
        .map((trigger) => [trigger.triggerId, trigger]),
    );
    for (const chunk of chunks) {
      const trigger = held.get(chunk.trigger_id);
      if (trigger) await this.#appendLog(trigger, chunk);
    }
  }

  async #apply(
    trigger: Trigger,
    changes: TaskInstanceChanges,
    what: string,
    errorType: CallbackErrorType,
    drop: DropTrigger,
  ): Promise<EventOutcome> {
    const key = trigger.ti;
    const run = await this.#runs.get(key);
    const dag = run ? await this.#deps.dags.get(run.dagId, run.dagVersion) : undefined;
    const task = dag?.tasks.find((t) => t.taskId === key.taskId);
    const owed =
      changes.state === undefined
        ? []
        : owedOnTask(task, {
            to: changes.state,
            tryNumber: trigger.tryNumber,
            atMs: this.#deps.now(),
            errorMessage: changes.errorMessage,
            errorType,
          });
    let ti: TaskInstance;
    try {
      ti = await this.#deps.store.transitionTaskInstance(
        key,
        { state: 'deferred', tryNumber: trigger.tryNumber, deferralSeq: trigger.deferralSeq },
        changes,
        { owed },
      );
    } catch (error) {
      if (!(error instanceof ConditionFailedError)) throw error;
      return this.#settle(trigger, await this.#deps.store.getTaskInstance(key), drop);
    }
    if (run && ti.owedCallbacks && this.#deps.callbacks) {
      // The event is applied and its callbacks owed durably: a failure here leaves them to the tick.
      await this.#deps.callbacks.materialize({ run, ti }, ti.owedCallbacks, dag).catch((error: unknown) => {
        this.#deps.log.warn(
          'Callbacks owed by an applied trigger event were not materialized; the tick does it',
          {
            ti: formatTaskInstanceKey(key),
            error,
          },
        );
      });
    }
    this.#deps.metrics.increment('triggers.events_applied');
    if (changes.state === 'success') this.#deps.metrics.increment('triggers.succeeded');
    this.#deps.log.info(`Trigger ${what} applied`, {
      ti: formatTaskInstanceKey(key),
      tryNumber: trigger.tryNumber,
      deferralSeq: trigger.deferralSeq,
      state: changes.state,
    });
    await drop(trigger);
    await this.#deps.notifier.notify(key);
    return 'applied';
  }

  /**
   * The TI no longer waits on this deferral: the event was applied before (its answer lost) or it
   * is stale (an earlier deferral or try, a timeout, a clear). Either way the trigger goes.
   */
  async #settle(trigger: Trigger, ti: TaskInstance | undefined, drop: DropTrigger): Promise<EventOutcome> {
    if (deferralInFlight(ti, trigger)) {
      // Its TI has not started waiting yet: the triggerer sends the event again shortly.
      throw new NotReadyError(
        `Trigger ${trigger.triggerId} fired before its task instance finished deferring; send the event again`,
      );
    }
    await drop(trigger);
    const sameDeferral =
      ti !== undefined && ti.tryNumber === trigger.tryNumber && (ti.deferralSeq ?? 0) === trigger.deferralSeq;
    if (sameDeferral && ti.nextEventAt !== undefined && ti.nextEventAt !== null) return 'duplicate';
    return this.#stale(
      trigger.triggerId,
      ti
        ? `${formatTaskInstanceKey(ti)} is ${ti.state} at try ${ti.tryNumber}, deferral ${ti.deferralSeq ?? 0}; the trigger was for try ${trigger.tryNumber}, deferral ${trigger.deferralSeq}`
        : 'its task instance is gone',
    );
  }

  #stale(triggerId: string, why: string): EventOutcome {
    this.#deps.metrics.increment('triggers.stale_events_dropped');
    this.#deps.log.info('Dropped a trigger event its task instance no longer waits for', { triggerId, why });
    return 'stale';
  }

  async #heldTrigger(jobId: string, triggerId: string): Promise<Trigger | undefined> {
    return heldBy(jobId, triggerId, await this.#deps.store.getTrigger(triggerId));
  }

  /** Deletes a trigger whose deferral is over, unless another job holds it by now. */
  readonly #dropOne: DropTrigger = (trigger) =>
    this.#deps.store.deleteTrigger(trigger.triggerId, trigger.jobId);

  async #sortHeld(jobId: string, ids: readonly string[]): Promise<{ wanted: Trigger[]; stop: string[] }> {
    const unique = [...new Set(ids)];
    const triggers = new Map((await this.#deps.store.getTriggers(unique)).map((t) => [t.triggerId, t]));
    const held = [...triggers.values()].filter((trigger) => trigger.jobId === jobId);
    const tis = await this.#deps.store.getTaskInstances(held.map((trigger) => trigger.ti));
    const tiOf = new Map(tis.map((ti) => [formatTaskInstanceKey(ti), ti]));
    const wanted: Trigger[] = [];
    const stop: string[] = [];
    for (const id of unique) {
      const trigger = triggers.get(id);
      if (!trigger || trigger.jobId !== jobId) {
        stop.push(id);
        continue;
      }
      const ti = tiOf.get(formatTaskInstanceKey(trigger.ti));
      // A deferral still being written is run too: if it never completes, its event is stale.
      if (waitsOn(ti, trigger) || deferralInFlight(ti, trigger)) {
        wanted.push(trigger);
        continue;
      }
      // Its task instance moved on (a timeout, a clear, a state set by hand): nothing waits for it.
      await this.#deps.store.deleteTrigger(id, jobId);
      this.#deps.metrics.increment('triggers.cleaned_up');
      stop.push(id);
    }
    return { wanted, stop };
  }

  /** The job, which must be running (404 when gone, 409 when completed: register again). */
  async runningJob(jobId: string): Promise<TriggererJob> {
    const job = await this.#deps.store.getJob(jobId);
    if (!job) throw new NotFoundError(`Triggerer job ${jobId} not found: register again`);
    if (job.state !== 'running')
      throw new StateConflictError(`Triggerer job ${jobId} is ${job.state}: register again`);
    return job;
  }

  /** Jobs other than `self` that are dead: completed, or silent past the heartbeat timeout (then completed here). */
  async #deadJobs(self: string): Promise<TriggererJob[]> {
    const nowMs = this.#deps.now();
    const dead: TriggererJob[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.#deps.store.listJobs({ limit: PAGE, ...(cursor ? { cursor } : {}) });
      for (const job of page.items) {
        if (job.jobId === self) continue;
        if (job.state === 'complete') {
          dead.push(job);
          continue;
        }
        if (nowMs - Date.parse(job.heartbeatAt) > this.#deps.settings.triggererHeartbeatTimeoutMs) {
          // Only if no heartbeat came since the read: a job a moment late is not declared dead.
          // Its next heartbeat is then answered 409, and it registers again.
          try {
            await this.#deps.store.completeJob(job.jobId, new Date(nowMs).toISOString(), job.heartbeatAt);
          } catch (error) {
            if (error instanceof ConditionFailedError) continue;
            throw error;
          }
          this.#deps.metrics.increment('triggerer.jobs_dead');
          this.#deps.log.warn('Triggerer job stopped heartbeating; its triggers go to other triggerers', {
            jobId: job.jobId,
            hostname: job.hostname,
            heartbeatAt: job.heartbeatAt,
          });
          dead.push({ ...job, state: 'complete', endedAt: new Date(nowMs).toISOString() });
        }
      }
      cursor = page.nextCursor;
    } while (cursor);
    for (const job of dead) {
      if (job.endedAt !== null && nowMs - Date.parse(job.endedAt) > DEAD_JOB_RETENTION_MS) {
        const held = await this.#deps.store.listTriggersOfJob(job.jobId, { limit: 1 });
        if (held.items.length === 0) await this.#deps.store.deleteJob(job.jobId);
      }
    }
    return dead;
  }

  async #claim(
    triggerId: string,
    expected: string | null,
    jobId: string,
    nowIso: string,
    takeovers?: number,
  ): Promise<boolean> {
    try {
      await this.#deps.store.claimTrigger(triggerId, expected, jobId, nowIso, takeovers);
      return true;
    } catch (error) {
      if (error instanceof ConditionFailedError) return false;
      throw error;
    }
  }

  async #releaseAll(jobId: string): Promise<number> {
    let released = 0;
    let cursor: string | undefined;
    do {
      const page = await this.#deps.store.listTriggersOfJob(jobId, {
        limit: PAGE,
        ...(cursor ? { cursor } : {}),
      });
      for (const trigger of page.items) {
        await this.#deps.store.releaseTrigger(trigger.triggerId, jobId);
        released += 1;
      }
      cursor = page.nextCursor;
    } while (cursor);
    return released;
  }

  /** A chunk over the limit is cut (saying so) rather than refused: a log must never cost an event. */
  async #appendLog(trigger: Trigger, log: { seq: number; text: string } | undefined): Promise<void> {
    if (!log || log.text === '') return;
    const limit = this.#deps.settings.logChunkMaxBytes;
    let text = log.text;
    const bytes = Buffer.byteLength(text);
    if (bytes > limit) {
      const notice = `\n[updraft] trigger log chunk ${log.seq} was ${bytes} bytes, cut to the limit of ${limit} bytes (UPDRAFT_LOG_CHUNK_MAX_BYTES)\n`;
      const room = Math.max(0, limit - Buffer.byteLength(notice));
      text =
        Buffer.from(text)
          .subarray(0, room)
          .toString('utf8')
          .replace(/\uFFFD$/, '') + notice;
    }
    await this.#deps.logs.appendChunk(
      trigger.ti,
      trigger.tryNumber,
      triggerChunkId(trigger.deferralSeq, log.seq),
      text,
    );
  }

  /** Why the payload cannot be stored, or undefined when it fits. */
  #oversizePayload(trigger: Trigger, payload: string): string | undefined {
    const bytes = Buffer.byteLength(payload);
    const limit = this.#deps.settings.xcomMaxBytes;
    if (bytes <= limit) return undefined;
    return `The event of trigger ${trigger.name} is ${bytes} bytes, over the limit of ${limit} bytes (UPDRAFT_XCOM_MAX_BYTES): the trigger must send less`;
  }

  #nowIso(): string {
    return new Date(this.#deps.now()).toISOString();
  }
}

/** A try that ends while deferred: what it waited on goes with it. */
function finished(): TaskInstanceChanges {
  return { heartbeatAt: null, nextMethod: null, nextKwargs: null, nextEvent: null };
}

/**
 * The message of a failure event. Its payload is serde text of a string; reading a JSON string
 * builds no object. Anything else is shown as it came, cut short.
 */
function messageOf(payload: string): string {
  try {
    const value: unknown = JSON.parse(payload);
    if (typeof value === 'string') return value.slice(0, 10_000);
  } catch {
    // Shown as it came.
  }
  return payload.slice(0, 2_000);
}

import type { Settings } from '#config/settings.ts';
import type { CallbackErrorType } from '#core/callbacks.ts';
import { formatTaskInstanceKey, type TaskInstance } from '#core/models.ts';
import { failureTransition } from '#core/retry.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import type { Metrics } from '#metrics/port.ts';
import type { Store } from '#store/port.ts';
import { owedOnTask } from './callbacks.ts';
import { ignoreConflict } from './conflicts.ts';
import type { Logger } from './logger.ts';
import type { OrphanPolicy } from './ports.ts';

export interface ReconcileResult {
  /** The run's TIs with the changes applied. */
  taskInstances: TaskInstance[];
  /** Queued TIs whose workload must be sent again (their queuedAt was refreshed). */
  resend: TaskInstance[];
}

/**
 * Reconciliation of one run's active TIs against time: a running TI whose heartbeat is older
 * than `heartbeatTimeoutMs` is a zombie and is failed or retried; a queued TI older than
 * `queuedTimeoutMs` lost its workload and gets it again, at most `maxQueuedSends` workloads per
 * try, after which the try fails (a workload no worker ever starts: a wrong secret, a poisoned
 * message). The orphan policy (a standalone restart, whose workers and queues died with the
 * previous process) marks both at once. Every write is conditional on the state and try seen,
 * so a TI that moved on meanwhile is left alone.
 */
export async function reconcileActiveTaskInstances(
  deps: {
    store: Store;
    settings: Pick<Settings, 'heartbeatTimeoutMs' | 'queuedTimeoutMs' | 'maxQueuedSends'>;
    log: Logger;
    metrics: Metrics;
    orphans?: OrphanPolicy;
  },
  taskInstances: TaskInstance[],
  dag: SerializedDag,
  nowMs: number,
): Promise<ReconcileResult> {
  const { store, settings, log, orphans } = deps;
  const updated = new Map<TaskInstance, TaskInstance>();
  const stale = (since: string | null, limitMs: number) =>
    since !== null && nowMs - Date.parse(since) > limitMs;
  /** Fails the try (or puts it up for retry) if it is still in `from` at its try number. */
  const endTry = async (
    ti: TaskInstance,
    from: 'running' | 'queued',
    errorMessage: string,
    errorType: CallbackErrorType,
  ) => {
    const task = dag.tasks.find((t) => t.taskId === ti.taskId);
    if (!task) return;
    const next = failureTransition(ti, task, nowMs, { retryable: true });
    const owed = owedOnTask(task, {
      to: next.state,
      tryNumber: ti.tryNumber,
      atMs: nowMs,
      errorMessage,
      errorType,
    });
    const failed = await ignoreConflict(
      store.transitionTaskInstance(
        ti,
        { state: from, tryNumber: ti.tryNumber },
        {
          state: next.state,
          nextRetryAt: next.state === 'up_for_retry' ? next.nextRetryAt : null,
          endDate: new Date(nowMs).toISOString(),
          errorMessage,
        },
        { owed },
      ),
    );
    if (failed) updated.set(ti, failed);
  };
  const due = (at: string | null | undefined) => typeof at === 'string' && Date.parse(at) <= nowMs;
  /** A deferral whose trigger did not fire in time: the try fails, and retries if it may (as in Airflow). */
  const timeOutDeferral = async (ti: TaskInstance) => {
    log.warn('A deferred task instance timed out waiting for its trigger', {
      ti: formatTaskInstanceKey(ti),
      tryNumber: ti.tryNumber,
      triggerTimeoutAt: ti.triggerTimeoutAt,
    });
    if (
      await endDeferral(
        ti,
        `Deferral timed out: the trigger did not fire by ${ti.triggerTimeoutAt} (the task's defer timeout, or its execution timeout counted across deferrals)`,
        'deferral_timeout',
      )
    ) {
      deps.metrics.increment('ti.deferral_timeouts');
    }
  };
  /** Ends a deferral's try as failed or up for retry, if it still waits on that deferral. */
  const endDeferral = async (
    ti: TaskInstance,
    errorMessage: string,
    errorType: CallbackErrorType,
  ): Promise<boolean> => {
    const task = dag.tasks.find((t) => t.taskId === ti.taskId);
    if (!task) return false;
    const next = failureTransition(ti, task, nowMs, { retryable: true });
    const owed = owedOnTask(task, {
      to: next.state,
      tryNumber: ti.tryNumber,
      atMs: nowMs,
      errorMessage,
      errorType,
    });
    const failed = await ignoreConflict(
      store.transitionTaskInstance(
        ti,
        { state: 'deferred', tryNumber: ti.tryNumber, deferralSeq: ti.deferralSeq ?? 0 },
        {
          state: next.state,
          nextRetryAt: next.state === 'up_for_retry' ? next.nextRetryAt : null,
          endDate: new Date(nowMs).toISOString(),
          errorMessage,
          triggerId: null,
          triggerTimeoutAt: null,
          nextMethod: null,
          nextKwargs: null,
          nextEvent: null,
        },
        { owed },
      ),
    );
    if (!failed) return false;
    updated.set(ti, failed);
    // Its triggerer learns at its next cleanup that nothing waits on it any more.
    if (typeof ti.triggerId === 'string') await store.deleteTrigger(ti.triggerId).catch(() => undefined);
    return true;
  };
  /**
   * A deferred TI whose trigger row is gone waits on nothing (a trigger deleted by a bug or by
   * hand, a store restored without it): its try fails, and retries if it may, instead of waiting
   * for ever. The trigger is always stored before its TI defers and deleted only after the TI
   * moved on, so a live deferral is never taken for one.
   */
  const endOrphanedDeferrals = async (deferred: TaskInstance[]) => {
    const ids = deferred.flatMap((ti) => (typeof ti.triggerId === 'string' ? [ti.triggerId] : []));
    if (ids.length === 0) return;
    const stored = new Set((await store.getTriggers(ids)).map((trigger) => trigger.triggerId));
    for (const ti of deferred) {
      if (typeof ti.triggerId !== 'string' || stored.has(ti.triggerId)) continue;
      log.error('A deferred task instance waits on a trigger that is gone; failing its try', {
        ti: formatTaskInstanceKey(ti),
        tryNumber: ti.tryNumber,
        triggerId: ti.triggerId,
      });
      await endDeferral(
        ti,
        `The trigger this try waited on (${ti.triggerId}) is gone: the deferral cannot end`,
        'trigger_failure',
      );
    }
  };
  const overdue: TaskInstance[] = [];
  const waiting: TaskInstance[] = [];
  for (const ti of taskInstances) {
    const orphaned = ti.state === 'running' && (orphans?.isOrphanedRunning(ti) ?? false);
    if (ti.state === 'running' && (orphaned || stale(ti.heartbeatAt, settings.heartbeatTimeoutMs))) {
      log.warn('Task instance stopped heartbeating; treating it as a zombie', {
        ti: formatTaskInstanceKey(ti),
        tryNumber: ti.tryNumber,
      });
      deps.metrics.increment('scheduler.zombies_killed');
      await endTry(
        ti,
        'running',
        orphaned
          ? 'The worker running this try stopped with the previous process (zombie task)'
          : `Heartbeat stopped for more than ${settings.heartbeatTimeoutMs} ms (zombie task)`,
        'heartbeat_timeout',
      );
    } else if (ti.state === 'deferred' && due(ti.triggerTimeoutAt)) {
      await timeOutDeferral(ti);
    } else if (ti.state === 'deferred') {
      waiting.push(ti);
    } else if (
      ti.state === 'queued' &&
      ((orphans?.isOrphanedQueued(ti) ?? false) || stale(ti.queuedAt, settings.queuedTimeoutMs))
    ) {
      overdue.push(ti);
    }
  }
  await endOrphanedDeferrals(waiting);
  const resend: TaskInstance[] = [];
  for (const ti of overdue) {
    const sends = ti.queuedSends ?? 1;
    if (sends >= settings.maxQueuedSends) {
      log.error('No worker started this try after every workload sent; failing the try', {
        ti: formatTaskInstanceKey(ti),
        tryNumber: ti.tryNumber,
        sends,
      });
      deps.metrics.increment('scheduler.workloads_never_started');
      await endTry(
        ti,
        'queued',
        `No worker started this try after ${sends} workloads were sent, each waiting ${settings.queuedTimeoutMs} ms (UPDRAFT_MAX_QUEUED_SENDS, UPDRAFT_QUEUED_TIMEOUT_MS); see the workers' logs and the task queues' dead-letter queues`,
        'queued_timeout',
      );
      continue;
    }
    const requeued = await ignoreConflict(
      store.transitionTaskInstance(
        ti,
        { state: 'queued', tryNumber: ti.tryNumber },
        { queuedAt: new Date(nowMs).toISOString(), queuedSends: sends + 1 },
      ),
    );
    if (requeued) {
      resend.push(requeued);
      updated.set(ti, requeued);
    }
  }
  if (resend.length > 0) {
    log.info('Sending again workloads of task instances queued too long', { count: resend.length });
  }
  return {
    taskInstances: updated.size === 0 ? taskInstances : taskInstances.map((ti) => updated.get(ti) ?? ti),
    resend,
  };
}

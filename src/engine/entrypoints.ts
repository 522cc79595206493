import { schedulingRequestSchema } from '#contracts/messages.ts';
import { mapConcurrently } from '#core/concurrency.ts';
import type { DagRunKey, TaskInstanceKey } from '#core/models.ts';
import { OCCUPYING_TI_STATES } from '#core/states.ts';
import type { ReceivedMessage } from '#queue/port.ts';
import { ConditionFailedError, InvalidCursorError } from '#store/errors.ts';
import type { DagRecord } from '#store/port.ts';
import { type EngineDeps, keyOfHolder, newPassContext, scheduleRun } from './scheduler.ts';
import { createDueRuns } from './schedules.ts';
import { requestScheduling } from './scheduling-requests.ts';
import { fence, isReservationInProgress, poolRef, waitingToNudge } from './slots.ts';

/** Passes of one batch in flight at once: overlaps store round trips without flooding the store. */
const PASS_CONCURRENCY = 4;

/** Holders one tick checks per pool at most; the rest are checked by later ticks. */
const AUDITS_PER_POOL = 25;

/**
 * The old holders one tick checks: a window of AUDITS_PER_POOL over them in age order, placed by
 * a hash of the tick period, so holders that stay live (long tasks) never hide the ones behind
 * them, whichever periods the ticks come in (a tick may skip some while the last one still runs).
 * No tick remembers the last window: the period's number places it.
 */
export function auditWindow<T extends { id: string; at: string }>(old: readonly T[], period: number): T[] {
  const ordered = [...old].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.id < b.id ? -1 : 1));
  if (ordered.length <= AUDITS_PER_POOL) return ordered;
  const start = mix32(period) % ordered.length;
  return [...ordered.slice(start), ...ordered.slice(0, start)].slice(0, AUDITS_PER_POOL);
}

/** A 32-bit integer hash (the finalizer of MurmurHash3): neighbouring periods land far apart. */
function mix32(value: number): number {
  let h = value >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * A batch of scheduling requests (an SQS batch on AWS, a receive in standalone), handled by a
 * fresh engine instance: each distinct run gets one pass. Returns the receipts not to delete:
 * requests whose pass failed (redelivered, and dead-lettered after the queue's receive limit)
 * and malformed ones (dead-lettered the same way, never dropped silently).
 */
export async function handleSchedulingMessages(
  deps: EngineDeps,
  messages: readonly ReceivedMessage[],
): Promise<{ retry: string[] }> {
  const retry: string[] = [];
  const runs = new Map<string, { run: DagRunKey; changed: TaskInstanceKey[]; receipts: string[] }>();
  for (const message of messages) {
    const parsed = parseRequest(message.body);
    if (!parsed) {
      deps.metrics.increment('scheduler.requests_malformed');
      deps.log.error('Malformed scheduling request; it goes to the dead-letter queue', {
        messageId: message.messageId,
        body: message.body.slice(0, 500),
      });
      retry.push(message.receiptHandle);
      continue;
    }
    const id = `${parsed.run.dagId}\u0000${parsed.run.runId}`;
    const entry = runs.get(id) ?? { run: parsed.run, changed: [], receipts: [] };
    entry.changed.push(...parsed.changed);
    entry.receipts.push(message.receiptHandle);
    runs.set(id, entry);
  }
  const context = newPassContext(deps);
  // Passes of different runs are independent (each is correct beside any number of others).
  await mapConcurrently([...runs.values()], PASS_CONCURRENCY, async ({ run, changed, receipts }) => {
    try {
      await scheduleRun(deps, run, context, { changed });
    } catch (error) {
      deps.log.error('Scheduling the run failed; the request is delivered again', { ...run, error });
      retry.push(...receipts);
    }
  });
  return { retry };
}

function parseRequest(body: string): { run: DagRunKey; changed: TaskInstanceKey[] } | undefined {
  try {
    const parsed = schedulingRequestSchema.safeParse(JSON.parse(body));
    if (!parsed.success) return undefined;
    const run = { dagId: parsed.data.dag_id, runId: parsed.data.run_id };
    const changed = (parsed.data.task_instances ?? []).map((ti) => ({
      ...run,
      taskId: ti.task_id,
      mapIndex: ti.map_index,
    }));
    return { run, changed };
  } catch {
    return undefined;
  }
}

/**
 * The periodic pass, correct in a fresh instance beside others: creates due scheduled runs, then
 * reconciles the next `maxRunsPerPass` active runs after the cursor kept in the store (every active
 * run, paused DAGs' included, is visited within ⌈active / maxRunsPerPass⌉ ticks), then checks the
 * pools: stale holders left by passes that stopped half way are released and waiting runs whose
 * pool has room are asked for. `wrapped` tells that this tick reached the last active run; `runs`
 * counts the active runs of this tick's page by state (for the gauges of a full cycle).
 */
export async function runSchedulerTick(
  deps: EngineDeps,
): Promise<{ wrapped: boolean; runs: { queued: number; running: number } }> {
  // First, so a tick that fails later still feeds the triggerer's scaling.
  await publishTriggersWaiting(deps);
  const context = newPassContext(deps);
  const records: DagRecord[] = [];
  let dagCursor: string | undefined;
  do {
    const page = await deps.store.listDags({ limit: 100, cursor: dagCursor });
    records.push(...page.items);
    dagCursor = page.nextCursor;
  } while (dagCursor);
  for (const record of records) context.dagRecords.set(record.dagId, Promise.resolve(record));
  await createDueRuns(deps, records);

  const { cursor, version } = await deps.store.getReconcileCursor();
  const page = await listActiveFrom(deps, cursor);
  await deps.store.putReconcileCursor(page.nextCursor, version);
  for (const key of page.items) {
    try {
      await scheduleRun(deps, key, context, { reconcile: true });
    } catch (error) {
      deps.log.error('Reconciling the run failed; a later tick tries again', { ...key, error });
    }
  }
  await auditPools(deps);
  if (deps.callbacks) {
    try {
      await deps.callbacks.sweep();
    } catch (error) {
      deps.log.error('Sweeping callbacks failed; the next tick tries again', { error });
    }
  }
  const queued = page.items.filter((item) => item.state === 'queued').length;
  return { wrapped: page.nextCursor === undefined, runs: { queued, running: page.items.length - queued } };
}

/** `triggers.waiting` counts up to this many: the gauge says "none", "some" or "at least this many". */
export const TRIGGERS_WAITING_CAP = 1_000;

/**
 * The `triggers.waiting` gauge: triggers stored, claimed or not (each waits for an event), and
 * callbacks a triggerer has to run: claimable now, claimed or running. On AWS the triggerer service scales between 0
 * and 1 task on it; a failed count only skips one value.
 */
async function publishTriggersWaiting(deps: EngineDeps): Promise<void> {
  try {
    const [triggers, callbacks] = await Promise.all([
      deps.store.countTriggers(TRIGGERS_WAITING_CAP),
      deps.store.countTriggererCallbacks(new Date(deps.now()).toISOString(), TRIGGERS_WAITING_CAP),
    ]);
    deps.metrics.gauge('triggers.waiting', Math.min(TRIGGERS_WAITING_CAP, triggers + callbacks));
  } catch (error) {
    deps.log.warn('Counting the waiting triggers failed; the next tick counts again', { error });
  }
}

async function listActiveFrom(deps: EngineDeps, cursor: string | undefined) {
  try {
    return await deps.store.listActiveDagRuns({ limit: deps.settings.maxRunsPerPass, cursor });
  } catch (error) {
    // A cursor the store no longer understands (a table restored, a key format changed): start over.
    if (!(error instanceof InvalidCursorError)) throw error;
    return deps.store.listActiveDagRuns({ limit: deps.settings.maxRunsPerPass });
  }
}

/**
 * For each pool: releases holders older than the grace whose TI no longer holds its slot (oldest
 * first, a bounded number per tick), then asks for the waiting runs the free slots can serve.
 * Holders are normally given back by their run's passes; this catches those orphaned by a pass
 * that stopped between two writes.
 */
async function auditPools(deps: EngineDeps): Promise<void> {
  const nowMs = deps.now();
  for (const [pool, size] of Object.entries(deps.settings.pools)) {
    const ref = poolRef(pool);
    let state = await deps.store.getSlotPool(ref);
    const old = auditWindow(
      Object.values(state.holders).filter(
        (holder) => nowMs - Date.parse(holder.at) > deps.settings.heartbeatTimeoutMs,
      ),
      Math.floor(nowMs / deps.settings.schedulerTickMs),
    );
    const release: { id: string; passId: string; slots: number }[] = [];
    for (const holder of old) {
      const key = keyOfHolder(holder.id);
      const ti = key && (await deps.store.getTaskInstance(key));
      if (ti && ti.tryNumber === holder.tryNumber && OCCUPYING_TI_STATES.has(ti.state)) continue;
      // Reserved, never queued: fence the TI so the reserving pass can no longer queue it.
      if (ti && isReservationInProgress(holder, ti) && !(await fence(deps, ti))) continue;
      release.push({ id: holder.id, passId: holder.passId, slots: holder.slots });
    }
    if (release.length > 0) {
      try {
        state = await deps.store.updateSlotPool(ref, { size, acquire: [], release });
        deps.log.info('Released pool slots held by task instances that no longer run', {
          pool,
          count: release.length,
        });
      } catch (error) {
        if (!(error instanceof ConditionFailedError)) throw error;
        state = await deps.store.getSlotPool(ref);
      }
    }
    await requestScheduling(deps, waitingToNudge(state, size));
  }
}

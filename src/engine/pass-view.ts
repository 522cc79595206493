import { dagGraphOf } from '#core/dag-graph.ts';
import type { DagRun, TaskInstance, TaskInstanceKey } from '#core/models.ts';
import { evaluateRun } from '#core/run-evaluation.ts';
import {
  changedEntries,
  isActiveEntry,
  type RunSummary,
  SUMMARY_ONLY_REVISION,
  summaryOf,
  taskInstanceFromSummary,
} from '#core/run-summary.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import { OCCUPYING_TI_STATES } from '#core/states.ts';
import type { RunHead, Store } from '#store/port.ts';
import { taskHolderId } from './slots.ts';

/** What asked for a pass, which decides the TIs it reads besides those it may act on. */
export interface PassRequest {
  /** TIs that changed (a report named them): read, so their downstream can go on at once. */
  changed?: readonly TaskInstanceKey[];
  /**
   * Read every TI the summary shows active: the tick's pass, which finds zombies, workloads
   * lost in the queue and changes whose scheduling request was lost.
   */
  reconcile?: boolean;
}

/**
 * The run as one pass sees it: one TI per task of the DAG version, read from the store where the
 * pass may act on it or needs its details, taken from the summary elsewhere. A task whose TI was
 * asked for and does not exist is left out (the evaluation reports it missing).
 */
export interface PassView {
  taskInstances: TaskInstance[];
  /** TIs read from the store by this pass, by `taskHolderId`: the only ones it writes. */
  fresh: Map<string, TaskInstance>;
  /** The summary the view started from; the pass writes back what it learned. */
  summary: RunSummary;
}

export interface PassViewOptions {
  nowMs: number;
  /** Ready TIs one pass reads at most (0: none, a paused DAG's pass). */
  maxReady: number;
  /**
   * Free slots in these pools, at least 1: a ready TI is read even when its pool is full, so the
   * pass can put the run on the pool's waiting list. Slots held by `ending` TIs (by
   * `taskHolderId`) count as free: the pass gives them back.
   */
  poolRoom: (pools: readonly string[], ending: ReadonlySet<string>) => Promise<number>;
}

/**
 * Reads what one pass needs: the summary (rebuilt from a full read when missing or made void
 * by a clear), then in one batch the TIs that changed, those the tick reconciles, those whose
 * slot holder the summary cannot explain, and the ready ones the pass could queue (at most
 * `readyLimit`). Ready TIs only a fresher read can reveal (downstream of a changed TI) are read
 * in a second batch.
 */
export async function readPassView(
  store: Store,
  head: RunHead,
  run: DagRun,
  dag: SerializedDag,
  request: PassRequest,
  options: PassViewOptions,
): Promise<PassView> {
  if (head.summary === undefined || head.summary.clearCount !== run.clearCount || clearing(run)) {
    return rebuildView(store, run);
  }
  const { summary } = head;
  const view = new ViewBuilder(dag, run, summary);
  const wanted = new Map<string, TaskInstanceKey>();
  const want = (key: TaskInstanceKey) => {
    if (key.mapIndex === -1 && !view.fresh.has(taskHolderId(key))) wanted.set(taskHolderId(key), key);
  };
  const keyOf = (taskId: string): TaskInstanceKey => ({
    dagId: run.dagId,
    runId: run.runId,
    taskId,
    mapIndex: -1,
  });
  for (const key of request.changed ?? []) {
    if (key.dagId !== run.dagId || key.runId !== run.runId) continue;
    want(key);
    // Likely to become ready now: read with it rather than in a second round trip.
    for (const downstream of dagGraphOf(dag).downstream.get(key.taskId) ?? []) {
      const entry = summary.tasks[downstream];
      if (entry && !isActiveEntry(entry) && entry.state !== 'success') want(keyOf(downstream));
    }
  }
  for (const task of dag.tasks) {
    const entry = summary.tasks[task.taskId];
    if (entry === undefined || (request.reconcile && isActiveEntry(entry))) want(keyOf(task.taskId));
  }
  for (const holder of Object.values(head.taskSlots.holders)) {
    const [, , taskId] = holder.id.split('#');
    if (taskId === undefined) continue;
    const entry = summary.tasks[taskId];
    const live = entry?.tryNumber === holder.tryNumber && OCCUPYING_TI_STATES.has(entry.state);
    if (!live) want(keyOf(taskId));
  }
  // A TI named as changed most likely ended and gives its slot back.
  const ending = new Set([...wanted.keys()]);
  const wantReady = async () => {
    const tis = view.current();
    const live = new Map(tis.map((ti) => [taskHolderId(ti), ti]));
    let held = 0;
    for (const holder of Object.values(head.taskSlots.holders)) {
      const id = holder.id.slice(0, holder.id.lastIndexOf('#'));
      const ti = live.get(id);
      if (!ending.has(id) && ti?.tryNumber === holder.tryNumber && OCCUPYING_TI_STATES.has(ti.state))
        held += 1;
    }
    const limit = Math.min(options.maxReady, dag.maxActiveTasks - held);
    if (limit <= 0) return;
    const ready = evaluateRun(dag, run, tis, options.nowMs).ready.slice(0, limit);
    const unread = ready.filter(({ ti }) => ti.revision === SUMMARY_ONLY_REVISION);
    if (unread.length === 0) return;
    const room = await options.poolRoom([...new Set(unread.map(({ ti }) => ti.pool))], ending);
    for (const { ti } of ready.slice(0, room)) {
      if (ti.revision === SUMMARY_ONLY_REVISION) want(ti);
    }
  };
  await wantReady();
  await view.read(store, [...wanted.values()]);
  wanted.clear();
  ending.clear();
  await wantReady();
  if (wanted.size > 0) await view.read(store, [...wanted.values()]);
  return { taskInstances: view.current(), fresh: view.fresh, summary };
}

class ViewBuilder {
  readonly fresh = new Map<string, TaskInstance>();
  readonly #absent = new Set<string>();
  readonly #dag: SerializedDag;
  readonly #run: DagRun;
  readonly #summary: RunSummary;

  constructor(dag: SerializedDag, run: DagRun, summary: RunSummary) {
    this.#dag = dag;
    this.#run = run;
    this.#summary = summary;
  }

  async read(store: Store, keys: TaskInstanceKey[]): Promise<void> {
    if (keys.length === 0) return;
    for (const ti of await store.getTaskInstances(keys)) this.fresh.set(taskHolderId(ti), ti);
    for (const key of keys) if (!this.fresh.has(taskHolderId(key))) this.#absent.add(taskHolderId(key));
  }

  current(): TaskInstance[] {
    const tis: TaskInstance[] = [];
    for (const task of this.#dag.tasks) {
      const id = taskHolderId({
        dagId: this.#run.dagId,
        runId: this.#run.runId,
        taskId: task.taskId,
        mapIndex: -1,
      });
      const fresh = this.fresh.get(id);
      if (fresh) {
        tis.push(fresh);
        continue;
      }
      const entry = this.#summary.tasks[task.taskId];
      if (this.#absent.has(id) || entry === undefined) continue;
      const ti = taskInstanceFromSummary(this.#dag, this.#run, task.taskId, entry);
      if (ti) tis.push(ti);
    }
    return tis;
  }
}

/** A clear is resetting TIs (or died half way): a summary can be neither trusted nor rebuilt. */
function clearing(run: DagRun): boolean {
  return (run.clearsInProgress ?? 0) > 0;
}

/**
 * No usable summary: read the whole run and, unless a clear is resetting its TIs, write its
 * summary, so later passes need not. The summary is made for the clear count read with the TIs.
 */
async function rebuildView(store: Store, run: DagRun): Promise<PassView> {
  const snapshot = await store.getRunSnapshot(run);
  const taskInstances = snapshot?.taskInstances ?? [];
  const summary = summaryOf(snapshot?.run.clearCount ?? run.clearCount, taskInstances);
  if (snapshot && !clearing(snapshot.run)) await store.putRunSummary(run, summary);
  return {
    taskInstances,
    fresh: new Map(taskInstances.map((ti) => [taskHolderId(ti), ti])),
    summary,
  };
}

/** What the pass learned about TIs, written back to the summary in as few requests as it takes. */
export async function writeBackSummary(
  store: Store,
  run: DagRun,
  summary: RunSummary,
  learned: Iterable<TaskInstance>,
): Promise<void> {
  const entries = changedEntries(summary, learned);
  if (Object.keys(entries).length === 0) return;
  await store.updateRunSummary(run, summary.clearCount, entries);
}

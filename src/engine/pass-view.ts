import { dagGraphOf } from '#core/dag-graph.ts';
import type { DagRun, TaskInstance, TaskInstanceKey } from '#core/models.ts';
import { evaluateRun } from '#core/run-evaluation.ts';
import {
  changedEntries,
  entryOf,
  isActiveEntry,
  type RunSummary,
  SUMMARY_ONLY_REVISION,
  summaryOf,
  taskInstanceFromSummary,
} from '#core/run-summary.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import { isFinishedTaskInstanceState, OCCUPYING_TI_STATES } from '#core/states.ts';
import { ItemTooLargeError } from '#store/errors.ts';
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
  /** The size of each configured pool. */
  poolSizes: Readonly<Record<string, number>>;
  /**
   * Free slots of each of these configured pools. Slots held by `ending` TIs (by `taskHolderId`)
   * count as free: the pass gives them back.
   */
  poolFree: (pools: readonly string[], ending: ReadonlySet<string>) => Promise<Map<string, number>>;
}

/** Ready TIs a pass reads that no pool can ever take (their warning is noted on them), at most. */
const UNRUNNABLE_READS = 10;

/**
 * Reads what one pass needs: the summary (rebuilt from a full read when missing or made void
 * by a clear), then in one batch the TIs that changed, those the tick reconciles, those whose
 * slot holder the summary cannot explain, a bounded number of the changed TIs' downstream, and the
 * ready ones the pass could queue (as `max_active_tasks`, each pool's room and `maxReady` allow).
 * Ready TIs only a fresher read reveals are read in a second batch.
 */
export async function readPassView(
  store: Store,
  head: RunHead,
  run: DagRun,
  dag: SerializedDag,
  request: PassRequest,
  options: PassViewOptions,
): Promise<PassView> {
  if (
    head.summary === undefined ||
    head.summary.clearCount !== run.clearCount ||
    clearing(run, options.nowMs)
  ) {
    return rebuildView(store, run, options.nowMs);
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
  // Likely to become ready now: read with the changed TIs rather than in a second round trip,
  // as many as the run could queue at most.
  let downstreamReads = Math.min(options.maxReady, dag.maxActiveTasks);
  for (const key of request.changed ?? []) {
    if (key.dagId !== run.dagId || key.runId !== run.runId) continue;
    want(key);
    for (const downstream of dagGraphOf(dag).downstream.get(key.taskId) ?? []) {
      const entry = entryOf(summary, downstream);
      if (downstreamReads <= 0 || !entry || isActiveEntry(entry) || isFinishedTaskInstanceState(entry.state))
        continue;
      downstreamReads -= 1;
      want(keyOf(downstream));
    }
  }
  for (const task of dag.tasks) {
    const entry = entryOf(summary, task.taskId);
    if (entry === undefined || (request.reconcile && isActiveEntry(entry))) want(keyOf(task.taskId));
  }
  for (const holder of Object.values(head.taskSlots.holders)) {
    const [, , taskId] = holder.id.split('#');
    if (taskId === undefined) continue;
    const entry = entryOf(summary, taskId);
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
    let limit = Math.min(options.maxReady, dag.maxActiveTasks - held);
    if (limit <= 0) return;
    const ready = evaluateRun(dag, run, tis, options.nowMs).ready;
    const unread = (ti: TaskInstance) => ti.revision === SUMMARY_ONLY_REVISION;
    if (!ready.some(({ ti }) => unread(ti))) return;
    // Walked in admission order with each pool's own room, so a full pool never keeps another
    // pool's TIs unread: one TI of each full pool is read all the same, so the run joins that
    // pool's waiting list; a TI no pool can take is read (a few) for its warning, never counted.
    const free = await options.poolFree([...new Set(ready.map(({ ti }) => ti.pool))], ending);
    const full = new Set<string>();
    let unrunnable = UNRUNNABLE_READS;
    for (const { ti } of ready) {
      if (limit <= 0) break;
      const room = free.get(ti.pool);
      const size = options.poolSizes[ti.pool];
      if (room === undefined || size === undefined || ti.poolSlots > size) {
        if (unread(ti) && unrunnable > 0) {
          unrunnable -= 1;
          want(ti);
        }
      } else if (room >= ti.poolSlots) {
        free.set(ti.pool, room - ti.poolSlots);
        limit -= 1;
        if (unread(ti)) want(ti);
      } else if (!full.has(ti.pool)) {
        full.add(ti.pool);
        if (unread(ti)) want(ti);
      }
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
      const entry = entryOf(this.#summary, task.taskId);
      if (this.#absent.has(id) || entry === undefined) continue;
      const ti = taskInstanceFromSummary(this.#dag, this.#run, task.taskId, entry);
      if (ti) tis.push(ti);
    }
    return tis;
  }
}

/**
 * How long after it began a clear still counts as in progress: a clear resets at most a few
 * thousand TIs, one write each, in well under this; one counted longer has died half way (its
 * Lambda timed out, its process was killed) and resets nothing more.
 */
export const CLEAR_STALE_MS = 15 * 60_000;

/** A clear is resetting TIs: a summary can be neither trusted nor rebuilt. */
function clearing(run: DagRun, nowMs: number): boolean {
  if ((run.clearsInProgress ?? 0) <= 0) return false;
  const begun = run.clearBegunAt === undefined ? Number.NaN : Date.parse(run.clearBegunAt);
  return !(nowMs - begun > CLEAR_STALE_MS);
}

/**
 * No usable summary: read the whole run and, unless a clear is resetting its TIs, write its
 * summary, so later passes need not. The summary is made for the clear count read with the TIs.
 */
async function rebuildView(store: Store, run: DagRun, nowMs: number): Promise<PassView> {
  const snapshot = await store.getRunSnapshot(run);
  const taskInstances = snapshot?.taskInstances ?? [];
  const summary = summaryOf(snapshot?.run.clearCount ?? run.clearCount, taskInstances);
  if (snapshot && !clearing(snapshot.run, nowMs)) {
    // A DAG whose summary does not fit one item runs without one: every pass reads the run whole.
    await store.putRunSummary(run, summary).catch((error: unknown) => {
      if (!(error instanceof ItemTooLargeError)) throw error;
    });
  }
  return {
    taskInstances,
    fresh: new Map(taskInstances.map((ti) => [taskHolderId(ti), ti])),
    summary,
  };
}

/**
 * What the pass learned about TIs, written back to the summary in as few requests as it takes,
 * onto the version it read. `lost`: another pass wrote it first, so this pass decided without
 * what that one learned (both may have missed that the run is done): the caller passes again.
 */
export async function writeBackSummary(
  store: Store,
  run: DagRun,
  summary: RunSummary,
  learned: Iterable<TaskInstance>,
): Promise<'written' | 'unchanged' | 'lost'> {
  const entries = changedEntries(summary, learned);
  if (Object.keys(entries).length === 0) return 'unchanged';
  try {
    return (await store.updateRunSummary(run, summary, entries)) ? 'written' : 'lost';
  } catch (error) {
    // A summary grown past the item limit (retry times, followed branches) keeps its older
    // entries: they lag, which the tick's reads of active TIs and the reads before acting cover.
    if ((error as Error).name !== 'ValidationException') throw error;
    return 'unchanged';
  }
}

import type { StarvingTaskInstance } from '#core/admission.ts';
import {
  type DagRunKey,
  isResuming,
  nextTryNumberOf,
  type TaskInstance,
  type TaskInstanceKey,
} from '#core/models.ts';
import { OCCUPYING_TI_STATES } from '#core/states.ts';
import { ConditionFailedError, ItemTooLargeError } from '#store/errors.ts';
import type {
  SchedulingStateStore,
  SlotHolder,
  SlotPoolRef,
  SlotPoolState,
  TaskInstanceStore,
} from '#store/port.ts';
import { SLOT_POOL_ENTRIES_PER_UPDATE } from '#store/slot-pool-update.ts';
import type { Logger } from './logger.ts';
import type { PoolTurns } from './pool-turns.ts';

/** Conditional writes a pass tries on one slot pool before it leaves the rest to a later pass. */
const UPDATE_ATTEMPTS = 5;
/** Waiting runs kept on a pool item; past this, a starving run relies on the tick to be seen again. */
const MAX_WAITING_RUNS = 1_000;
/** Runs a pass that freed slots asks to be scheduled at once, per pool. */
const MAX_NUDGED_RUNS = 10;

export interface SlotDeps {
  store: SchedulingStateStore & TaskInstanceStore;
  settings: { pools: Record<string, number> };
  log: Logger;
}

/** A task instance's id in the scheduler's maps (ids never contain `#`). */
export function taskHolderId(ti: TaskInstanceKey): string {
  return `${ti.dagId}#${ti.runId}#${ti.taskId}#${ti.mapIndex}`;
}

/**
 * The holder id of one try of a task instance in a slot pool. The try is part of it, so one write
 * can give back an ended try's slot and take the next try's.
 */
export function tryHolderId(ti: TaskInstanceKey, tryNumber: number): string {
  return `${taskHolderId(ti)}#${tryNumber}`;
}

/**
 * The holder id a queueing of `ti` reserves: its next try's, and for a try resuming from a
 * deferral also that deferral's, so the holder of the phase before it (same try) is never taken
 * for a reservation in progress, nor released in its place.
 */
export function nextHolderId(ti: TaskInstance): string {
  const id = tryHolderId(ti, nextTryNumberOf(ti));
  return isResuming(ti) ? `${id}.${ti.deferralSeq ?? 0}` : id;
}

/**
 * Whether `holder` is a reservation another pass is making for `ti`'s next queueing: it has the
 * next holder id and is not the holder the TI was last queued with. A resumed try handed back by
 * its worker is ready again under the holder id it ran with; that holder, of the pass that queued
 * it, belongs to the ended phase and is given back at once.
 */
export function isReservationInProgress(holder: { id: string; passId: string }, ti: TaskInstance): boolean {
  return holder.id === nextHolderId(ti) && holder.passId !== ti.queuedByPass;
}

/** The task instance id of a holder id made by `tryHolderId`. */
export function taskIdOfHolder(holderId: string): string {
  return holderId.slice(0, holderId.lastIndexOf('#'));
}

/** The key of a run in a pool's waiting list. */
export function waitingRunKey(run: DagRunKey): string {
  return `${run.dagId}#${run.runId}`;
}

export function parseWaitingRunKey(key: string): DagRunKey | undefined {
  const [dagId, runId, ...rest] = key.split('#');
  return dagId && runId && rest.length === 0 ? { dagId, runId } : undefined;
}

export function poolRef(pool: string): SlotPoolRef {
  return { kind: 'pool', pool };
}

export function runTasksRef(run: DagRunKey): SlotPoolRef {
  return { kind: 'run_tasks', dagId: run.dagId, runId: run.runId };
}

export interface SlotReview {
  /** Holders of the run's `max_active_tasks` pool to give back: their TI no longer holds a slot. */
  release: SlotHolder[];
  /** TIs whose reservation outlived the grace period without being queued: fenced before release. */
  fence: TaskInstance[];
}

/**
 * Which of a run's slot holders are stale. A holder is live while its TI is queued or running at
 * the holder's try, or, for `graceMs` after the reservation, while it is a reservation in progress
 * (`isReservationInProgress`: the reserving pass has not written the queue transition yet).
 * Anything else gives its slot back.
 * A reservation older than the grace is released only after its TI is fenced (a write that bumps its
 * revision), so a slow pass can no longer queue the TI against the slot it lost.
 */
export function reviewRunHolders(
  taskSlots: SlotPoolState,
  taskInstances: readonly TaskInstance[],
  nowMs: number,
  graceMs: number,
): SlotReview {
  const byId = new Map(taskInstances.map((ti) => [taskHolderId(ti), ti]));
  const review: SlotReview = { release: [], fence: [] };
  for (const holder of Object.values(taskSlots.holders)) {
    const ti = byId.get(taskIdOfHolder(holder.id));
    if (!ti) {
      review.release.push(holder);
    } else if (ti.tryNumber === holder.tryNumber && OCCUPYING_TI_STATES.has(ti.state)) {
      // Live: the TI holds its slot.
    } else if (isReservationInProgress(holder, ti) && isQueueable(ti)) {
      if (nowMs - Date.parse(holder.at) > graceMs) {
        review.fence.push(ti);
        review.release.push(holder);
      }
    } else {
      review.release.push(holder);
    }
  }
  return review;
}

function isQueueable(ti: TaskInstance): boolean {
  return ti.state === 'none' || ti.state === 'scheduled' || ti.state === 'up_for_retry';
}

export interface ReservationInput {
  run: DagRunKey;
  maxActiveTasks: number;
  passId: string;
  nowMs: number;
  /** Ready TIs in admission order (highest priority first), none of them holding a reservation. */
  candidates: readonly TaskInstance[];
  /** The run's `max_active_tasks` pool as the snapshot read it. */
  taskSlots: SlotPoolState;
  /** Stale holders of the run to give back in the same writes. */
  release: readonly SlotHolder[];
  maxToAdmit: number;
  /** How long a reservation may wait for its queue write before it counts as abandoned. */
  graceMs: number;
  /** Pool states this pass read already: the first attempt in each pool starts from them. */
  poolStates?: ReadonlyMap<string, SlotPoolState>;
  /**
   * The batch's turns on each pool, and for each state of `poolStates` the turn it is as of: in
   * its turn a pass starts from that state only if no other turn came between (see PoolTurns).
   */
  turns?: PoolTurns;
  poolAsOf?: ReadonlyMap<string, number>;
  /**
   * When (`performance.now()`) the pass's read of the run's head came back: a turn may start from
   * a state an earlier turn left only if it was read or written after that (see PoolTurns).
   */
  headReadAt?: number;
  /** Pools whose waiting list keeps the run although this round starves nothing there. */
  keepWaitingIn?: ReadonlySet<string>;
  /** Filled with the pool states the writes of this reservation returned (for the next round). */
  observed?: ObservedStates;
  /** A round of stale holders only: it leaves the run's waiting entries as they are. */
  releaseOnly?: boolean;
}

interface ObservedStates {
  /** undefined: the pool changed after the last state seen (read it again). */
  pools: Map<string, SlotPoolState | undefined>;
  /** The turn each of `pools` is as of. */
  asOf: Map<string, number>;
  taskSlots?: SlotPoolState;
}

export interface ReservationResult {
  /** TIs holding a run slot and a pool slot for their next try, in admission order. */
  admitted: TaskInstance[];
  starving: StarvingTaskInstance[];
  /** Runs waiting on a pool that this pass freed slots in: they should be scheduled now. */
  nudge: DagRunKey[];
  /** Some TIs may be admitted as they are but were not in this pass: the run needs another one. */
  incomplete?: boolean;
}

/**
 * Reserves slots for a run's ready TIs: first in each named pool they use, then in the run's own
 * `max_active_tasks` pool. Each is one conditional write per pool that gives back the run's stale
 * holders and takes the new ones, so concurrent passes of any runs, in any number of fresh
 * instances, never put more into a pool than it holds. A write that loses a race is recomputed
 * from a fresh read, a few times; what still does not fit starves until a later pass. More
 * candidates or stale holders than one write may name (DynamoDB's 4 KB expression limit) are
 * reserved in rounds (see ROUND_SIZE), each round such writes of its own.
 */
export async function reserveTaskSlots(deps: SlotDeps, input: ReservationInput): Promise<ReservationResult> {
  if (input.candidates.length <= ROUND_SIZE && input.release.length <= ROUND_SIZE) {
    return reserveRound(deps, input);
  }
  // More than one update's worth. The stale holders go first, in rounds of their own, so the
  // candidates find the room they leave; then the candidates. Each round starts from the states
  // the previous one's writes returned, so rounds add writes to a pass but no reads (unless, in a
  // batch, other passes' turns on a pool come between two rounds: see PoolTurns).
  const result: ReservationResult = { admitted: [], starving: [], nudge: [] };
  const addNudge = (runs: readonly DagRunKey[]) => {
    for (const run of runs) {
      if (!result.nudge.some((seen) => seen.dagId === run.dagId && seen.runId === run.runId))
        result.nudge.push(run);
    }
  };
  let taskSlots = input.taskSlots;
  const poolStates = new Map(input.poolStates ?? []);
  const poolAsOf = new Map(input.poolAsOf ?? []);
  // The next round starts from the states the last one's writes returned; read only if unknown.
  const nextRound = async (observed: ObservedStates) => {
    for (const [pool, state] of observed.pools) {
      if (state) poolStates.set(pool, state);
      else poolStates.delete(pool);
      const asOf = observed.asOf.get(pool);
      if (state && asOf !== undefined) poolAsOf.set(pool, asOf);
      else poolAsOf.delete(pool);
    }
    taskSlots = observed.taskSlots ?? (await deps.store.getSlotPool(runTasksRef(input.run)));
  };
  for (let start = 0; start < input.release.length; start += RELEASE_ROUND_SIZE) {
    const observed: ObservedStates = { pools: new Map(), asOf: new Map() };
    const round = await reserveRound(deps, {
      ...input,
      candidates: [],
      release: input.release.slice(start, start + RELEASE_ROUND_SIZE),
      taskSlots,
      maxToAdmit: 0,
      poolStates,
      poolAsOf,
      observed,
      releaseOnly: true,
    });
    addNudge(round.nudge);
    await nextRound(observed);
  }
  let maxToAdmit = input.maxToAdmit;
  let left = input.candidates;
  // Pools a round starved in: later rounds keep the run on their waiting lists.
  const waitingIn = new Set<string>();
  for (let start = 0; start < left.length; start += CANDIDATE_ROUND_SIZE) {
    const observed: ObservedStates = { pools: new Map(), asOf: new Map() };
    let round: ReservationResult;
    try {
      round = await reserveRound(deps, {
        ...input,
        candidates: left.slice(start, start + CANDIDATE_ROUND_SIZE),
        release: [],
        taskSlots,
        maxToAdmit,
        keepWaitingIn: waitingIn,
        poolStates,
        poolAsOf,
        observed,
      });
    } catch (error) {
      if (result.admitted.length === 0) throw error;
      // Earlier rounds hold reservations: queue those, and leave the rest to another pass.
      deps.log.warn('A reservation round failed; the admitted task instances are queued, the rest wait', {
        dagId: input.run.dagId,
        runId: input.run.runId,
        error: error instanceof Error ? error.message : String(error),
      });
      for (const ti of left.slice(start)) result.starving.push({ ti, reason: 'pass_limit' });
      result.incomplete = true;
      break;
    }
    if (round.incomplete) result.incomplete = true;
    result.admitted.push(...round.admitted);
    result.starving.push(...round.starving);
    addNudge(round.nudge);
    for (const entry of round.starving) if (entry.reason === 'pool_full') waitingIn.add(entry.ti.pool);
    maxToAdmit -= round.admitted.length;
    const full = round.starving.find(
      (entry) => entry.reason === 'max_active_tasks' || entry.reason === 'pass_limit',
    );
    if (full && left.length > start + CANDIDATE_ROUND_SIZE) {
      // The run (or the pass) has no room left: the rest starve for the same reason, unread.
      for (const ti of left.slice(start + CANDIDATE_ROUND_SIZE))
        result.starving.push({ ti, reason: full.reason });
      left = left.slice(0, start + CANDIDATE_ROUND_SIZE);
    }
    await nextRound(observed);
  }
  return result;
}

/**
 * How much one reservation takes in one round, so that each pool update names at most the
 * store's `SLOT_POOL_ENTRIES_PER_UPDATE` holders and waiting entries. A single round takes up to
 * ROUND_SIZE candidates and as many stale holders (each candidate may also give back its holder
 * of an ended try, and the run's waiting entry comes on top); beyond that, rounds of stale
 * holders alone come first, then rounds of candidates alone, each of which may also give back
 * one ended-try holder per candidate (beyond that, see reserveInPool).
 */
const ROUND_SIZE = Math.floor((SLOT_POOL_ENTRIES_PER_UPDATE - 1) / 3);
const RELEASE_ROUND_SIZE = SLOT_POOL_ENTRIES_PER_UPDATE - 1;
const CANDIDATE_ROUND_SIZE = Math.floor((SLOT_POOL_ENTRIES_PER_UPDATE - 1) / 2);

async function reserveRound(deps: SlotDeps, input: ReservationInput): Promise<ReservationResult> {
  const starving: StarvingTaskInstance[] = [];
  const runReleased = input.release.filter((holder) => input.taskSlots.holders[holder.id]);
  const runFree = input.maxActiveTasks - (input.taskSlots.used - runReleased.length);
  const room = Math.max(0, Math.min(runFree, input.maxToAdmit));
  const wanted = input.candidates.slice(0, room);
  for (const ti of input.candidates.slice(room)) {
    starving.push({ ti, reason: runFree <= input.maxToAdmit ? 'max_active_tasks' : 'pass_limit' });
  }

  const pools = new Set([
    ...wanted.map((ti) => ti.pool),
    ...runReleased.flatMap((h) => (h.pool ? [h.pool] : [])),
  ]);
  const granted = new Set<TaskInstance>();
  const nudge: DagRunKey[] = [];
  let incomplete = false;
  // The pool slots taken in this round, given back if the round cannot finish: otherwise they
  // would wait for the grace of an abandoned reservation.
  const giveBack = async (tis: Iterable<TaskInstance>) => {
    await releaseOwned(
      deps,
      [...tis].map((ti) => ({ ref: poolRef(ti.pool), id: nextHolderId(ti), passId: input.passId })),
      input.turns,
    ).catch(() => undefined);
  };
  for (const pool of [...pools].sort()) {
    let result: PoolReservation;
    try {
      result = await reserveInPool(
        deps,
        input,
        pool,
        wanted.filter((ti) => ti.pool === pool),
        runReleased,
      );
    } catch (error) {
      await giveBack(granted);
      throw error;
    }
    for (const ti of result.granted) granted.add(ti);
    starving.push(...result.starving);
    nudge.push(...result.nudge);
    if (result.incomplete) incomplete = true;
  }

  const inOrder = wanted.filter((ti) => granted.has(ti));
  let admitted: TaskInstance[] = [];
  try {
    admitted = await reserveInRun(deps, input, inOrder, runReleased);
  } catch (error) {
    await giveBack(inOrder);
    throw error;
  }
  const dropped = inOrder.filter((ti) => !admitted.includes(ti));
  for (const ti of dropped) {
    starving.push({ ti, reason: 'max_active_tasks' });
    input.observed?.pools.set(ti.pool, undefined);
  }
  await releaseOwned(
    deps,
    dropped.map((ti) => ({
      ref: poolRef(ti.pool),
      id: nextHolderId(ti),
      passId: input.passId,
    })),
    input.turns,
  );
  return { admitted, starving, nudge, ...(incomplete ? { incomplete } : {}) };
}

interface PoolReservation {
  granted: TaskInstance[];
  starving: StarvingTaskInstance[];
  nudge: DagRunKey[];
  incomplete?: boolean;
}

/** One pool's part of a round, in the batch's turn on that pool when there are turns. */
function reserveInPool(
  deps: SlotDeps,
  input: ReservationInput,
  pool: string,
  wanted: readonly TaskInstance[],
  runReleased: readonly SlotHolder[],
): Promise<PoolReservation> {
  const { turns } = input;
  if (!turns) return reserveInPoolNow(deps, input, pool, wanted, runReleased, undefined);
  return turns.take(pool, (turn) => reserveInPoolNow(deps, input, pool, wanted, runReleased, turn));
}

async function reserveInPoolNow(
  deps: SlotDeps,
  input: ReservationInput,
  pool: string,
  wanted: readonly TaskInstance[],
  runReleased: readonly SlotHolder[],
  turn: number | undefined,
): Promise<PoolReservation> {
  const size = deps.settings.pools[pool] ?? 0;
  const ref = poolRef(pool);
  const self = waitingRunKey(input.run);
  const fenced = new Set<TaskInstance>();
  let itemFull = false;
  for (let attempt = 1; attempt <= UPDATE_ATTEMPTS; attempt += 1) {
    // A state read earlier in the pass may be stale: the write is conditional, and a lost race
    // reads again. In a turn, it is known stale when another turn came since (see PoolTurns).
    const current = turn === undefined || input.poolAsOf?.get(pool) === turn - 1;
    const known = attempt === 1 && current ? input.poolStates?.get(pool) : undefined;
    const handed =
      attempt === 1 && known === undefined && turn !== undefined && input.headReadAt !== undefined
        ? input.turns?.leftBefore(pool, turn, input.headReadAt)
        : undefined;
    // When the request behind `state` was sent; a state the pass read itself is after its head.
    const sentAt = handed?.sentAt ?? (known ? (input.headReadAt ?? 0) : performance.now());
    const state = known ?? handed?.state ?? (await deps.store.getSlotPool(ref));
    if (turn !== undefined) input.observed?.asOf.set(pool, turn);
    // Give back this pool's slots of the run's stale holders, each only while the same pass's reservation.
    const release = runReleased
      .filter((h) => h.pool === pool && state.holders[h.id]?.passId === h.passId)
      .map((h) => ({ id: h.id, passId: h.passId, slots: state.holders[h.id]?.slots ?? 0 }));
    const granted: TaskInstance[] = [];
    const starving: StarvingTaskInstance[] = [];
    const heldBack = new Set<TaskInstance>();
    const noRoom = new Set<TaskInstance>();
    for (const ti of wanted) {
      const prefix = `${taskHolderId(ti)}#`;
      for (const held of Object.values(state.holders)) {
        if (!held.id.startsWith(prefix) || release.some((h) => h.id === held.id)) continue;
        if (release.length + wanted.length + 1 >= SLOT_POOL_ENTRIES_PER_UPDATE) {
          // No room in this update to give it back: the TI starves until a later pass.
          heldBack.add(ti);
          noRoom.add(ti);
          continue;
        }
        if (isReservationInProgress(held, ti) || held.tryNumber > ti.tryNumber) {
          // A holder for the TI's next try (or, resuming from a deferral, for that resumption) is
          // another pass's, about to queue the TI: leave the TI to it.
          // Past the grace that pass has stopped: fence the TI (its late queue write then fails)
          // and give the holder back; the TI is reserved again by the next pass.
          heldBack.add(ti);
          if (input.nowMs - Date.parse(held.at) <= input.graceMs) continue;
          if (!fenced.has(ti) && !(await fence(deps, ti))) continue;
          fenced.add(ti);
        }
        // A holder for a try that already ended, or an abandoned one: give it back.
        release.push({ id: held.id, passId: held.passId, slots: held.slots });
      }
    }
    const releasedSlots = release.reduce((sum, h) => sum + h.slots, 0);
    let free = size - (state.used - releasedSlots);
    for (const ti of wanted) {
      // Its holder for this very try is given back in this write: reserved again by the next pass.
      if (noRoom.has(ti)) {
        starving.push({ ti, reason: 'pass_limit' });
        continue;
      }
      if (heldBack.has(ti) || release.some((h) => h.id === nextHolderId(ti))) continue;
      if (ti.poolSlots <= free && !itemFull) {
        granted.push(ti);
        free -= ti.poolSlots;
      } else {
        starving.push({ ti, reason: 'pool_full' });
      }
    }
    const isWaiting = self in state.waiting;
    // An item at its size limit takes no waiting entry either: the tick finds the run again.
    const pooled = starving.filter((entry) => entry.reason === 'pool_full');
    const wantsToWait = input.releaseOnly
      ? isWaiting
      : (pooled.length > 0 || input.keepWaitingIn?.has(pool) === true) &&
        !itemFull &&
        Object.keys(state.waiting).length < MAX_WAITING_RUNS;
    const change = {
      size,
      acquire: granted.map(
        (ti): SlotHolder => ({
          id: nextHolderId(ti),
          slots: ti.poolSlots,
          tryNumber: nextTryNumberOf(ti),
          passId: input.passId,
          at: new Date(input.nowMs).toISOString(),
        }),
      ),
      release,
      ...(wantsToWait && !isWaiting ? { setWaiting: { [self]: new Date(input.nowMs).toISOString() } } : {}),
      ...(!wantsToWait && isWaiting ? { removeWaiting: [self] } : {}),
    };
    if (change.acquire.length === 0 && release.length === 0 && !change.setWaiting && !change.removeWaiting) {
      input.observed?.pools.set(pool, state);
      if (turn !== undefined) input.turns?.leave(pool, turn, { state, sentAt });
      return { granted, starving, nudge: [], incomplete: noRoom.size > 0 };
    }
    try {
      const writtenAt = performance.now();
      const after = await deps.store.updateSlotPool(ref, change);
      input.observed?.pools.set(pool, after);
      if (turn !== undefined) input.turns?.leave(pool, turn, { state: after, sentAt: writtenAt });
      const nudge = release.length > 0 ? waitingToNudge(after, size, self) : [];
      return { granted, starving, nudge, incomplete: noRoom.size > 0 };
    } catch (error) {
      if (error instanceof ItemTooLargeError && change.acquire.length > 0 && !itemFull) {
        // The pool's item holds as many holders as one item can: full, whatever its size says.
        // The next attempt only gives back what this one would have.
        deps.log.warn('Pool holds as many task instances as its store item can; the rest wait', {
          pool,
          error: error.message,
        });
        itemFull = true;
        continue;
      }
      if (!(error instanceof ConditionFailedError)) throw error;
    }
  }
  deps.log.warn('Pool stayed contended for a whole pass; its ready task instances wait for the next one', {
    pool,
    dagId: input.run.dagId,
    runId: input.run.runId,
  });
  return { granted: [], starving: wanted.map((ti) => ({ ti, reason: 'pool_full' as const })), nudge: [] };
}

/** The oldest waiting runs other than `self`, as many as the pool now has free slots (bounded). */
export function waitingToNudge(state: SlotPoolState, size: number, self?: string): DagRunKey[] {
  const free = size - state.used;
  if (free <= 0) return [];
  return Object.entries(state.waiting)
    .filter(([key]) => key !== self)
    .sort(([ka, a], [kb, b]) => (a < b ? -1 : a > b ? 1 : ka < kb ? -1 : 1))
    .slice(0, Math.min(free, MAX_NUDGED_RUNS))
    .flatMap(([key]) => parseWaitingRunKey(key) ?? []);
}

/** Takes run slots for TIs that hold their pool slots; returns those that got one, in order. */
async function reserveInRun(
  deps: SlotDeps,
  input: ReservationInput,
  inOrder: readonly TaskInstance[],
  runReleased: readonly SlotHolder[],
): Promise<TaskInstance[]> {
  const ref = runTasksRef(input.run);
  let state = input.taskSlots;
  let itemFull = false;
  for (let attempt = 1; attempt <= UPDATE_ATTEMPTS; attempt += 1) {
    const release = runReleased
      .filter((h) => state.holders[h.id]?.passId === h.passId)
      .map((h) => ({ id: h.id, passId: h.passId, slots: state.holders[h.id]?.slots ?? 1 }));
    const fit = input.maxActiveTasks - (state.used - release.length);
    const take = itemFull
      ? []
      : inOrder.filter((ti) => !state.holders[nextHolderId(ti)]).slice(0, Math.max(0, fit));
    if (take.length === 0 && release.length === 0) {
      if (input.observed) input.observed.taskSlots = state;
      return [];
    }
    try {
      const after = await deps.store.updateSlotPool(ref, {
        size: input.maxActiveTasks,
        acquire: take.map((ti) => ({
          id: nextHolderId(ti),
          slots: 1,
          tryNumber: nextTryNumberOf(ti),
          passId: input.passId,
          at: new Date(input.nowMs).toISOString(),
          pool: ti.pool,
        })),
        release,
      });
      if (input.observed) input.observed.taskSlots = after;
      return take;
    } catch (error) {
      if (error instanceof ItemTooLargeError && take.length > 0 && !itemFull) {
        // Full whatever max_active_tasks says: the next attempt only gives back its releases.
        deps.log.warn('The run holds as many task slots as its store item can; the rest wait', {
          dagId: input.run.dagId,
          runId: input.run.runId,
          error: error.message,
        });
        itemFull = true;
        continue;
      }
      if (!(error instanceof ConditionFailedError)) throw error;
      state = await deps.store.getSlotPool(ref);
    }
  }
  return [];
}

/** Bumps a TI's revision if it is still as read, so no pass can queue it with that read any more. */
export async function fence(deps: { store: TaskInstanceStore }, ti: TaskInstance): Promise<boolean> {
  try {
    await deps.store.transitionTaskInstance(
      ti,
      { state: ti.state, tryNumber: ti.tryNumber, revision: ti.revision },
      {},
    );
    return true;
  } catch (error) {
    if (error instanceof ConditionFailedError) return false;
    throw error;
  }
}

/**
 * Gives back reservations this pass made and could not use (a lost race, a TI that moved on).
 * Each is released only while it is still this pass's, so a reservation someone else made for the
 * same TI since is never taken away. Best effort: what is left is found stale by a later pass.
 */
export async function releaseOwned(
  deps: SlotDeps,
  holders: readonly { ref: SlotPoolRef; id: string; passId: string }[],
  /** The batch's turns: a pool given back to outside them no longer matches the state a turn left. */
  turns?: PoolTurns,
): Promise<void> {
  const byRef = new Map<string, { ref: SlotPoolRef; items: { id: string; passId: string }[] }>();
  for (const holder of holders) {
    const key = JSON.stringify(holder.ref);
    const entry = byRef.get(key) ?? { ref: holder.ref, items: [] };
    entry.items.push({ id: holder.id, passId: holder.passId });
    byRef.set(key, entry);
  }
  const chunks = [...byRef.values()].flatMap(({ ref, items }) =>
    Array.from({ length: Math.ceil(items.length / SLOT_POOL_ENTRIES_PER_UPDATE) }, (_, index) => ({
      ref,
      items: items.slice(index * SLOT_POOL_ENTRIES_PER_UPDATE, (index + 1) * SLOT_POOL_ENTRIES_PER_UPDATE),
    })),
  );
  for (const { ref, items } of chunks) {
    if (ref.kind === 'pool') turns?.forget(ref.pool);
    try {
      await releaseChunk(deps, ref, items);
    } finally {
      // Also what was read or left while the write was on its way is stale now.
      if (ref.kind === 'pool') turns?.forget(ref.pool);
    }
  }
}

async function releaseChunk(
  deps: SlotDeps,
  ref: SlotPoolRef,
  items: readonly { id: string; passId: string }[],
): Promise<void> {
  for (let attempt = 1; attempt <= UPDATE_ATTEMPTS; attempt += 1) {
    const state = await deps.store.getSlotPool(ref);
    const release = items.flatMap((h) => {
      const held = state.holders[h.id];
      return held?.passId === h.passId ? [{ ...h, slots: held.slots }] : [];
    });
    if (release.length === 0) return;
    try {
      await deps.store.updateSlotPool(ref, { size: 0, acquire: [], release });
      return;
    } catch (error) {
      if (!(error instanceof ConditionFailedError)) throw error;
    }
  }
}

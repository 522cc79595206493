import { eventOfKind } from '#core/callbacks.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import type { CallbackExecutor } from '#worker/callback-pool.ts';
import type { StartedCallback } from '#worker/execution-client.ts';
import type { TaskHooks } from '#worker/executor.ts';
import type { RunnerOutcome } from '#worker/protocol.ts';
import { type Actor, type Kernel, SimFailure } from './kernel.ts';
import type { ExecutorFaults } from './ledger.ts';
import { hashString, type Prng } from './prng.ts';
import type { StoreMirror } from './store-gate.ts';

/**
 * Callbacks in the simulation: what their attempts really did, the executor that runs them (it
 * takes sim time, raises or succeeds as the seed decides, and is a place workers die), and the
 * invariants:
 * - 10a owed means run: every cause the reference owes (a TI's change into failed, up_for_retry
 *   or success at a try, its start of a try, a skip the task reported itself (through the API),
 *   a run's finish at a clear count, a missed deadline, for the events its DAG declares) has
 *   exactly one callback item, and nothing else has one (10b);
 * - 10c one live attempt, one effect: no two attempts of a callback overlap; a callback's effect
 *   happens more than once only after an attempt that had it died before its report;
 * - 10d everything drains: no owed set is left, every callback is final, and every callback that
 *   succeeded had its effect;
 * - 10f deadlines: each decided once, missed (and its callbacks owed, counted in 10a) only from
 *   its time on for a run not finished by then, met only by a finish in time.
 */

export interface CallbackAttempt {
  callbackId: string;
  attempt: number;
  actor: string;
  startAt: number;
  endAt?: number;
  /** The effect happened in this attempt. */
  effect?: boolean;
  /** The worker died after the effect and before the report. */
  diedAfterEffect?: boolean;
  /** The API accepted a report of this callback after this attempt had its effect. */
  reported?: boolean;
}

export class CallbackLedger {
  readonly attempts: CallbackAttempt[] = [];
  readonly #fail: (failure: SimFailure) => void;

  constructor(fail: (failure: SimFailure) => void) {
    this.#fail = fail;
  }

  start(callbackId: string, attempt: number, actor: string, nowMs: number): CallbackAttempt {
    for (const other of this.attempts) {
      if (other.callbackId !== callbackId || other.endAt !== undefined) continue;
      this.#fail(
        new SimFailure(
          '10c-one-attempt',
          `callback ${callbackId} attempt ${attempt} started (by ${actor}) while attempt ${other.attempt} still runs (by ${other.actor})`,
        ),
      );
    }
    const record: CallbackAttempt = { callbackId, attempt, actor, startAt: nowMs };
    this.attempts.push(record);
    return record;
  }

  /**
   * The actor died: every attempt it was running (a triggerer runs many at once) ended with it,
   * and one that had its effect but whose report the API had not yet accepted (killed by another
   * attempt's fault while its report was on its way) died after its effect.
   */
  actorDied(actor: string, nowMs: number): void {
    for (const record of this.attempts) {
      if (record.actor !== actor) continue;
      if (record.endAt === undefined) record.endAt = nowMs;
      if (record.effect && !record.reported) record.diedAfterEffect = true;
    }
  }

  /** A report of the callback left the router accepted (200): its attempt that had its effect is reported. */
  reportAccepted(callbackId: string): void {
    for (const record of this.attempts)
      if (record.callbackId === callbackId && record.effect) record.reported = true;
  }
}

export interface SimCallbackExecutorDeps {
  kernel: Kernel;
  ledger: CallbackLedger;
  prng: Prng;
  seed: number;
  faults(): ExecutorFaults;
  /** Told when an attempt's fault killed the actor running it (a worker, or a triggerer). */
  onKilled?: (actor: Actor) => void;
}

/** The sim's CallbackExecutor: each (callback, attempt) raises or succeeds as a hash of the seed decides. */
export class SimCallbackExecutor implements CallbackExecutor {
  readonly #deps: SimCallbackExecutorDeps;

  constructor(deps: SimCallbackExecutorDeps) {
    this.#deps = deps;
  }

  async runCallback(started: StartedCallback, hooks: TaskHooks): Promise<RunnerOutcome> {
    const { kernel, ledger, prng } = this.#deps;
    const actor = kernel.current();
    if (!actor) throw new Error('the sim callback executor runs inside a worker actor');
    const record = ledger.start(started.callback_id, started.attempt, actor.name, kernel.now);
    const decide = hashString(`${this.#deps.seed}:${started.callback_id}:${started.attempt}`);
    // One attempt in four raises; one in twenty outlives its timeout and is stopped.
    const raises = decide % 4 === 0;
    const hangs = decide % 20 === 1;
    const durationMs = hangs ? started.timeout_ms * 3 : 100 + (decide % 1_900);
    const faults = this.#deps.faults();
    const killAt = prng.chance(faults.killMidTask) ? prng.range(0, durationMs) : undefined;
    try {
      // A process killed meanwhile (by another attempt's fault, in the same step) has no effect.
      await kernel.whileAlive(kernel.sleep(killAt ?? durationMs, hooks.signal));
    } catch {
      record.endAt = kernel.now;
      return { kind: 'error', message: `aborted: ${String(hooks.signal.reason)}` };
    }
    if (killAt !== undefined) return this.#die(record, 'killed mid-callback');
    if (raises) {
      record.endAt = kernel.now;
      return { kind: 'error', message: 'the sim chose to raise' };
    }
    record.effect = true;
    if (prng.chance(faults.killBeforeReport)) {
      record.diedAfterEffect = true;
      return this.#die(record, 'killed between the callback effect and the report');
    }
    record.endAt = kernel.now;
    return { kind: 'success' };
  }

  #die(record: CallbackAttempt, why: string): Promise<never> {
    const { kernel } = this.#deps;
    record.endAt = kernel.now;
    const actor = kernel.current();
    if (actor) {
      kernel.kill(actor, why);
      this.#deps.ledger.actorDied(actor.name, kernel.now);
      this.#deps.onKilled?.(actor);
    }
    return new Promise<never>(() => {});
  }
}

const KIND_OF_STATE: Record<string, string> = {
  success: 'task_success',
  failed: 'task_failure',
  up_for_retry: 'task_retry',
  // A start of the try (a resume after a deferral owes the same callback: one item per try).
  running: 'task_execute',
};

/** The callback kind a TI change owes, if any: a skip only when the task reported it (an API call). */
function kindOf(change: { state: string; writer: string | undefined }): string | undefined {
  if (change.state === 'skipped') return change.writer?.startsWith('api#') ? 'task_skipped' : undefined;
  return KIND_OF_STATE[change.state];
}

/** 10a/10b: the callback items are exactly the causes the reference owes. */
export function checkCallbacksOwed(
  mirror: StoreMirror,
  dags: ReadonlyMap<string, SerializedDag>,
): SimFailure | undefined {
  const expected = new Set<string>();
  for (const [ti, changes] of mirror.history) {
    const [dagId, , taskId] = ti.split('/') as [string, string, string];
    const task = dags.get(dagId)?.tasks.find((t) => t.taskId === taskId);
    for (const change of changes) {
      const kind = kindOf(change);
      if (!kind) continue;
      const refs = (task?.callbacks as Record<string, unknown[] | undefined> | undefined)?.[
        eventOfKind(kind as never).event
      ];
      for (let i = 0; i < (refs?.length ?? 0); i++) expected.add(`${ti}|${kind}|${change.tryNumber}|${i}`);
    }
  }
  for (const finish of mirror.runFinishes) {
    const [run, state, clearCount] = finish.split('|') as [string, string, string];
    const kind = state === 'success' ? 'dag_success' : 'dag_failure';
    const refs = (
      dags.get(run.split('/')[0] as string)?.callbacks as Record<string, unknown[] | undefined> | undefined
    )?.[eventOfKind(kind).event];
    for (let i = 0; i < (refs?.length ?? 0); i++) expected.add(`${run}|${kind}|${clearCount}|${i}`);
  }
  // A missed deadline owes its callbacks, at the run's clear count when it was missed.
  for (const deadline of mirror.deadlines.values()) {
    if (deadline.state !== 'missed') continue;
    const dag = dags.get(deadline.run.split('/')[0] as string);
    const refs = dag?.deadlines?.[deadline.index]?.callbacks ?? [];
    for (let i = 0; i < refs.length; i++)
      expected.add(`${deadline.run}|deadline_missed|${deadline.clearCount ?? 0}|${deadline.index}:${i}`);
  }
  const actual = new Map<string, string>();
  for (const callback of mirror.callbacks.values()) {
    const index =
      callback.deadlineIndex === undefined
        ? `${callback.index}`
        : `${callback.deadlineIndex}:${callback.index}`;
    actual.set(`${callback.owner}|${callback.kind}|${callback.n}|${index}`, callback.callbackId);
  }
  const missing = [...expected].filter((key) => !actual.has(key));
  if (missing.length > 0) {
    return new SimFailure(
      '10a-owed-runs',
      `owed callbacks never became callback items: ${missing.slice(0, 5).join('; ')}`,
    );
  }
  const unowed = [...actual.keys()].filter((key) => !expected.has(key));
  if (unowed.length > 0) {
    return new SimFailure(
      '10b-nothing-unowed',
      `callback items for causes that owe nothing: ${unowed.slice(0, 5).join('; ')}`,
    );
  }
  return undefined;
}

/**
 * 10f deadlines: each decided once, missed only from its time on and only for a run not finished
 * by then, met only by a finish before it (checked as the writes pass, see StoreMirror); and at
 * the end no finished run has a deadline left undecided.
 */
export function checkDeadlines(mirror: StoreMirror): SimFailure | undefined {
  if (mirror.deadlineViolations.length > 0) {
    return new SimFailure('10f-deadlines', mirror.deadlineViolations.slice(0, 5).join('; '));
  }
  const undecided = [...mirror.deadlines.entries()].filter(([, deadline]) => {
    const state = mirror.runs.get(deadline.run)?.state;
    return deadline.state === 'pending' && (state === 'success' || state === 'failed');
  });
  if (undecided.length > 0) {
    return new SimFailure(
      '10f-deadlines',
      `finished runs with deadlines never decided: ${undecided
        .slice(0, 5)
        .map(([key]) => key)
        .join(', ')}`,
    );
  }
  return undefined;
}

/** 10c/10d at the end: effects once (but for a worker that died after one), and everything drained. */
export function checkCallbacksDrained(mirror: StoreMirror, ledger: CallbackLedger): SimFailure | undefined {
  if (mirror.owed.size > 0) {
    return new SimFailure(
      '10d-drained',
      `owed callbacks left on ${[...mirror.owed.keys()].slice(0, 5).join(', ')}`,
    );
  }
  for (const callback of mirror.callbacks.values()) {
    const attempts = ledger.attempts.filter((a) => a.callbackId === callback.callbackId);
    if (callback.state !== 'success' && callback.state !== 'failed') {
      return new SimFailure(
        '10d-drained',
        `callback ${callback.callbackId} (${callback.kind} of ${callback.owner}) is still ${callback.state}`,
      );
    }
    const started = new Set(attempts.map((a) => a.attempt));
    if (callback.attempt > callback.maxAttempts || [...started].some((n) => n > callback.maxAttempts)) {
      return new SimFailure(
        '10c-attempts',
        `callback ${callback.callbackId} ran attempt ${Math.max(callback.attempt, ...started)} of ${callback.maxAttempts}`,
      );
    }
    const effects = attempts.filter((a) => a.effect).length;
    const lostAfterEffect = attempts.filter((a) => a.diedAfterEffect).length;
    if (callback.state === 'success' && effects === 0) {
      return new SimFailure(
        '10d-drained',
        `callback ${callback.callbackId} succeeded without an attempt having its effect`,
      );
    }
    if (effects > 1 + lostAfterEffect) {
      return new SimFailure(
        '10c-effect-once',
        `callback ${callback.callbackId} had its effect ${effects} times, with only ${lostAfterEffect} attempts lost after theirs`,
      );
    }
  }
  return undefined;
}

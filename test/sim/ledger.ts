import type { TriggerEventOutcome, TriggerEventType } from '#contracts/triggers.ts';
import { triggerIdOf } from '#engine/triggers.ts';
import type { RunnerOutcome } from '#worker/protocol.ts';
import type { SimTaskExecutor } from './engine.ts';
import { type Kernel, SimFailure } from './kernel.ts';
import { deferralOf, type PhasePlan, type TriggerEnd } from './plans.ts';
import type { Prng } from './prng.ts';

/**
 * The side-effect ledger: what tasks really did, as the sim executor saw it. Each execution of a
 * phase of a try (phase 0: its first start; phase k: its resumption after its k-th deferral) is
 * recorded with its start and end (global event order and sim time); "at most one execution of a
 * phase, none overlapping another of the same TI" is checked at every start. Beside it: what the
 * API answered (reports, starts, trigger events), as the sim saw the answers leave the router.
 */

export type ExecutionOutcome = 'success' | 'fail' | 'skip' | 'defer' | 'killed' | 'aborted';

export interface Execution {
  ti: string;
  tryNumber: number;
  /** 0: the try's first start; k: resumed after its k-th deferral. */
  phase: number;
  actor: string;
  startOrder: number;
  startAt: number;
  endOrder?: number;
  endAt?: number;
  outcome?: ExecutionOutcome;
  /** The worker died after the task ended and before it reported: its outcome is lost by design. */
  diedBeforeReport?: boolean;
}

/** A deferral a phase reported, by its trigger id (the API derives it from TI, try and deferral). */
export interface SimDeferral {
  ti: string;
  tryNumber: number;
  /** The TI's deferral number once the API took it (the deferring phase + 1). */
  seq: number;
  end: TriggerEnd;
  /** When the trigger fires (sim epoch ms). */
  moment: number;
  timeoutMs: number | null;
}

/** An answer of the trigger event or failure route, as it left the router. */
export interface TriggerAnswer {
  triggerId: string;
  route: 'event' | 'failure';
  /** The event's type (event route only). */
  type?: TriggerEventType;
  outcome: TriggerEventOutcome;
  /** The API invocation that served it: the store writes it made are attributed to it. */
  apiActor: string;
  /** Served in a batch of events: the triggers of that call's events (this one's included). */
  batch?: readonly string[];
  atMs: number;
}

/** The key of one phase of one try: `${ti}#${try}#${phase}`. */
export function phaseKey(ti: string, tryNumber: number, phase: number): string {
  return `${ti}#${tryNumber}#${phase}`;
}

export function parsePhaseKey(key: string): { ti: string; tryNumber: number; phase: number } {
  const [ti, tryText, phaseText] = key.split('#') as [string, string, string];
  return { ti, tryNumber: Number(tryText), phase: Number(phaseText) };
}

export class Ledger {
  readonly executions: Execution[] = [];
  readonly #fail: (failure: SimFailure) => void;
  /** Phase key → the report state the API answered 200 for (the store took it). */
  readonly accepted = new Map<string, string>();
  /** Phase key → whether the worker that ran it says it delivered its report. */
  readonly reported = new Map<string, boolean>();
  /** Phase keys whose start the router answered 200 (the API started that phase). */
  readonly started = new Set<string>();
  /** Deferrals the tasks reported (or were about to), by trigger id. */
  readonly deferrals = new Map<string, SimDeferral>();
  readonly triggerAnswers: TriggerAnswer[] = [];
  #order = 0;

  constructor(fail: (failure: SimFailure) => void) {
    this.#fail = fail;
  }

  start(ti: string, tryNumber: number, phase: number, actor: string, nowMs: number): Execution {
    for (const other of this.executions) {
      if (other.ti !== ti) continue;
      if (other.tryNumber === tryNumber && other.phase === phase) {
        this.#fail(
          phase === 0
            ? new SimFailure(
                '1-try-once',
                `${ti} try ${tryNumber} executed a second time (by ${actor}; first by ${other.actor})`,
              )
            : new SimFailure(
                '9a-resume-once',
                `${ti} try ${tryNumber} resumed a second time after deferral ${phase} (by ${actor}; first by ${other.actor})`,
              ),
        );
      }
      if (other.endOrder === undefined) {
        this.#fail(
          new SimFailure(
            '1-no-overlap',
            `${ti} try ${tryNumber} phase ${phase} started (by ${actor}) while try ${other.tryNumber} phase ${other.phase} still runs (by ${other.actor})`,
          ),
        );
      }
    }
    const execution: Execution = { ti, tryNumber, phase, actor, startOrder: ++this.#order, startAt: nowMs };
    this.executions.push(execution);
    return execution;
  }

  end(execution: Execution, outcome: ExecutionOutcome, nowMs: number): void {
    execution.endOrder = ++this.#order;
    execution.endAt = nowMs;
    execution.outcome = outcome;
  }

  /** The execution of this phase of this try, if it ran. */
  find(ti: string, tryNumber: number, phase: number): Execution | undefined {
    return this.executions.find((e) => e.ti === ti && e.tryNumber === tryNumber && e.phase === phase);
  }

  /** The report of this try that ended it (any phase), if the API accepted one. */
  acceptedEnd(ti: string, tryNumber: number): string | undefined {
    for (let phase = 0; phase <= 16; phase++) {
      const state = this.accepted.get(phaseKey(ti, tryNumber, phase));
      if (state !== undefined && state !== 'deferred') return state;
    }
    return undefined;
  }

  /** Answers `applied` with the deferral they applied to. */
  appliedAnswers(): { answer: TriggerAnswer; deferral: SimDeferral | undefined }[] {
    return this.triggerAnswers
      .filter((answer) => answer.outcome === 'applied')
      .map((answer) => ({ answer, deferral: this.deferrals.get(answer.triggerId) }));
  }
}

export interface ExecutorFaults {
  killMidTask: number;
  killBeforeReport: number;
}

export interface SimExecutorDeps {
  kernel: Kernel;
  ledger: Ledger;
  prng: Prng;
  plan(ti: string, tryNumber: number, phase: number): PhasePlan;
  faults(): ExecutorFaults;
}

/** The TaskExecutor of the sim: takes sim time, records itself, and is the place workers die. */
export class SimExecutor implements SimTaskExecutor {
  readonly #deps: SimExecutorDeps;

  constructor(deps: SimExecutorDeps) {
    this.#deps = deps;
  }

  async run(
    started: {
      dag_id: string;
      dag_run_id: string;
      task_id: string;
      map_index: number;
      try_number: number;
      resume?: { deferral_seq: number } | null | undefined;
    },
    _args: unknown[],
    context: { onLog(text: string): void; signal: AbortSignal },
  ): Promise<RunnerOutcome> {
    const { kernel, ledger, prng } = this.#deps;
    const actor = kernel.current();
    if (!actor) throw new Error('the sim executor runs inside a worker actor');
    const ti = `${started.dag_id}/${started.dag_run_id}/${started.task_id}/${started.map_index}`;
    const phase = started.resume?.deferral_seq ?? 0;
    const execution = ledger.start(ti, started.try_number, phase, actor.name, kernel.now);
    const what = `${ti} try ${started.try_number}${phase > 0 ? ` (resumed after deferral ${phase})` : ''}`;
    kernel.log(`${actor.name} EXEC start ${what}`);
    const plan = this.#deps.plan(ti, started.try_number, phase);
    const faults = this.#deps.faults();
    const killAt = prng.chance(faults.killMidTask) ? prng.range(0, plan.durationMs) : undefined;
    try {
      await kernel.sleep(killAt ?? plan.durationMs, context.signal);
    } catch {
      ledger.end(execution, 'aborted', kernel.now);
      kernel.log(`${actor.name} EXEC aborted ${what}`);
      return { kind: 'error', message: `aborted: ${String(context.signal.reason)}` };
    }
    if (killAt !== undefined) return this.#die(execution, 'killed', 'killed mid-task');
    ledger.end(execution, plan.outcome, kernel.now);
    kernel.log(`${actor.name} EXEC end ${what}: ${plan.outcome}`);
    let deferred: RunnerOutcome | undefined;
    if (plan.outcome === 'defer' && plan.deferral) {
      const seq = phase + 1;
      const moment = kernel.now + plan.deferral.waitMs;
      const key = { dagId: started.dag_id, runId: started.dag_run_id, taskId: started.task_id };
      const triggerId = triggerIdOf({ ...key, mapIndex: started.map_index }, started.try_number, seq);
      ledger.deferrals.set(triggerId, {
        ti,
        tryNumber: started.try_number,
        seq,
        end: plan.deferral.end,
        moment,
        timeoutMs: plan.deferral.timeoutMs,
      });
      deferred = { kind: 'deferred', deferral: deferralOf(plan.deferral, moment) };
    }
    if (prng.chance(faults.killBeforeReport)) {
      execution.diedBeforeReport = true;
      return this.#die(execution, undefined, 'killed between the end and the report');
    }
    context.onLog(`${plan.outcome}\n`);
    switch (plan.outcome) {
      case 'success':
        return { kind: 'success', xcom: JSON.stringify(started.try_number) };
      case 'skip':
        return { kind: 'skipped', reason: 'the sim chose skip' };
      case 'fail':
        return { kind: 'error', message: 'the sim chose failure' };
      case 'defer':
        if (!deferred) throw new Error('sim: a plan to defer without its deferral');
        return deferred;
    }
  }

  /** The worker process dies here: the actor stops, its heartbeats stop with it. */
  #die(execution: Execution, outcome: ExecutionOutcome | undefined, why: string): Promise<never> {
    const { kernel, ledger } = this.#deps;
    if (outcome) ledger.end(execution, outcome, kernel.now);
    const actor = kernel.current();
    if (actor) kernel.kill(actor, why);
    return new Promise<never>(() => {});
  }
}

import type { RunnerOutcome } from '#worker/protocol.ts';
import type { SimTaskExecutor } from './engine.ts';
import { type Kernel, SimFailure } from './kernel.ts';
import type { Prng } from './prng.ts';

/**
 * The side-effect ledger: what tasks really did, as the sim executor saw it. Each execution of a
 * try is recorded with its start and end (global event order and sim time); the invariant "at
 * most one live execution of a try" is checked at every start.
 */

export type ExecutionOutcome = 'success' | 'fail' | 'skip' | 'killed' | 'aborted';

export interface Execution {
  ti: string;
  tryNumber: number;
  actor: string;
  startOrder: number;
  startAt: number;
  endOrder?: number;
  endAt?: number;
  outcome?: ExecutionOutcome;
  /** The worker died after the task ended and before it reported: its outcome is lost by design. */
  diedBeforeReport?: boolean;
}

export class Ledger {
  readonly executions: Execution[] = [];
  readonly #fail: (failure: SimFailure) => void;
  /** `${ti}#${try}` → the report state the API answered 200 for (the store took it). */
  readonly accepted = new Map<string, string>();
  /** `${ti}#${try}` → whether the worker that ran it says it delivered its report. */
  readonly reported = new Map<string, boolean>();
  #order = 0;

  constructor(fail: (failure: SimFailure) => void) {
    this.#fail = fail;
  }

  start(ti: string, tryNumber: number, actor: string, nowMs: number): Execution {
    for (const other of this.executions) {
      if (other.ti !== ti) continue;
      if (other.tryNumber === tryNumber) {
        this.#fail(
          new SimFailure(
            '1-try-once',
            `${ti} try ${tryNumber} executed a second time (by ${actor}; first by ${other.actor})`,
          ),
        );
      }
      if (other.endOrder === undefined) {
        this.#fail(
          new SimFailure(
            '1-no-overlap',
            `${ti} try ${tryNumber} started (by ${actor}) while try ${other.tryNumber} still runs (by ${other.actor})`,
          ),
        );
      }
    }
    const execution: Execution = { ti, tryNumber, actor, startOrder: ++this.#order, startAt: nowMs };
    this.executions.push(execution);
    return execution;
  }

  end(execution: Execution, outcome: ExecutionOutcome, nowMs: number): void {
    execution.endOrder = ++this.#order;
    execution.endAt = nowMs;
    execution.outcome = outcome;
  }

  /** The execution of this try, if it ran. */
  find(ti: string, tryNumber: number): Execution | undefined {
    return this.executions.find((e) => e.ti === ti && e.tryNumber === tryNumber);
  }
}

export interface TryPlan {
  outcome: 'success' | 'fail' | 'skip';
  durationMs: number;
}

export interface ExecutorFaults {
  killMidTask: number;
  killBeforeReport: number;
}

export interface SimExecutorDeps {
  kernel: Kernel;
  ledger: Ledger;
  prng: Prng;
  plan(ti: string, tryNumber: number): TryPlan;
  faults(): ExecutorFaults;
}

/** The TaskExecutor of the sim: takes sim time, records itself, and is the place workers die. */
export class SimExecutor implements SimTaskExecutor {
  readonly #deps: SimExecutorDeps;

  constructor(deps: SimExecutorDeps) {
    this.#deps = deps;
  }

  async run(
    started: { dag_id: string; dag_run_id: string; task_id: string; map_index: number; try_number: number },
    _args: unknown[],
    context: { onLog(text: string): void; signal: AbortSignal },
  ): Promise<RunnerOutcome> {
    const { kernel, ledger, prng } = this.#deps;
    const actor = kernel.current();
    if (!actor) throw new Error('the sim executor runs inside a worker actor');
    const ti = `${started.dag_id}/${started.dag_run_id}/${started.task_id}/${started.map_index}`;
    const execution = ledger.start(ti, started.try_number, actor.name, kernel.now);
    kernel.log(`${actor.name} EXEC start ${ti} try ${started.try_number}`);
    const plan = this.#deps.plan(ti, started.try_number);
    const faults = this.#deps.faults();
    const killAt = prng.chance(faults.killMidTask) ? prng.range(0, plan.durationMs) : undefined;
    try {
      await kernel.sleep(killAt ?? plan.durationMs, context.signal);
    } catch {
      ledger.end(execution, 'aborted', kernel.now);
      kernel.log(`${actor.name} EXEC aborted ${ti} try ${started.try_number}`);
      return { kind: 'error', message: `aborted: ${String(context.signal.reason)}` };
    }
    if (killAt !== undefined) return this.#die(execution, 'killed', 'killed mid-task');
    ledger.end(execution, plan.outcome, kernel.now);
    kernel.log(`${actor.name} EXEC end ${ti} try ${started.try_number}: ${plan.outcome}`);
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

import type { TaskContext } from './context.ts';
import { DagValidationError } from './errors.ts';
import { BaseOperator } from './operator.ts';
import {
  type DagOptions,
  type ResolvedDagOptions,
  resolveDagOptions,
  resolveTaskOptions,
  TASK_OPTION_KEYS,
  type TaskOptions,
} from './options.ts';
import type { FailSignal, SkipSignal } from './signals.ts';
import { DagDraft, type DagTask, type TaskCallable, type TaskHandle, type TaskKind } from './task.ts';

/** A registered symbol, so the loader recognises DAGs built by another copy of this module. */
const DAG_BRAND: unique symbol = Symbol.for('updraft.dag');

/** What a branch returns: the direct downstream task id(s) to follow; null or [] follows none. */
export type BranchChoice = string | readonly string[] | null | undefined | SkipSignal | FailSignal;

/** A built DAG: its resolved options and its tasks (with their code) in topological order. */
export class Dag {
  readonly [DAG_BRAND] = true;
  readonly dagId: string;
  readonly options: ResolvedDagOptions;
  /** In topological order. */
  readonly tasks: ReadonlyMap<string, DagTask>;

  constructor(options: ResolvedDagOptions, tasks: readonly DagTask[]) {
    this.dagId = options.dagId;
    this.options = options;
    this.tasks = new Map(tasks.map((task) => [task.taskId, task]));
  }

  get taskIds(): string[] {
    return [...this.tasks.keys()];
  }

  getTask(taskId: string): DagTask | undefined {
    return this.tasks.get(taskId);
  }
}

export function isDag(value: unknown): value is Dag {
  return typeof value === 'object' && value !== null && Reflect.get(value, DAG_BRAND) === true;
}

/** The `d` a dag() builder receives. */
export class DagBuilder {
  readonly #options: ResolvedDagOptions;
  readonly #draft: DagDraft;

  constructor(options: ResolvedDagOptions, draft: DagDraft) {
    this.#options = options;
    this.#draft = draft;
  }

  get dagId(): string {
    return this.#options.dagId;
  }

  /**
   * A task running `fn`. Without `.args(...)` it gets only the context: `d.task('t', async (ctx) => …)`.
   * With `.args(a, b)` it gets the XComs of a and b first: `async (rowsA: number[], rowsB: number[], ctx) => …`.
   */
  task(idOrOptions: string | TaskOptions, fn: (ctx: TaskContext) => unknown): TaskHandle;
  task(idOrOptions: string | TaskOptions, fn: TaskCallable): TaskHandle;
  task(idOrOptions: string | TaskOptions, fn: unknown): TaskHandle {
    return this.#addCallable('task', idOrOptions, fn);
  }

  /**
   * A branch: `fn` returns the id(s) of the direct downstream tasks to follow; the scheduler skips
   * the other direct downstream tasks.
   */
  branch(
    idOrOptions: string | TaskOptions,
    fn: (ctx: TaskContext) => BranchChoice | Promise<BranchChoice>,
  ): TaskHandle;
  branch(idOrOptions: string | TaskOptions, fn: TaskCallable): TaskHandle;
  branch(idOrOptions: string | TaskOptions, fn: unknown): TaskHandle {
    return this.#addCallable('branch', idOrOptions, fn);
  }

  /** Adds an operator instance as a task. */
  add(operator: BaseOperator<object>): TaskHandle {
    if (!(operator instanceof BaseOperator)) {
      throw new DagValidationError(
        `DAG '${this.dagId}': d.add() takes an instance of a BaseOperator subclass`,
      );
    }
    // Only the task option keys are checked here: the other keys are the operator's own settings.
    const taskOptions = Object.fromEntries(
      Object.entries(operator.options).filter(([key]) => TASK_OPTION_KEYS.includes(key)),
    );
    const parsed = resolveTaskOptions(this.#options, taskOptions);
    const resumeIn = parsed.resolved.startTrigger?.nextMethod;
    if (resumeIn !== undefined && typeof Reflect.get(operator, resumeIn) !== 'function') {
      throw new DagValidationError(
        `DAG '${this.dagId}', task '${parsed.taskId}': startFromTrigger resumes in '${resumeIn}', which ${operator.constructor.name} does not define`,
      );
    }
    return this.#draft.addTask(
      {
        taskId: parsed.taskId,
        kind: 'operator',
        operatorName: operator.constructor.name,
        callable: null,
        operator,
        options: parsed.resolved,
      },
      parsed.upstream,
    );
  }

  #addCallable(kind: TaskKind, idOrOptions: string | TaskOptions, fn: unknown): TaskHandle {
    const options = typeof idOrOptions === 'string' ? { id: idOrOptions } : idOrOptions;
    const parsed = resolveTaskOptions(this.#options, options);
    if (typeof fn !== 'function') {
      throw new DagValidationError(
        `DAG '${this.dagId}', task '${parsed.taskId}': expected a function, got ${fn === null ? 'null' : typeof fn}`,
      );
    }
    return this.#draft.addTask(
      {
        taskId: parsed.taskId,
        kind,
        operatorName: kind,
        callable: fn as TaskCallable,
        operator: null,
        options: parsed.resolved,
      },
      parsed.upstream,
    );
  }
}

/**
 * Defines a DAG. `build` runs once, synchronously, and declares the tasks and their dependencies;
 * the DAG is checked when it returns (ids, upstream tasks, cycles, branches), so a file with a
 * mistake fails to import with a DagValidationError that names the DAG and the task.
 */
export function dag(options: DagOptions, build: (d: DagBuilder) => void): Dag {
  const resolved = resolveDagOptions(options);
  if (typeof build !== 'function') {
    throw new DagValidationError(
      `DAG '${resolved.dagId}': dag() needs a builder function as its second argument`,
    );
  }
  const draft = new DagDraft(resolved.dagId);
  const returned: unknown = build(new DagBuilder(resolved, draft));
  if (returned instanceof Promise) {
    // A rejected promise would otherwise be reported as unhandled on top of this error.
    returned.catch(() => {});
    throw new DagValidationError(
      `DAG '${resolved.dagId}': the dag() builder must be synchronous (it returned a promise)`,
    );
  }
  return new Dag(resolved, draft.seal());
}

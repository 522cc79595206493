import type { XComArgRef } from '#core/serialized-dag.ts';
import { DagValidationError } from './errors.ts';
import { topologicalOrder } from './graph.ts';
import type { BaseOperator } from './operator.ts';
import type { ResolvedTaskOptions, UpstreamRef } from './options.ts';

/**
 * A task's callable: its positional args (the XComs given to `.args(...)`), then the TaskContext.
 * Declared as a method so its parameters are checked bivariantly: authors annotate them with the
 * types they expect (`async (rows: number[], ctx: TaskContext) => …`).
 */
export type TaskCallable = { bivarianceHack(...args: unknown[]): unknown }['bivarianceHack'];

export type TaskKind = 'task' | 'branch' | 'operator';

/** One task of a built DAG, with its code: only workers look at `callable` and `operator`. */
export interface DagTask {
  readonly taskId: string;
  readonly kind: TaskKind;
  /** 'task', 'branch' or the operator's class name. */
  readonly operatorName: string;
  readonly callable: TaskCallable | null;
  readonly operator: BaseOperator<object> | null;
  readonly options: ResolvedTaskOptions;
  /** Direct upstream task ids, sorted. */
  readonly upstream: readonly string[];
  /** Direct downstream task ids, sorted. */
  readonly downstream: readonly string[];
  readonly args: readonly XComArgRef[];
}

/** A reference to one XCom of a task, passed to another task through `.args(...)`. */
export class XComArg {
  readonly task: TaskHandle;
  readonly key: string;

  constructor(task: TaskHandle, key: string) {
    this.task = task;
    this.key = key;
  }

  get taskId(): string {
    return this.task.taskId;
  }
}

type TaskRefs = UpstreamRef | readonly UpstreamRef[];

/** What a DAG builder returns for each task: declares its dependencies and data inputs. */
export class TaskHandle {
  readonly taskId: string;
  readonly draft: DagDraft;

  constructor(draft: DagDraft, taskId: string) {
    this.draft = draft;
    this.taskId = taskId;
  }

  /** Passes these XComs as the task's positional args (in order) and makes their tasks upstream. */
  args(...inputs: (TaskHandle | XComArg)[]): this {
    for (const input of inputs) {
      const handle = input instanceof XComArg ? input.task : input;
      if (!(handle instanceof TaskHandle)) {
        throw new DagValidationError(
          `DAG '${this.draft.dagId}', task '${this.taskId}': .args() takes task handles or .output() references, got ${describe(input)}`,
        );
      }
      const key = input instanceof XComArg ? input.key : 'return_value';
      this.draft.addUpstream(this.taskId, handle);
      this.draft.addArg(this.taskId, { taskId: handle.taskId, key });
    }
    return this;
  }

  /** Runs this task after the given tasks (handles or ids), without passing data. */
  after(...tasks: TaskRefs[]): this {
    for (const ref of tasks.flat()) this.draft.addUpstream(this.taskId, ref);
    return this;
  }

  /** Runs the given tasks after this one. */
  before(...tasks: TaskRefs[]): this {
    for (const ref of tasks.flat()) {
      const handle = this.draft.handleOf(ref, this.taskId);
      this.draft.addUpstream(handle.taskId, this, this.taskId);
    }
    return this;
  }

  /** A named XCom of this task; only 'return_value' is written today. */
  output(key = 'return_value'): XComArg {
    return new XComArg(this, key);
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return value.constructor?.name ?? 'object';
  return `${typeof value} ${JSON.stringify(value)}`;
}

interface DraftTask {
  taskId: string;
  kind: TaskKind;
  operatorName: string;
  callable: TaskCallable | null;
  operator: BaseOperator<object> | null;
  options: ResolvedTaskOptions;
  args: XComArgRef[];
}

/** An edge as declared; either end may name a task defined later, so both are checked at seal time. */
interface DraftEdge {
  upstream: string;
  downstream: string;
  /** The task whose declaration created the edge, named in errors. */
  declaredBy: string;
}

/** The graph while the builder runs; sealed when the builder returns. */
export class DagDraft {
  readonly dagId: string;
  readonly #tasks = new Map<string, DraftTask>();
  readonly #handles = new Map<string, TaskHandle>();
  readonly #edges: DraftEdge[] = [];
  #sealed = false;

  constructor(dagId: string) {
    this.dagId = dagId;
  }

  addTask(task: Omit<DraftTask, 'args'>, upstream: readonly UpstreamRef[]): TaskHandle {
    this.#checkOpen();
    if (this.#tasks.has(task.taskId)) {
      throw new DagValidationError(`DAG '${this.dagId}': task id '${task.taskId}' is defined twice`);
    }
    this.#tasks.set(task.taskId, { ...task, args: [] });
    const handle = new TaskHandle(this, task.taskId);
    this.#handles.set(task.taskId, handle);
    for (const ref of upstream) this.addUpstream(task.taskId, ref);
    return handle;
  }

  /** The handle `ref` names; an id string may name a task not defined yet. */
  handleOf(ref: unknown, forTaskId: string): TaskHandle {
    if (ref instanceof TaskHandle) {
      if (ref.draft !== this) {
        throw new DagValidationError(
          `DAG '${this.dagId}', task '${forTaskId}': task '${ref.taskId}' belongs to DAG '${ref.draft.dagId}'`,
        );
      }
      return ref;
    }
    if (typeof ref === 'string') return this.#handles.get(ref) ?? new TaskHandle(this, ref);
    throw new DagValidationError(
      `DAG '${this.dagId}', task '${forTaskId}': expected a task handle or a task id, got ${describe(ref)}`,
    );
  }

  /** Makes `ref` upstream of `taskId`; `declaredBy` is the task whose call declared it. */
  addUpstream(taskId: string, ref: unknown, declaredBy = taskId): void {
    this.#checkOpen();
    const upstream = this.handleOf(ref, declaredBy).taskId;
    if (upstream === taskId) {
      throw new DagValidationError(`DAG '${this.dagId}', task '${taskId}': a task cannot depend on itself`);
    }
    this.#edges.push({ upstream, downstream: taskId, declaredBy });
  }

  addArg(taskId: string, arg: XComArgRef): void {
    this.#checkOpen();
    this.#tasks.get(taskId)?.args.push(arg);
  }

  #checkOpen(): void {
    if (this.#sealed) {
      throw new DagValidationError(
        `DAG '${this.dagId}' is already built: declare tasks and dependencies inside its dag() builder`,
      );
    }
  }

  /** Ends the builder: checks the graph and returns the tasks in topological order. */
  seal(): DagTask[] {
    this.#sealed = true;
    const upstream = new Map<string, Set<string>>();
    const downstream = new Map<string, Set<string>>();
    for (const id of this.#tasks.keys()) {
      upstream.set(id, new Set());
      downstream.set(id, new Set());
    }
    for (const edge of this.#edges) {
      for (const [end, role] of [
        [edge.upstream, 'upstream'],
        [edge.downstream, 'downstream'],
      ] as const) {
        if (!this.#tasks.has(end)) {
          throw new DagValidationError(
            `DAG '${this.dagId}', task '${edge.declaredBy}': ${role} task '${end}' does not exist`,
          );
        }
      }
      upstream.get(edge.downstream)?.add(edge.upstream);
      downstream.get(edge.upstream)?.add(edge.downstream);
    }
    const { order, cycle } = topologicalOrder([...this.#tasks.keys()], (id) => [...(upstream.get(id) ?? [])]);
    if (cycle) throw new DagValidationError(`DAG '${this.dagId}' has a cycle: ${cycle.join(' -> ')}`);

    return order.map((id) => {
      const task = this.#tasks.get(id)!;
      const children = [...(downstream.get(id) ?? [])].sort();
      if (task.kind === 'branch' && children.length === 0) {
        throw new DagValidationError(
          `DAG '${this.dagId}', task '${id}': a branch needs downstream tasks to choose from`,
        );
      }
      return {
        taskId: id,
        kind: task.kind,
        operatorName: task.operatorName,
        callable: task.callable,
        operator: task.operator,
        options: task.options,
        upstream: [...(upstream.get(id) ?? [])].sort(),
        downstream: children,
        args: task.args,
      };
    });
  }
}

/**
 * Airflow's chain(): each item runs after the previous one. A list fans out or in; two adjacent
 * lists must have the same length and are linked pairwise.
 */
export function chain(...items: (TaskHandle | readonly TaskHandle[])[]): void {
  for (let index = 1; index < items.length; index++) {
    const previous = items[index - 1]!;
    const current = items[index]!;
    if (Array.isArray(previous) && Array.isArray(current)) {
      const left = previous as readonly TaskHandle[];
      const right = current as readonly TaskHandle[];
      if (left.length !== right.length) {
        throw new DagValidationError(
          `chain(): adjacent lists must have the same length to be linked pairwise, got ${left.length} and ${right.length}`,
        );
      }
      right.forEach((task, position) => {
        task.after(left[position]!);
      });
      continue;
    }
    const upstream = Array.isArray(previous) ? previous : [previous];
    const downstream = Array.isArray(current) ? current : [current];
    for (const task of downstream as TaskHandle[]) task.after(...(upstream as TaskHandle[]));
  }
}

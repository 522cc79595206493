import type { DeferRequest, DeferSignal } from './signals.ts';

/** Structured log lines of one task try; `fields` are kept as JSON beside the message. */
export interface TaskLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** What a task receives as its last argument (the worker builds it for each try, see WorkerTaskContext). */
export interface TaskContext {
  readonly dagId: string;
  readonly runId: string;
  readonly taskId: string;
  /** -1 when the task is not mapped. */
  readonly mapIndex: number;
  /** 1 on the first try. */
  readonly tryNumber: number;
  readonly maxTries: number;
  /** ISO-8601. */
  readonly logicalDate: string;
  readonly dataIntervalStart: string | null;
  readonly dataIntervalEnd: string | null;
  /** The DAG's params overlaid with the run's conf. */
  readonly params: Record<string, unknown>;
  /** The conf the run was triggered with. */
  readonly conf: Record<string, unknown>;
  readonly log: TaskLogger;
  /** Reads an XCom of another task of the same run ('return_value' when no key is given). */
  xcomPull(taskId: string, key?: string): Promise<unknown>;
  /** Aborted on execution timeout or when the try is cancelled; pass it on to fetch() and friends. */
  readonly signal: AbortSignal;
  /**
   * Defers the task (Airflow's deferral): the try gives up its worker slot while `trigger` waits on
   * a triggerer, then resumes in `method` (default 'executeComplete') with the trigger's event.
   * Write `return ctx.defer({...})`: a returned signal cannot be swallowed by the task's own
   * try/catch. A thrown one is recognised too, unless a catch in the task takes it first. Nothing
   * after the return runs in this try; on resume an operator's `method` is called, and a callable
   * task is called again with `ctx.resume` set.
   */
  defer(request: DeferRequest): DeferSignal;
  /** Set when this call resumes a deferred try: what it deferred for and what the trigger sent. */
  readonly resume?: TaskResume;
}

/** A deferred try coming back: the method it named, the trigger's event and its defer kwargs. */
export interface TaskResume {
  readonly method: string;
  /** The trigger event's payload, deserialized. */
  readonly event: unknown;
  readonly kwargs: Record<string, unknown>;
  /** How many times this try deferred so far (1 after the first deferral). */
  readonly deferralSeq: number;
}

/** What a worker builds for each try; executeTask adds `defer` and, on a resume, `resume`. */
export type WorkerTaskContext = Omit<TaskContext, 'defer' | 'resume'>;

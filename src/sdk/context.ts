/** Structured log lines of one task try; `fields` are kept as JSON beside the message. */
export interface TaskLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** What a task receives as its last argument; the worker builds it for each try. */
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
}

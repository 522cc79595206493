import * as z from 'zod';
import { type DurationInput, parseDuration } from '#core/duration.ts';
import { InvalidDurationError, InvalidScheduleError } from '#core/errors.ts';
import { invalidIdReason } from '#core/ids.ts';
import { parseSchedule, type ScheduleInput } from '#core/schedule.ts';
import type { StartTrigger } from '#core/serialized-dag.ts';
import {
  type Schedule,
  TASK_QUEUES,
  type TaskQueueName,
  TRIGGER_RULES,
  type TriggerRule,
  WEIGHT_RULES,
  type WeightRule,
} from '#core/serialized-dag.ts';
import {
  type CallbackInput,
  type DagCallbackLists,
  resolveDagCallbacks,
  resolveTaskCallbacks,
  type TaskCallbackLists,
} from './callback-options.ts';
import { type DeadlineOption, type ResolvedDeadline, resolveDeadlines } from './deadline-options.ts';
import { DagValidationError } from './errors.ts';
import { serialize } from './serde.ts';
import { type DeferRequest, defer } from './signals.ts';

export type { CallbackFunction, CallbackInput, CallbackSpec, ResolvedCallback } from './callback-options.ts';
export type { DeadlineAverage, DeadlineBy, DeadlineOption, DeadlineWithin } from './deadline-options.ts';

/** A task given by its handle or by its id (which may name a task defined later in the builder). */
export type UpstreamRef = string | { readonly taskId: string };

/** Options of one task; every key but `id` is optional and falls back to the DAG's defaultArgs. */
export interface TaskOptions {
  id: string;
  /** Retries after the first try (default 0). */
  retries?: number;
  /** Seconds, or '30s', '5m', '1h30m'… (default '5m'). */
  retryDelay?: DurationInput;
  /** Doubles the delay on each retry, up to maxRetryDelay (default false). */
  retryExponentialBackoff?: boolean;
  maxRetryDelay?: DurationInput | null;
  /** A try running longer than this fails (and retries if it can). Default: none. */
  executionTimeout?: DurationInput | null;
  /** When the task may run given its upstream states (default 'all_success'). */
  triggerRule?: TriggerRule;
  priorityWeight?: number;
  weightRule?: WeightRule;
  queue?: TaskQueueName;
  pool?: string;
  poolSlots?: number;
  doc?: string;
  /**
   * The most memory (MB) one try may use, heap and resident memory alike (with the processes the
   * task starts); over it the try fails. At least MEMORY_LIMIT_MIN_MB (256).
   * Default: the worker's UPDRAFT_TASK_MEMORY_LIMIT_MB.
   */
  memoryLimitMb?: number;
  upstream?: UpstreamRef | readonly UpstreamRef[];
  /**
   * Start the task in this trigger, without a worker (Airflow's start_from_trigger): when the
   * scheduler would queue it, the task is deferred at once, and resumes on a worker in `method`
   * (or ends from the trigger) when the trigger fires. Decided when the DAG is parsed.
   */
  startFromTrigger?: DeferRequest;
  /** Run when a try succeeds. */
  onSuccess?: CallbackInput;
  /** Run when the task fails for good (no retry left). */
  onFailure?: CallbackInput;
  /** Run when a try fails and the task will retry. */
  onRetry?: CallbackInput;
  /** Run when a try starts (not when a deferred try resumes). */
  onExecute?: CallbackInput;
  /** Run when the task skips itself. */
  onSkipped?: CallbackInput;
}

/** Task options applied to every task of a DAG unless the task sets them itself. */
export type DefaultArgs = Omit<TaskOptions, 'id' | 'upstream' | 'startFromTrigger'>;

export interface DagOptions {
  id: string;
  description?: string | null;
  /** null (triggered runs only), a cron ('0 6 * * *', '@daily', 'cron(0 6 * * ? *)'), { cron, timezone } or 'rate(1 hour)'. */
  schedule?: ScheduleInput;
  /** ISO-8601 or a Date: no scheduled run has a logical date before it. */
  startDate?: string | Date | null;
  endDate?: string | Date | null;
  /** Create the runs missed since startDate (default false, like Airflow 3). */
  catchup?: boolean;
  maxActiveRuns?: number;
  maxActiveTasks?: number;
  /** Defaults of ctx.params; a run's conf overrides them key by key. JSON values only. */
  params?: Record<string, unknown>;
  tags?: string[];
  defaultArgs?: DefaultArgs;
  /** Run when a run of the DAG succeeds. */
  onSuccess?: CallbackInput;
  /** Run when a run of the DAG fails. */
  onFailure?: CallbackInput;
  /**
   * A run still running this long after it started fails (Airflow's dagrun_timeout): its unfinished
   * task instances are skipped, and its `onFailure` callbacks run. Default: none.
   */
  dagRunTimeout?: DurationInput | null;
  /**
   * When each run must have finished, with callbacks for a run that has not: `{ within, of:
   * 'logical_date' | 'queued_at', callback }`, `{ by, callback }`, `{ within: '2x', of:
   * 'average_duration', over?, callback }`, or an array of them (at most 10). Default: none.
   */
  deadline?: DeadlineOption | readonly DeadlineOption[];
}

export interface ResolvedTaskOptions {
  retries: number;
  retryDelayMs: number;
  retryExponentialBackoff: boolean;
  maxRetryDelayMs: number | null;
  executionTimeoutMs: number | null;
  triggerRule: TriggerRule;
  priorityWeight: number;
  weightRule: WeightRule;
  queue: TaskQueueName;
  pool: string;
  poolSlots: number;
  doc: string | null;
  /** null: the worker's UPDRAFT_TASK_MEMORY_LIMIT_MB applies. */
  memoryLimitMb: number | null;
  /** The trigger the task starts in (start from trigger); null: the task starts on a worker. */
  startTrigger: StartTrigger | null;
  /** The task's callbacks by event, defaultArgs' ones for an event the task does not set. */
  callbacks: TaskCallbackLists;
}

export interface ResolvedDagOptions {
  dagId: string;
  description: string | null;
  schedule: Schedule | null;
  startDate: string | null;
  endDate: string | null;
  catchup: boolean;
  maxActiveRuns: number;
  maxActiveTasks: number;
  params: Record<string, unknown>;
  tags: string[];
  /** Already checked; merged under each task's own options. */
  defaultArgs: DefaultArgs;
  /** The run's callbacks by event. */
  callbacks: DagCallbackLists;
  /** null: no run timeout. */
  dagRunTimeoutMs: number | null;
  /** The run's deadlines, in the order given ([] when none). */
  deadlines: readonly ResolvedDeadline[];
}

/**
 * The smallest memory limit (MB) of a task. A task runner process takes about 110 MB of resident
 * memory before its task allocates anything (Node, the SDK and the DAG file's imports), so a lower
 * limit would leave a task next to nothing; this one leaves it about 140 MB.
 */
export const MEMORY_LIMIT_MIN_MB = 256;

const durationSchema = z.union([z.number(), z.string()]);
const upstreamRefSchema = z.union([
  z.string(),
  z.custom<{ taskId: string }>(
    (value) =>
      typeof value === 'object' && value !== null && typeof Reflect.get(value, 'taskId') === 'string',
    { message: 'expected a task handle or a task id' },
  ),
]);

const defaultArgsSchema = z.strictObject({
  retries: z.number().int().nonnegative().optional(),
  retryDelay: durationSchema.optional(),
  retryExponentialBackoff: z.boolean().optional(),
  maxRetryDelay: durationSchema.nullable().optional(),
  executionTimeout: durationSchema.nullable().optional(),
  triggerRule: z.enum(TRIGGER_RULES).optional(),
  priorityWeight: z.number().int().optional(),
  weightRule: z.enum(WEIGHT_RULES).optional(),
  queue: z.enum(TASK_QUEUES).optional(),
  pool: z.string().min(1).optional(),
  poolSlots: z.number().int().min(1).optional(),
  doc: z.string().optional(),
  memoryLimitMb: z
    .number()
    .int()
    .min(
      MEMORY_LIMIT_MIN_MB,
      `must be at least ${MEMORY_LIMIT_MIN_MB} (a task runner process takes about 110 MB before the task allocates anything)`,
    )
    .optional(),
  // Checked by resolveTaskCallbacks, whose messages say what a callback may be.
  onSuccess: z.unknown().optional(),
  onFailure: z.unknown().optional(),
  onRetry: z.unknown().optional(),
  onExecute: z.unknown().optional(),
  onSkipped: z.unknown().optional(),
});

const taskOptionsSchema = defaultArgsSchema.extend({
  id: z.string(),
  upstream: z.union([upstreamRefSchema, z.array(upstreamRefSchema)]).optional(),
  startFromTrigger: z
    .custom<DeferRequest>((value) => typeof value === 'object' && value !== null && 'trigger' in value, {
      message: 'expected { trigger, method?, timeout?, kwargs? }',
    })
    .optional(),
});

/** The keys a task option object may hold; an operator's options hold these plus its own. */
export const TASK_OPTION_KEYS: readonly string[] = Object.keys(taskOptionsSchema.shape);

const dateSchema = z.union([z.string(), z.date()]).nullable().optional();
const dagOptionsSchema = z.strictObject({
  id: z.string(),
  description: z.string().nullable().optional(),
  schedule: z
    .union([z.string(), z.strictObject({ cron: z.string(), timezone: z.string().optional() })])
    .nullable()
    .optional(),
  startDate: dateSchema,
  endDate: dateSchema,
  catchup: z.boolean().optional(),
  maxActiveRuns: z.number().int().positive().optional(),
  maxActiveTasks: z.number().int().positive().optional(),
  params: z.record(z.string(), z.json()).optional(),
  tags: z.array(z.string().min(1)).optional(),
  defaultArgs: z.unknown().optional(),
  onSuccess: z.unknown().optional(),
  onFailure: z.unknown().optional(),
  dagRunTimeout: durationSchema.nullable().optional(),
  // Checked by resolveDeadlines, whose messages say what a deadline may be.
  deadline: z.unknown().optional(),
});

/** "option 'retries': Too small…; unknown option 'foo'" from zod's issues. */
export function describeIssues(error: z.ZodError, noun = 'option'): string {
  return error.issues
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        const keys = issue.keys.map((key) => `'${key}'`).join(', ');
        const where = issue.path.length > 0 ? ` in '${issue.path.join('.')}'` : '';
        return `unknown ${noun}${issue.keys.length > 1 ? 's' : ''} ${keys}${where}`;
      }
      const path = issue.path.join('.');
      return path ? `${noun} '${path}': ${issue.message}` : issue.message;
    })
    .join('; ');
}

/** The id, when it follows the id grammar of `#core/ids.ts`; else a DagValidationError naming it. */
export function checkId(kind: 'DAG' | 'task', id: unknown, where: string): string {
  const reason = invalidIdReason(kind, id);
  if (reason !== undefined) throw new DagValidationError(`${where}: ${reason}`);
  return id as string;
}

function toIsoDate(value: string | Date | null | undefined, where: string, what: string): string | null {
  if (value === null || value === undefined) return null;
  const ms = value instanceof Date ? value.getTime() : Date.parse(value);
  if (Number.isNaN(ms)) {
    throw new DagValidationError(`${where}: ${what} ${JSON.stringify(value)} is not an ISO-8601 date-time`);
  }
  return new Date(ms).toISOString();
}

export function resolveDagOptions(options: DagOptions): ResolvedDagOptions {
  const idForMessage = typeof options?.id === 'string' ? `DAG '${options.id}'` : 'DAG';
  const parsed = dagOptionsSchema.safeParse(options);
  if (!parsed.success) throw new DagValidationError(`${idForMessage}: ${describeIssues(parsed.error)}`);
  const raw = parsed.data;
  const where = `DAG '${raw.id}'`;
  checkId('DAG', raw.id, 'DAG');

  let schedule: Schedule | null;
  try {
    schedule = parseSchedule(raw.schedule);
  } catch (error) {
    if (!(error instanceof InvalidScheduleError)) throw error;
    throw new DagValidationError(`${where}: ${error.message}`, { cause: error });
  }
  const startDate = toIsoDate(raw.startDate, where, 'startDate');
  const endDate = toIsoDate(raw.endDate, where, 'endDate');
  if (startDate && endDate && endDate < startDate) {
    throw new DagValidationError(`${where}: endDate ${endDate} is before startDate ${startDate}`);
  }

  const defaults = defaultArgsSchema.safeParse(raw.defaultArgs ?? {});
  if (!defaults.success)
    throw new DagValidationError(`${where} defaultArgs: ${describeIssues(defaults.error)}`);
  // Parsing the defaults' durations once here blames the DAG, not every task, for a bad default.
  resolveDurations(defaults.data, `${where} defaultArgs`);
  resolveTaskCallbacks(defaults.data, `${where} defaultArgs`);

  return {
    dagId: raw.id,
    description: raw.description ?? null,
    schedule,
    startDate,
    endDate,
    catchup: raw.catchup ?? false,
    maxActiveRuns: raw.maxActiveRuns ?? 16,
    maxActiveTasks: raw.maxActiveTasks ?? 16,
    params: structuredClone(raw.params ?? {}) as Record<string, unknown>,
    tags: [...(raw.tags ?? [])],
    defaultArgs: defaults.data as DefaultArgs,
    callbacks: resolveDagCallbacks(raw, where),
    dagRunTimeoutMs: dagRunTimeoutOf(raw.dagRunTimeout, where),
    deadlines: resolveDeadlines(raw.deadline, where),
  };
}

function dagRunTimeoutOf(value: DurationInput | null | undefined, where: string): number | null {
  if (value === null || value === undefined) return null;
  let ms: number;
  try {
    ms = parseDuration(value, `${where} option 'dagRunTimeout'`);
  } catch (error) {
    if (!(error instanceof InvalidDurationError)) throw error;
    throw new DagValidationError(error.message, { cause: error });
  }
  if (ms <= 0)
    throw new DagValidationError(
      `${where}: option 'dagRunTimeout' must be greater than 0 (or null for no limit)`,
    );
  return ms;
}

function resolveDurations(
  options: Pick<DefaultArgs, 'retryDelay' | 'maxRetryDelay' | 'executionTimeout'>,
  where: string,
): { retryDelayMs: number; maxRetryDelayMs: number | null; executionTimeoutMs: number | null } {
  const read = (value: DurationInput, key: string, positive: boolean): number => {
    let ms: number;
    try {
      ms = parseDuration(value, `${where} option '${key}'`);
    } catch (error) {
      if (!(error instanceof InvalidDurationError)) throw error;
      throw new DagValidationError(error.message, { cause: error });
    }
    if (positive && ms <= 0) {
      throw new DagValidationError(`${where}: option '${key}' must be greater than 0 (or null for no limit)`);
    }
    return ms;
  };
  return {
    retryDelayMs: read(options.retryDelay ?? '5m', 'retryDelay', false),
    maxRetryDelayMs:
      options.maxRetryDelay === null || options.maxRetryDelay === undefined
        ? null
        : read(options.maxRetryDelay, 'maxRetryDelay', true),
    executionTimeoutMs:
      options.executionTimeout === null || options.executionTimeout === undefined
        ? null
        : read(options.executionTimeout, 'executionTimeout', true),
  };
}

/** Task options as written, after the id was read: the resolved options and the upstream refs. */
export interface ParsedTaskOptions {
  taskId: string;
  resolved: ResolvedTaskOptions;
  upstream: UpstreamRef[];
}

/**
 * Checks a task's options and merges them over the DAG's defaultArgs. Operators pass only the keys
 * in TASK_OPTION_KEYS, since the rest of their options belong to the operator.
 */
export function resolveTaskOptions(dag: ResolvedDagOptions, options: unknown): ParsedTaskOptions {
  const rawId = typeof options === 'object' && options !== null ? Reflect.get(options, 'id') : undefined;
  const taskId = checkId('task', rawId, `DAG '${dag.dagId}'`);
  const where = `DAG '${dag.dagId}', task '${taskId}'`;
  const parsed = taskOptionsSchema.safeParse(options);
  if (!parsed.success) throw new DagValidationError(`${where}: ${describeIssues(parsed.error)}`);
  const { id: _id, upstream, startFromTrigger, ...own } = parsed.data;
  // The callback options were parsed as unknown; resolveTaskCallbacks checks them below.
  const merged: DefaultArgs = { ...dag.defaultArgs, ...(stripUndefined(own) as Partial<DefaultArgs>) };
  const durations = resolveDurations(merged, where);
  const upstreamList = upstream === undefined ? [] : Array.isArray(upstream) ? upstream : [upstream];
  return {
    taskId,
    upstream: upstreamList as UpstreamRef[],
    resolved: {
      retries: merged.retries ?? 0,
      ...durations,
      retryExponentialBackoff: merged.retryExponentialBackoff ?? false,
      triggerRule: merged.triggerRule ?? 'all_success',
      priorityWeight: merged.priorityWeight ?? 1,
      weightRule: merged.weightRule ?? 'downstream',
      queue: merged.queue ?? 'default',
      pool: merged.pool ?? 'default_pool',
      poolSlots: merged.poolSlots ?? 1,
      doc: merged.doc ?? null,
      memoryLimitMb: merged.memoryLimitMb ?? null,
      startTrigger: startFromTrigger === undefined ? null : startTriggerOf(startFromTrigger, where),
      // A task's own option for an event, [] included, replaces defaultArgs' (Airflow's default_args).
      callbacks: resolveTaskCallbacks(merged, where),
    },
  };
}

/** The start trigger as the serialized DAG keeps it: its kwargs and the resume kwargs as serde text. */
function startTriggerOf(request: DeferRequest, where: string): StartTrigger {
  try {
    const signal = defer(request);
    if (signal.trigger.name === 'updraft.TimeDeltaTrigger') {
      throw new Error(
        'a TimeDeltaTrigger counts from when it is built, which for a start trigger is each parse of the DAG file (a new DAG version every time); use a DateTimeTrigger, or defer from execute',
      );
    }
    return {
      name: signal.trigger.name,
      kwargs: serialize(signal.trigger.kwargs, { root: `${signal.trigger.name} kwargs` }),
      ...(signal.trigger.queue !== undefined ? { queue: signal.trigger.queue } : {}),
      nextMethod: signal.method,
      nextKwargs: serialize(signal.kwargs, { root: 'kwargs' }),
      timeoutMs: signal.timeoutMs,
    };
  } catch (error) {
    throw new DagValidationError(`${where}: option 'startFromTrigger': ${(error as Error).message}`, {
      cause: error,
    });
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

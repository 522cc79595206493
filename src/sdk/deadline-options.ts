import {
  DEADLINE_OVER_DEFAULT,
  DEADLINE_OVER_MAX,
  DEADLINE_TIMES_MAX,
  DEADLINE_WITHIN_MAX_MS,
  DEADLINES_PER_DAG_MAX,
  type SerializedDeadline,
} from '#core/deadlines.ts';
import { type DurationInput, parseDuration } from '#core/duration.ts';
import { InvalidDurationError } from '#core/errors.ts';
import {
  type CallbackInput,
  describeOptionValue,
  type ResolvedCallback,
  resolveCallbackInput,
} from './callback-options.ts';
import { DagValidationError } from './errors.ts';

/**
 * The `deadline` option of a DAG (see `core/deadlines.ts`): when each run must have finished, and
 * what runs when it has not.
 */

/** A run must finish within a duration of its logical date or of when it was queued. */
export interface DeadlineWithin {
  /** Seconds, or '30m', '1h30m'…: more than 0, at most 366 days. */
  within: DurationInput;
  of: 'logical_date' | 'queued_at';
  callback: CallbackInput;
}

/** A run must finish by a fixed time. */
export interface DeadlineBy {
  /** ISO-8601 with an offset ('2026-03-01T06:00:00Z', '…+01:00'), or a Date. */
  by: string | Date;
  callback: CallbackInput;
}

/** A run must finish within a multiple of the DAG's average run duration, counted from when it was queued. */
export interface DeadlineAverage {
  /** The multiple: '2x', '1.5x' (more than 0, at most 100). */
  within: `${number}x`;
  of: 'average_duration';
  /** How many of the latest successful runs the average is taken over (default 10, at most 100). */
  over?: number;
  callback: CallbackInput;
}

export type DeadlineOption = DeadlineWithin | DeadlineBy | DeadlineAverage;

/** A deadline as a built DAG keeps it: its serialized form and its callback functions. */
export interface ResolvedDeadline {
  readonly serialized: SerializedDeadline;
  readonly callbacks: readonly ResolvedCallback[];
}

const KEYS: readonly string[] = ['within', 'of', 'over', 'by', 'callback'];
const EXPECTED = 'expected { within, of, callback }, { by, callback }, or an array of them';
const OFS = ['logical_date', 'queued_at', 'average_duration'] as const;
/** An ISO-8601 date-time with its offset: a fixed deadline means the same instant wherever it is parsed. */
const ISO_WITH_OFFSET = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i;
const MULTIPLE = /^(\d+(?:\.\d+)?)x$/;

/** The DAG's deadlines from its `deadline` option (absent or `[]`: none). `where` names the DAG. */
export function resolveDeadlines(input: unknown, where: string): ResolvedDeadline[] {
  if (input === undefined || input === null) return [];
  if (Array.isArray(input)) {
    if (input.length > DEADLINES_PER_DAG_MAX) {
      throw new DagValidationError(
        `${where}: option 'deadline' lists ${input.length} deadlines, over the limit of ${DEADLINES_PER_DAG_MAX} per DAG`,
      );
    }
    return input.map((item, index) => resolveOne(item, where, `deadline[${index}]`));
  }
  return [resolveOne(input, where, 'deadline')];
}

function resolveOne(input: unknown, where: string, option: string): ResolvedDeadline {
  const at = `${where}: option '${option}'`;
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new DagValidationError(`${at}: ${EXPECTED}, got ${describe(input)}`);
  }
  const unknownKeys = Object.keys(input).filter((key) => !KEYS.includes(key));
  if (unknownKeys.length > 0) {
    const keys = unknownKeys.map((key) => `'${key}'`).join(', ');
    throw new DagValidationError(
      `${at}: unknown key${unknownKeys.length > 1 ? 's' : ''} ${keys} (a deadline takes within, of, over, by, callback)`,
    );
  }
  const raw = input as Partial<Record<'within' | 'of' | 'over' | 'by' | 'callback', unknown>>;
  if (raw.callback === undefined) throw new DagValidationError(`${at}: 'callback' is required`);
  const callbacks = resolveCallbackInput(raw.callback, where, `${option}.callback`);
  if (callbacks.length === 0) {
    throw new DagValidationError(`${at}: 'callback' lists no callback (a deadline needs at least one)`);
  }
  const refs = callbacks.map((callback) => ({ ...callback.ref }));
  if (raw.by !== undefined) {
    const extra = (['within', 'of', 'over'] as const).filter((key) => raw[key] !== undefined);
    if (extra.length > 0) {
      throw new DagValidationError(
        `${at}: a deadline takes either 'by' or 'within' and 'of', not both ('${extra.join("', '")}' given with 'by')`,
      );
    }
    return { serialized: { reference: 'fixed_time', by: fixedTime(raw.by, at), callbacks: refs }, callbacks };
  }
  if (!(OFS as readonly unknown[]).includes(raw.of)) {
    throw new DagValidationError(
      `${at}: 'of' must be ${OFS.map((of) => `'${of}'`).join(', ')} (or give 'by' instead), got ${describe(raw.of)}`,
    );
  }
  if (raw.within === undefined) throw new DagValidationError(`${at}: 'within' is required with 'of'`);
  if (raw.of === 'average_duration') {
    return {
      serialized: {
        reference: 'average_duration',
        times: multiple(raw.within, at),
        over: over(raw.over, at),
        callbacks: refs,
      },
      callbacks,
    };
  }
  if (raw.over !== undefined) {
    throw new DagValidationError(`${at}: 'over' applies only to of: 'average_duration'`);
  }
  return {
    serialized: {
      reference: raw.of as 'logical_date' | 'queued_at',
      withinMs: within(raw.within, at),
      callbacks: refs,
    },
    callbacks,
  };
}

/** A date and time that exist as written (Date.parse would move '2026-02-30' to March 2). */
function onTheCalendar(iso: string): boolean {
  const [year, month, day, hour, minute, second] = [0, 5, 8, 11, 14, 17].map((at) =>
    Number(iso.slice(at, at === 0 ? 4 : at + 2)),
  ) as [number, number, number, number, number, number];
  const date = new Date(Date.UTC(2000, month - 1, day));
  date.setUTCFullYear(year);
  return (
    date.getUTCMonth() === month - 1 &&
    date.getUTCDate() === day &&
    hour < 24 &&
    minute < 60 &&
    (iso[16] !== ':' || second < 60)
  );
}

function fixedTime(value: unknown, at: string): string {
  const text = typeof value === 'string' ? value.trim() : undefined;
  const ms =
    value instanceof Date
      ? value.getTime()
      : text !== undefined && ISO_WITH_OFFSET.test(text) && onTheCalendar(text)
        ? Date.parse(text)
        : Number.NaN;
  if (Number.isNaN(ms)) {
    throw new DagValidationError(
      `${at}: 'by' must be an ISO-8601 date-time with an offset (e.g. '2026-03-01T06:00:00Z') or a Date, got ${describe(value)}`,
    );
  }
  const year = new Date(ms).getUTCFullYear();
  if (year < 1 || year > 9999) {
    throw new DagValidationError(
      `${at}: 'by' is in the year ${year}, outside 0001 to 9999 (a time in seconds given as milliseconds, or the reverse?)`,
    );
  }
  return new Date(ms).toISOString();
}

function within(value: unknown, at: string): number {
  if (typeof value === 'string' && MULTIPLE.test(value.trim())) {
    throw new DagValidationError(
      `${at}: a multiple ('${value}') is for of: 'average_duration'; give a duration`,
    );
  }
  let ms: number;
  try {
    ms = parseDuration(value as DurationInput, "'within'");
  } catch (error) {
    if (!(error instanceof InvalidDurationError)) throw error;
    throw new DagValidationError(`${at}: ${error.message}`, { cause: error });
  }
  if (ms <= 0) throw new DagValidationError(`${at}: 'within' must be greater than 0`);
  if (ms > DEADLINE_WITHIN_MAX_MS) {
    throw new DagValidationError(
      `${at}: 'within' is ${ms} ms, over the longest a deadline may be, ${DEADLINE_WITHIN_MAX_MS} ms (366 days)`,
    );
  }
  return ms;
}

function multiple(value: unknown, at: string): number {
  const match = typeof value === 'string' ? MULTIPLE.exec(value.trim()) : null;
  const times = match ? Number(match[1]) : Number.NaN;
  if (!(times > 0) || times > DEADLINE_TIMES_MAX) {
    throw new DagValidationError(
      `${at}: with of: 'average_duration', 'within' must be a multiple like '2x' or '1.5x', more than 0 and at most ${DEADLINE_TIMES_MAX}x, got ${describe(value)}`,
    );
  }
  return times;
}

function over(value: unknown, at: string): number {
  if (value === undefined) return DEADLINE_OVER_DEFAULT;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > DEADLINE_OVER_MAX) {
    throw new DagValidationError(
      `${at}: 'over' must be a whole number of runs from 1 to ${DEADLINE_OVER_MAX}, got ${describe(value)}`,
    );
  }
  return value;
}

function describe(value: unknown): string {
  return value === undefined ? 'nothing' : describeOptionValue(value);
}

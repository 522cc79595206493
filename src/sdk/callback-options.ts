import {
  CALLBACK_MAX_RETRY_DELAY_MS,
  type CallbackRef,
  DAG_CALLBACK_EVENTS,
  type DagCallbackEvent,
  TASK_CALLBACK_EVENTS,
  type TaskCallbackEvent,
} from '#core/callbacks.ts';
import { type DurationInput, parseDuration } from '#core/duration.ts';
import { InvalidDurationError } from '#core/errors.ts';
import type { CallbackContext } from './callback-context.ts';
import { DagValidationError } from './errors.ts';

/**
 * The authoring side of callbacks: the `onSuccess`, `onFailure`… options of tasks and DAGs, read
 * into the functions (kept for the worker) and their references (kept in the serialized DAG).
 */

/** A callback function; it may be async. What it returns is ignored; a throw fails the attempt. */
export type CallbackFunction = (ctx: CallbackContext) => unknown;

/** A callback function with how it runs; unset ones take the deployment's callback settings. */
export interface CallbackSpec {
  callback: CallbackFunction;
  /** Attempts after the first. */
  retries?: number;
  /** Seconds, or '30s', '5m'…, between attempts. */
  retryDelay?: DurationInput;
  /** An attempt running longer than this fails. */
  timeout?: DurationInput;
  /**
   * Where it runs: 'worker' (a worker slot, from the callbacks queue) or 'triggerer' (the
   * triggerer's event loop, many at once; for async functions that only wait on I/O). Default: an
   * async function where UPDRAFT_ASYNC_CALLBACKS_RUN_ON says (the triggerer unless set), any
   * other on a worker.
   */
  runOn?: 'worker' | 'triggerer';
}

/** What a callback option takes: a function, a `{ callback }`, or a list of them ([] is none). */
export type CallbackInput = CallbackFunction | CallbackSpec | readonly (CallbackFunction | CallbackSpec)[];

/** One callback as a built DAG keeps it: the function and its reference in the serialized DAG. */
export interface ResolvedCallback {
  readonly fn: CallbackFunction;
  readonly ref: CallbackRef;
}

/** A task's callbacks by event; an event without callbacks is absent. */
export type TaskCallbackLists = { [E in TaskCallbackEvent]?: readonly ResolvedCallback[] };
/** A DAG run's callbacks by event; an event without callbacks is absent. */
export type DagCallbackLists = { [E in DagCallbackEvent]?: readonly ResolvedCallback[] };

const SPEC_KEYS: readonly string[] = ['callback', 'retries', 'retryDelay', 'timeout', 'runOn'];
const EXPECTED = 'expected a function, { callback }, or an array of them';

/** The callbacks of every event in `options` (task or DAG options, or defaultArgs); `where` names the owner. */
export function resolveTaskCallbacks(options: object, where: string): TaskCallbackLists {
  return resolveEvents(TASK_CALLBACK_EVENTS, options, where);
}

/** The callbacks of a DAG run's events in the DAG options. */
export function resolveDagCallbacks(options: object, where: string): DagCallbackLists {
  return resolveEvents(DAG_CALLBACK_EVENTS, options, where);
}

/** The references of each event that has callbacks; undefined when none has, so nothing is serialized. */
export function callbackRefsOf<E extends string>(
  lists: { [K in E]?: readonly ResolvedCallback[] },
): { [K in E]?: CallbackRef[] } | undefined {
  const entries = Object.entries<readonly ResolvedCallback[] | undefined>(lists)
    .filter((entry): entry is [string, readonly ResolvedCallback[]] => (entry[1]?.length ?? 0) > 0)
    .map(([event, callbacks]) => [event, callbacks.map((callback) => ({ ...callback.ref }))]);
  return entries.length === 0 ? undefined : (Object.fromEntries(entries) as { [K in E]?: CallbackRef[] });
}

function resolveEvents<E extends string>(
  events: readonly E[],
  options: object,
  where: string,
): { [K in E]?: readonly ResolvedCallback[] } {
  const lists: { [K in E]?: readonly ResolvedCallback[] } = {};
  for (const event of events) {
    const input: unknown = Reflect.get(options, event);
    if (input === undefined) continue;
    const callbacks = resolveCallbackInput(input, where, event);
    if (callbacks.length > 0) lists[event] = callbacks;
  }
  return lists;
}

/** One option's callbacks (a function, a `{ callback }` or a list, at most CALLBACKS_PER_EVENT_MAX); `event` names the option. */
export function resolveCallbackInput(input: unknown, where: string, event: string): ResolvedCallback[] {
  if (Array.isArray(input)) {
    if (input.length > CALLBACKS_PER_EVENT_MAX) {
      throw new DagValidationError(
        `${where}: option '${event}' lists ${input.length} callbacks, over the limit of ${CALLBACKS_PER_EVENT_MAX} per event`,
      );
    }
    return input.map((item, index) => {
      const at = `${where}: option '${event}[${index}]'`;
      if (Array.isArray(item)) {
        throw new DagValidationError(`${at}: expected a function or { callback }, got an array`);
      }
      return resolveOne(item, at, 'expected a function or { callback }');
    });
  }
  return [resolveOne(input, `${where}: option '${event}'`, EXPECTED)];
}

/** Most retries of one callback, and its longest timeout: the bounds of the settings' defaults. */
export const CALLBACK_MAX_RETRIES = 100;
export const CALLBACK_MAX_TIMEOUT_MS = 900_000;
/** Most callbacks one DAG or task may declare for one event (each is owed on the owner's item). */
export const CALLBACKS_PER_EVENT_MAX = 20;

function resolveOne(input: unknown, where: string, expected: string): ResolvedCallback {
  if (typeof input === 'function') {
    return { fn: input as CallbackFunction, ref: refOf(input as CallbackFunction) };
  }
  if (typeof input !== 'object' || input === null) {
    throw new DagValidationError(`${where}: ${expected}, got ${describeOptionValue(input)}`);
  }
  const unknownKeys = Object.keys(input).filter((key) => !SPEC_KEYS.includes(key));
  if (unknownKeys.length > 0) {
    const keys = unknownKeys.map((key) => `'${key}'`).join(', ');
    throw new DagValidationError(
      `${where}: unknown key${unknownKeys.length > 1 ? 's' : ''} ${keys} (a callback takes callback, retries, retryDelay, timeout, runOn)`,
    );
  }
  const spec = input as Partial<Record<keyof CallbackSpec, unknown>>;
  if (typeof spec.callback !== 'function') {
    throw new DagValidationError(
      `${where}: 'callback' must be a function, got ${describeOptionValue(spec.callback)}`,
    );
  }
  const ref: CallbackRef = refOf(spec.callback as CallbackFunction);
  if (spec.runOn !== undefined) {
    if (spec.runOn !== 'worker' && spec.runOn !== 'triggerer') {
      throw new DagValidationError(
        `${where}: 'runOn' must be 'worker' or 'triggerer', got ${describeOptionValue(spec.runOn)}`,
      );
    }
    ref.runOn = spec.runOn;
  }
  if (spec.retries !== undefined) {
    if (
      typeof spec.retries !== 'number' ||
      !Number.isSafeInteger(spec.retries) ||
      spec.retries < 0 ||
      spec.retries > CALLBACK_MAX_RETRIES
    ) {
      throw new DagValidationError(
        `${where}: 'retries' must be an integer from 0 to ${CALLBACK_MAX_RETRIES}, got ${describeOptionValue(spec.retries)}`,
      );
    }
    ref.retries = spec.retries;
  }
  if (spec.retryDelay !== undefined) {
    const retryDelayMs = durationMs(spec.retryDelay, where, 'retryDelay');
    // A wait between attempts is at most a day anyway (the doubling stops there).
    if (!(retryDelayMs >= 0 && retryDelayMs <= CALLBACK_MAX_RETRY_DELAY_MS)) {
      throw new DagValidationError(
        `${where}: 'retryDelay' must be from 0 to ${CALLBACK_MAX_RETRY_DELAY_MS} ms (a day), got ${describeOptionValue(spec.retryDelay)}`,
      );
    }
    ref.retryDelayMs = retryDelayMs;
  }
  if (spec.timeout !== undefined) {
    const timeoutMs = durationMs(spec.timeout, where, 'timeout');
    if (timeoutMs <= 0) throw new DagValidationError(`${where}: 'timeout' must be greater than 0`);
    if (timeoutMs > CALLBACK_MAX_TIMEOUT_MS) {
      throw new DagValidationError(
        `${where}: 'timeout' is ${timeoutMs} ms, over the longest a callback attempt may run, ${CALLBACK_MAX_TIMEOUT_MS} ms (15 minutes)`,
      );
    }
    ref.timeoutMs = timeoutMs;
  }
  return { fn: spec.callback as CallbackFunction, ref };
}

function durationMs(value: unknown, where: string, key: string): number {
  try {
    return parseDuration(value as DurationInput, `${where} '${key}'`);
  } catch (error) {
    if (!(error instanceof InvalidDurationError)) throw error;
    throw new DagValidationError(error.message, { cause: error });
  }
}

function refOf(fn: CallbackFunction): CallbackRef {
  return isAsyncFunction(fn) ? { name: callbackNameOf(fn), async: true } : { name: callbackNameOf(fn) };
}

/** Whether `fn` was declared `async` (an async function or async arrow, not a function returning a promise). */
export function isAsyncFunction(fn: CallbackFunction): boolean {
  return Object.prototype.toString.call(fn) === '[object AsyncFunction]';
}

/** The name a reference keeps, checked when a worker resolves the callback again. */
export function callbackNameOf(fn: { name: string }): string {
  return fn.name || 'anonymous';
}

/** A value as an option error names it: `null`, `an array`, a JSON string, a number, or its type. */
export function describeOptionValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return typeof value;
}

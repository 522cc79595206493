import { NEXT_METHOD_PATTERN } from '#contracts/triggers.ts';
import { parseDuration } from '#core/duration.ts';
import { SdkError } from './errors.ts';
import { serialize } from './serde.ts';
import type { BaseTrigger, TriggerSpec } from './triggers/base.ts';

/**
 * Skip, fail and defer are signals, not ordinary errors: a task can return them (which no `catch`
 * in the task can swallow) or throw them (Airflow's AirflowSkipException / AirflowFailException /
 * TaskDeferred habit). The brand is a registered symbol so a signal is recognised even when the
 * DAG file loaded its own copy of this module.
 */
const SIGNAL_BRAND: unique symbol = Symbol.for('updraft.signal');

export type SignalKind = 'skip' | 'fail' | 'defer';
const SIGNAL_KINDS: readonly unknown[] = ['skip', 'fail', 'defer'] satisfies SignalKind[];

abstract class TaskSignal extends Error {
  readonly reason: string;

  constructor(reason: string) {
    super(reason);
    this.reason = reason;
  }
}

/** Ends the task as skipped; downstream tasks then follow their trigger rules. */
export class SkipSignal extends TaskSignal {
  override name = 'SkipSignal';
  readonly [SIGNAL_BRAND] = 'skip' as const;
}

/** Ends the task as failed without using its remaining retries. */
export class FailSignal extends TaskSignal {
  override name = 'FailSignal';
  readonly [SIGNAL_BRAND] = 'fail' as const;
}

export function skip(reason = 'skipped by the task'): SkipSignal {
  return new SkipSignal(reason);
}

export function fail(reason = 'failed by the task'): FailSignal {
  return new FailSignal(reason);
}

/** What a task asks for when it defers. */
export interface DeferRequest {
  /** What to wait for; it runs on a triggerer while the task holds no worker slot. */
  trigger: BaseTrigger<object>;
  /** The method the task resumes in (default 'executeComplete'); callables are called again. */
  method?: string;
  /** How long the wait may last: milliseconds, or a duration such as '30s', '5m', '1h'. Default: no limit. */
  timeout?: number | string | null;
  /** Handed to the resume method beside the event; serde-serializable. */
  kwargs?: Record<string, unknown>;
}

/** The task's defer() call broke a rule: the message says which one. */
export class DeferralError extends SdkError {
  override name = 'DeferralError';
}

/**
 * Suspends the task: its worker slot is freed, the trigger runs on a triggerer, and the task
 * resumes in `method` with the trigger's event. Everything in it is already checked and plain.
 */
export class DeferSignal extends TaskSignal {
  override name = 'DeferSignal';
  readonly [SIGNAL_BRAND] = 'defer' as const;
  readonly trigger: TriggerSpec;
  readonly method: string;
  /** Null: no deferral timeout. */
  readonly timeoutMs: number | null;
  readonly kwargs: Record<string, unknown>;

  constructor(deferral: {
    trigger: TriggerSpec;
    method: string;
    timeoutMs: number | null;
    kwargs: Record<string, unknown>;
  }) {
    super(`deferred on trigger ${deferral.trigger.name}, resuming in ${deferral.method}()`);
    this.trigger = deferral.trigger;
    this.method = deferral.method;
    this.timeoutMs = deferral.timeoutMs;
    this.kwargs = deferral.kwargs;
  }
}

export const DEFAULT_RESUME_METHOD = 'executeComplete';

/** Members every object has: resuming in one of them could not run task code. */
const OBJECT_MEMBERS = new Set(Object.getOwnPropertyNames(Object.prototype));

/**
 * Defers the task: `return defer({ trigger: new DateTimeTrigger({ moment }) })`. Checks the request
 * now, in the task, so a mistake fails the try where it was made: the trigger class has a
 * triggerName, the method is a resumable name other than `execute`, the timeout is positive, and
 * the trigger kwargs and the defer kwargs can be serialized.
 */
export function defer(request: DeferRequest): DeferSignal {
  if (typeof request !== 'object' || request === null) {
    throw new DeferralError('defer() takes an object: { trigger, method?, timeout?, kwargs? }');
  }
  const trigger = triggerSpecOf(request.trigger);
  const method = resumeMethodOf(request.method);
  const timeoutMs = timeoutMsOf(request.timeout);
  const kwargs = request.kwargs ?? {};
  if (typeof kwargs !== 'object' || kwargs === null || Array.isArray(kwargs)) {
    throw new DeferralError(`defer(): kwargs must be an object of named values, got ${describe(kwargs)}`);
  }
  checkSerializable(trigger.kwargs, `${trigger.name} kwargs`);
  checkSerializable(kwargs, 'kwargs');
  return new DeferSignal({ trigger, method, timeoutMs, kwargs: { ...kwargs } });
}

function triggerSpecOf(trigger: unknown): TriggerSpec {
  const serializeTrigger = (trigger as { serialize?: unknown } | null)?.serialize;
  if (typeof trigger !== 'object' || trigger === null || typeof serializeTrigger !== 'function') {
    throw new DeferralError(
      `defer(): trigger must be an instance of a BaseTrigger subclass, got ${describe(trigger)}`,
    );
  }
  const className = (trigger as { constructor?: { name?: string } }).constructor?.name || 'the trigger class';
  const triggerName: unknown = (trigger.constructor as { triggerName?: unknown }).triggerName;
  if (typeof triggerName !== 'string' || triggerName.trim() === '') {
    throw new DeferralError(
      `defer(): trigger class ${className} has no triggerName: give it \`static override readonly triggerName = 'myco.${className}'\` and registerTrigger(${className}) so a triggerer can find it`,
    );
  }
  const spec = serializeTrigger.call(trigger) as TriggerSpec;
  const { kwargs } = spec;
  if (typeof kwargs !== 'object' || kwargs === null || Array.isArray(kwargs)) {
    throw new DeferralError(`defer(): the kwargs of trigger ${triggerName} must be an object`);
  }
  return { ...spec, name: triggerName };
}

function resumeMethodOf(method: unknown): string {
  if (method === undefined) return DEFAULT_RESUME_METHOD;
  if (typeof method !== 'string' || !NEXT_METHOD_PATTERN.test(method) || OBJECT_MEMBERS.has(method)) {
    throw new DeferralError(
      `defer(): method ${JSON.stringify(method)} is not a method name the task can resume in (a name such as 'executeComplete')`,
    );
  }
  if (method === 'execute') {
    throw new DeferralError(
      "defer(): method 'execute' would start the task over; resume in another method, such as 'executeComplete'",
    );
  }
  return method;
}

function timeoutMsOf(timeout: unknown): number | null {
  if (timeout === undefined || timeout === null) return null;
  let ms: number;
  if (typeof timeout === 'number') ms = timeout;
  else if (typeof timeout === 'string') {
    try {
      ms = parseDuration(timeout, 'defer() timeout');
    } catch (error) {
      throw new DeferralError((error as Error).message, { cause: error });
    }
  } else {
    throw new DeferralError(
      `defer(): timeout must be milliseconds or a duration such as '30s', '5m', '1h', got ${describe(timeout)}`,
    );
  }
  if (!Number.isFinite(ms) || ms <= 0) {
    throw new DeferralError(`defer(): timeout must be positive, got ${JSON.stringify(timeout)}`);
  }
  // The wire format counts whole milliseconds; round up so a tiny timeout stays a timeout.
  return Math.ceil(ms);
}

function checkSerializable(value: unknown, root: string): void {
  try {
    serialize(value, { root });
  } catch (error) {
    throw new DeferralError(`defer(): ${(error as Error).message}`, { cause: error });
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'Object'}`;
  return typeof value;
}

/** The kind of signal `value` is, or null when it is not one. */
export function signalKindOf(value: unknown): SignalKind | null {
  if (typeof value !== 'object' || value === null) return null;
  const brand = (value as { [SIGNAL_BRAND]?: unknown })[SIGNAL_BRAND];
  return SIGNAL_KINDS.includes(brand) ? (brand as SignalKind) : null;
}

export function isSkipSignal(value: unknown): value is SkipSignal {
  return signalKindOf(value) === 'skip';
}

export function isFailSignal(value: unknown): value is FailSignal {
  return signalKindOf(value) === 'fail';
}

export function isDeferSignal(value: unknown): value is DeferSignal {
  return signalKindOf(value) === 'defer';
}

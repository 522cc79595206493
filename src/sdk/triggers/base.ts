import { triggerQueueName } from '#contracts/triggers.ts';
import type { TaskLogger } from '../context.ts';

/**
 * Triggers: small async watchers that run on the triggerer, many on one event loop, and fire
 * an event that resumes (or ends) a deferred task. A trigger is data plus code: its kwargs
 * travel as serde JSON text, and its code is found on the triggerer by its registered name.
 */

/**
 * What a trigger yields. `resume` (the default): the task resumes on a worker in its next method
 * with `payload` as the event. `success` / `failure`: the task ends there, without a worker
 * (Airflow's TaskSuccessEvent / TaskFailedEvent); a failure's payload is its message.
 */
export interface TriggerEvent {
  type?: 'resume' | 'success' | 'failure';
  payload: unknown;
}

/** A resume event with this payload. */
export function triggerEvent(payload: unknown): TriggerEvent {
  return { type: 'resume', payload };
}

/** Ends the deferred task as successful, without resuming it on a worker; `payload` becomes its XCom. */
export function taskSuccessEvent(payload: unknown = null): TriggerEvent {
  return { type: 'success', payload };
}

/** Ends the deferred task as failed (no retry), without resuming it on a worker. */
export function taskFailureEvent(message: string): TriggerEvent {
  return { type: 'failure', payload: message };
}

/** What the triggerer gives a running trigger. */
export interface TriggerRunContext {
  /** Lines kept in the trigger's log, beside its task instance's try. */
  readonly log: TaskLogger;
  /** Aborted when the trigger is no longer wanted (cancelled, timed out, the triggerer stops). */
  readonly signal: AbortSignal;
  /**
   * Resolves at `atMs` (epoch ms) or rejects when `signal` aborts. Backed by one timer structure
   * per triggerer, so very many sleeping triggers cost one timer. Use it instead of setTimeout.
   */
  sleepUntil(atMs: number): Promise<void>;
  /** Epoch ms; the triggerer's clock. */
  now(): number;
}

/** The serialized form of a trigger: its registered name and its kwargs. */
export interface TriggerSpec {
  name: string;
  kwargs: Record<string, unknown>;
  /** The trigger queue to run on; `default` when absent. */
  queue?: string;
}

/**
 * Base of every trigger. A subclass sets `static triggerName` (unique; registered with
 * `registerTrigger`), keeps everything it needs in `kwargs` (serde-serializable), and implements
 * `run` as an async generator: the first event it yields ends the wait. `cleanup` runs once
 * the trigger stops, however it stops.
 */
export abstract class BaseTrigger<K extends object = Record<string, unknown>> {
  static readonly triggerName: string = '';
  readonly kwargs: K;
  /** The trigger queue to run on; `default` when undefined. */
  queue: string | undefined;

  constructor(kwargs: K, options: { queue?: string } = {}) {
    this.kwargs = kwargs;
    if (options.queue !== undefined) {
      const checked = triggerQueueName.safeParse(options.queue);
      if (!checked.success) {
        throw new TypeError(
          `Trigger queue "${options.queue.slice(0, 200)}" is not usable: ${checked.error.issues[0]?.message} (1 to 200 characters, no '#')`,
        );
      }
    }
    this.queue = options.queue;
  }

  abstract run(ctx: TriggerRunContext): AsyncGenerator<TriggerEvent, void, void>;

  async cleanup(): Promise<void> {}

  /** The registered name and kwargs, as a worker hands them to the API. */
  serialize(): TriggerSpec {
    const name = (this.constructor as typeof BaseTrigger).triggerName;
    return {
      name,
      kwargs: { ...(this.kwargs as Record<string, unknown>) },
      ...(this.queue !== undefined ? { queue: this.queue } : {}),
    };
  }
}

export type TriggerClass = (new (
  kwargs: never,
  options?: { queue?: string },
) => BaseTrigger<object>) & {
  readonly triggerName: string;
};

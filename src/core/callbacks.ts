import * as z from 'zod';
import type { DagRunKey, TaskInstanceKey } from './models.ts';
import type { DagRunState, TaskInstanceState } from './states.ts';

/**
 * Callbacks: what a DAG or a task asks to run when something happens to it, as plain data. The
 * serialized DAG keeps only references (which owner, which event, which position); the code stays
 * in the DAG file and a worker resolves it there, as it resolves a task's callable.
 *
 * A callback becomes *owed* in the same conditional write as the state change that causes it (an
 * element of the owner's `owedCallbacks` set, see `src/engine/callbacks.ts`), and is then turned
 * into a callback item that workers run. The id of a callback is derived from what owes it, so the
 * same cause always names the same callback: it is the idempotency key.
 */

/** Events of a task that can run callbacks, as the authoring options name them. */
export const TASK_CALLBACK_EVENTS = ['onSuccess', 'onFailure', 'onRetry', 'onExecute', 'onSkipped'] as const;
export type TaskCallbackEvent = (typeof TASK_CALLBACK_EVENTS)[number];

/** Events of a DAG run that can run callbacks. */
export const DAG_CALLBACK_EVENTS = ['onSuccess', 'onFailure'] as const;
export type DagCallbackEvent = (typeof DAG_CALLBACK_EVENTS)[number];

/** The kinds of callback, one per event; the context a callback receives depends on its kind. */
export const CALLBACK_KINDS = [
  'dag_success',
  'dag_failure',
  'task_success',
  'task_failure',
  'task_retry',
  'task_execute',
  'task_skipped',
  // A deadline of the run passed before the run finished (see `core/deadlines.ts`).
  'deadline_missed',
] as const;
export type CallbackKind = (typeof CALLBACK_KINDS)[number];

export const TASK_EVENT_KINDS: Record<TaskCallbackEvent, CallbackKind> = {
  onSuccess: 'task_success',
  onFailure: 'task_failure',
  onRetry: 'task_retry',
  onExecute: 'task_execute',
  onSkipped: 'task_skipped',
};
export const DAG_EVENT_KINDS: Record<DagCallbackEvent, CallbackKind> = {
  onSuccess: 'dag_success',
  onFailure: 'dag_failure',
};

/** The DAG option a deadline's callbacks sit in: `deadline[<d>]` names the list of deadline d. */
export const DEADLINE_EVENT = 'deadline';

/**
 * The authoring event of a kind: how the DAG file names the callback list it sits in. A deadline's
 * list is one per deadline: `callbackEventOf` names it with the deadline's position.
 */
export function eventOfKind(kind: CallbackKind): { owner: 'dag' | 'task'; event: string } {
  if (kind === 'deadline_missed') return { owner: 'dag', event: DEADLINE_EVENT };
  for (const [event, k] of Object.entries(DAG_EVENT_KINDS)) if (k === kind) return { owner: 'dag', event };
  for (const [event, k] of Object.entries(TASK_EVENT_KINDS)) if (k === kind) return { owner: 'task', event };
  throw new Error(`unknown callback kind ${kind}`);
}

/** The callback list a callback item's function sits in: its kind's event, `deadline[<d>]` for a deadline's. */
export function callbackEventOf(callback: Pick<Callback, 'kind' | 'deadlineIndex'>): string {
  const { event } = eventOfKind(callback.kind);
  return callback.deadlineIndex === undefined ? event : `${event}[${callback.deadlineIndex}]`;
}

/** Why a task or run failed, as the failure callback's context names it. */
export const CALLBACK_ERROR_TYPES = [
  'task_error',
  'execution_timeout',
  'heartbeat_timeout',
  'deferral_timeout',
  'queued_timeout',
  'trigger_failure',
  'upstream',
  'dagrun_timeout',
] as const;
export type CallbackErrorType = (typeof CALLBACK_ERROR_TYPES)[number];

/** Longest `retryDelay` of a callback, and the longest wait between two attempts however many came before. */
export const CALLBACK_MAX_RETRY_DELAY_MS = 86_400_000;

/**
 * A reference to one callback function, kept at its position in its owner's list for its event
 * (the worker finds the function there): the function's name (checked at resolution, so a DAG
 * file edited since the run's version fails the callback clearly instead of running another
 * function), and how it runs when the author said so: retries after the first attempt, the delay
 * between attempts, and its timeout. Absent ones take the settings' defaults when it becomes owed
 * (UPDRAFT_CALLBACK_RETRIES, UPDRAFT_CALLBACK_RETRY_DELAY_MS, UPDRAFT_CALLBACK_EXECUTION_TIMEOUT_MS).
 */
export const callbackRefSchema = z.strictObject({
  name: z.string(),
  /** An async function (or an async notifier): it may run on a triggerer (see `placeOfCallback`). */
  async: z.literal(true).optional(),
  /** Where the author asked it to run; absent: by kind of function and UPDRAFT_ASYNC_CALLBACKS_RUN_ON. */
  runOn: z.enum(['worker', 'triggerer']).optional(),
  retries: z.number().int().nonnegative().optional(),
  retryDelayMs: z.number().int().nonnegative().optional(),
  timeoutMs: z.number().int().positive().optional(),
});
export type CallbackRef = z.infer<typeof callbackRefSchema>;

export const taskCallbacksSchema = z.strictObject(
  Object.fromEntries(
    TASK_CALLBACK_EVENTS.map((event) => [event, z.array(callbackRefSchema).min(1).optional()]),
  ) as {
    [E in TaskCallbackEvent]: z.ZodOptional<z.ZodArray<typeof callbackRefSchema>>;
  },
);
export type TaskCallbacks = z.infer<typeof taskCallbacksSchema>;

export const dagCallbacksSchema = z.strictObject(
  Object.fromEntries(
    DAG_CALLBACK_EVENTS.map((event) => [event, z.array(callbackRefSchema).min(1).optional()]),
  ) as {
    [E in DagCallbackEvent]: z.ZodOptional<z.ZodArray<typeof callbackRefSchema>>;
  },
);
export type DagCallbacks = z.infer<typeof dagCallbacksSchema>;

/**
 * One owed callback as an element of its owner's `owedCallbacks` string set: compact JSON with
 * everything the callback item is built from, so it survives later writes of the owner (the next
 * try clears `errorMessage`). `n` is the try for a task callback and the run's clear count for a
 * DAG callback; `i` the position in the owner's list for the kind.
 */
export const owedCallbackSchema = z.strictObject({
  k: z.enum(CALLBACK_KINDS),
  i: z.number().int().nonnegative(),
  n: z.number().int().nonnegative(),
  /** When it became owed (ISO-8601). */
  at: z.string(),
  /** The owner's error message (cut to OWED_ERROR_MAX_CHARS) and its type, for failure kinds. */
  e: z.string().optional(),
  t: z.enum(CALLBACK_ERROR_TYPES).optional(),
  /** For `deadline_missed`: the deadline's position in the DAG's `deadlines` (`i` is the callback's in its list). */
  d: z.number().int().nonnegative().optional(),
});
export type OwedCallback = z.infer<typeof owedCallbackSchema>;

/** An owner's error message is cut to this many characters in what it owes (an item is at most 400 KB). */
export const OWED_ERROR_MAX_CHARS = 2_000;

export function encodeOwed(owed: OwedCallback): string {
  return JSON.stringify(owed);
}

/** The owed element back; undefined for an element this version cannot read (it is dropped, logged). */
export function decodeOwed(text: string): OwedCallback | undefined {
  try {
    const parsed = owedCallbackSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** The callback owner: a task instance, or a DAG run (no task). */
export type CallbackOwner = DagRunKey & { taskId?: string; mapIndex?: number };

function owedList(
  refs: readonly CallbackRef[] | undefined,
  kind: CallbackKind,
  n: number,
  at: string,
  error?: { message?: string | null | undefined; type?: CallbackErrorType | undefined },
): OwedCallback[] {
  if (!refs) return [];
  const message = error?.message ?? undefined;
  return refs.map((_, i) => ({
    k: kind,
    i,
    n,
    at,
    ...(message === undefined ? {} : { e: message.slice(0, OWED_ERROR_MAX_CHARS) }),
    ...(error?.type === undefined ? {} : { t: error.type }),
  }));
}

/**
 * What a task instance owes when it moves into `to` at try `tryNumber`: success, a final failure,
 * a failure with a retry to come, a skip the task reported itself, and the start of a new try
 * (`newTry`; a try resuming after a deferral starts nothing new). Nothing for any other change.
 */
export function callbacksOwedOnTaskTransition(
  callbacks: TaskCallbacks | undefined,
  change: {
    to: TaskInstanceState;
    tryNumber: number;
    at: string;
    newTry?: boolean;
    errorMessage?: string | null | undefined;
    errorType?: CallbackErrorType | undefined;
  },
): OwedCallback[] {
  if (!callbacks) return [];
  const error = { message: change.errorMessage, type: change.errorType };
  switch (change.to) {
    case 'success':
      return owedList(callbacks.onSuccess, 'task_success', change.tryNumber, change.at);
    case 'failed':
      return owedList(callbacks.onFailure, 'task_failure', change.tryNumber, change.at, error);
    case 'up_for_retry':
      return owedList(callbacks.onRetry, 'task_retry', change.tryNumber, change.at, error);
    case 'skipped':
      return owedList(callbacks.onSkipped, 'task_skipped', change.tryNumber, change.at, {
        message: change.errorMessage,
      });
    case 'running':
      return change.newTry ? owedList(callbacks.onExecute, 'task_execute', change.tryNumber, change.at) : [];
    default:
      return [];
  }
}

/** What a run owes when it finishes in `to`; `clearCount` tells a run finishing again after a clear. */
export function callbacksOwedOnRunFinish(
  callbacks: DagCallbacks | undefined,
  change: {
    to: DagRunState;
    clearCount: number;
    at: string;
    errorMessage?: string | undefined;
    errorType?: CallbackErrorType | undefined;
  },
): OwedCallback[] {
  if (!callbacks) return [];
  if (change.to === 'success')
    return owedList(callbacks.onSuccess, 'dag_success', change.clearCount, change.at);
  if (change.to === 'failed') {
    return owedList(callbacks.onFailure, 'dag_failure', change.clearCount, change.at, {
      message: change.errorMessage,
      type: change.errorType ?? 'upstream',
    });
  }
  return [];
}

/** Where a callback runs: a worker from the `callbacks` queue, or a triggerer's event loop. */
export const CALLBACK_PLACES = ['worker', 'triggerer'] as const;
export type CallbackPlace = (typeof CALLBACK_PLACES)[number];

/**
 * Where a callback runs: where its author said (`runOn`), else an async function on the place
 * the deployment chooses for async callbacks (UPDRAFT_ASYNC_CALLBACKS_RUN_ON), else a worker.
 * Without a triggerer everything runs on workers.
 */
export function placeOfCallback(
  ref: Pick<CallbackRef, 'async' | 'runOn'>,
  deployment: { asyncCallbacksRunOn: CallbackPlace; triggererEnabled: boolean },
): CallbackPlace {
  if (!deployment.triggererEnabled) return 'worker';
  return ref.runOn ?? (ref.async ? deployment.asyncCallbacksRunOn : 'worker');
}

/** The states of a callback item. `queued` waits for a worker (again, after a failed attempt with attempts left). */
export const CALLBACK_STATES = ['queued', 'running', 'success', 'failed'] as const;
export type CallbackState = (typeof CALLBACK_STATES)[number];

/** A callback: one owed run of one callback function, with its attempts. */
export interface Callback {
  callbackId: string;
  kind: CallbackKind;
  dagId: string;
  runId: string;
  /** The run's DAG version: the worker resolves the function in that version's code. */
  dagVersion: string;
  fileloc: string;
  /** For task kinds: the task instance and the try that owes it. */
  taskId: string | null;
  mapIndex: number | null;
  tryNumber: number | null;
  /** The run's clear count when it owed a DAG callback. */
  clearCount: number | null;
  /** Position of the function in its owner's list for the kind, and its name. */
  index: number;
  name: string;
  /** For `deadline_missed`: which deadline of the run's DAG version (its callbacks are that deadline's list). */
  deadlineIndex?: number;
  /** Where it runs; absent on items written before callbacks could run on a triggerer (a worker). */
  place?: CallbackPlace;
  /** Attempts handed back unfinished by a stopping worker or triggerer (not counted as attempts). */
  handedBack?: number;
  state: CallbackState;
  /** Attempts begun (0 until the first start); `maxAttempts` counts the first. */
  attempt: number;
  maxAttempts: number;
  retryDelayMs: number;
  timeoutMs: number;
  /** The owner's error message and type, for failure kinds. */
  ownerError: string | null;
  ownerErrorType: CallbackErrorType | null;
  owedAt: string;
  queuedAt: string | null;
  /** Workloads sent for the current attempt. */
  queuedSends: number;
  /** Not started before this (a retry's delay). */
  notBefore: string | null;
  startDate: string | null;
  endDate: string | null;
  hostname: string | null;
  workerId: string | null;
  startId: string | null;
  reportId: string | null;
  /** The callback's own error (its last failed attempt). */
  errorMessage: string | null;
  revision: number;
}

export function callbackKeyOf(callback: Pick<Callback, 'dagId' | 'runId' | 'callbackId'>): CallbackKey {
  return { dagId: callback.dagId, runId: callback.runId, callbackId: callback.callbackId };
}

export interface CallbackKey extends DagRunKey {
  callbackId: string;
}

/** The owner of a task callback as a task instance key; undefined for a DAG callback. */
export function callbackTaskInstance(callback: Callback): TaskInstanceKey | undefined {
  if (callback.taskId === null) return undefined;
  return {
    dagId: callback.dagId,
    runId: callback.runId,
    taskId: callback.taskId,
    mapIndex: callback.mapIndex ?? -1,
  };
}

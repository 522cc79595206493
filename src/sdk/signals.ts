/**
 * Skip and fail are signals, not ordinary errors: a task can return them (which no `catch` in the
 * task can swallow) or throw them (Airflow's AirflowSkipException / AirflowFailException habit).
 * The brand is a registered symbol so a signal is recognised even when the DAG file loaded its own
 * copy of this module.
 */
const SIGNAL_BRAND: unique symbol = Symbol.for('updraft.signal');

export type SignalKind = 'skip' | 'fail';

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

/** The kind of signal `value` is, or null when it is not one. */
export function signalKindOf(value: unknown): SignalKind | null {
  if (typeof value !== 'object' || value === null) return null;
  const brand = (value as { [SIGNAL_BRAND]?: unknown })[SIGNAL_BRAND];
  return brand === 'skip' || brand === 'fail' ? brand : null;
}

export function isSkipSignal(value: unknown): value is SkipSignal {
  return signalKindOf(value) === 'skip';
}

export function isFailSignal(value: unknown): value is FailSignal {
  return signalKindOf(value) === 'fail';
}

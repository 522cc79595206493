import { parseDuration } from '#core/duration.ts';
import { SdkError } from '../errors.ts';

/** A trigger (or sensor) was given kwargs it cannot run with; the message names the trigger and the key. */
export class InvalidTriggerKwargsError extends SdkError {
  override name = 'InvalidTriggerKwargsError';
}

/**
 * Milliseconds from a number of milliseconds or a duration string ('30s', '5m', '1h30m'). Unlike
 * task options, a bare number here is milliseconds: deferral values are counted as the wire
 * counts them. Throws a RangeError whose message names `what`.
 */
export function millisecondsOf(value: unknown, what: string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(`${what} must be a number of milliseconds >= 0, got ${value}`);
    }
    return value;
  }
  if (typeof value === 'string') return parseDuration(value, what);
  throw new RangeError(
    `${what} must be milliseconds or a duration such as '30s', '5m', '1h', got ${value === null ? 'null' : typeof value}`,
  );
}

/** The epoch milliseconds of a Date or an ISO-8601 string; throws a RangeError naming `what`. */
export function epochMsOf(value: unknown, what: string): number {
  const ms =
    value instanceof Date ? value.getTime() : typeof value === 'string' ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) {
    throw new RangeError(`${what} must be a Date or an ISO-8601 date string, got ${JSON.stringify(value)}`);
  }
  return ms;
}

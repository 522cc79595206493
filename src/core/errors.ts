/** Base class of the errors raised by the pure core: bad schedules, durations and other authored values. */
export class CoreError extends Error {
  override name = 'CoreError';
}

/** A duration (retry delay, timeout…) that cannot be read. */
export class InvalidDurationError extends CoreError {
  override name = 'InvalidDurationError';
}

/** A schedule expression that cannot be read, or a time zone that does not exist. */
export class InvalidScheduleError extends CoreError {
  override name = 'InvalidScheduleError';
}

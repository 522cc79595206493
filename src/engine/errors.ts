/** Base class of the engine's domain errors; the API maps each kind to an HTTP status. */
export class EngineError extends Error {
  override name = 'EngineError';
}

/** The named DAG, run or task instance does not exist. */
export class NotFoundError extends EngineError {
  override name = 'NotFoundError';
}

/** The request is well-formed but breaks a rule (an unknown task id, a conf that is too large, …). */
export class InvalidRequestError extends EngineError {
  override name = 'InvalidRequestError';
}

/** The item is not in the state the request expects (a stale or duplicated report). */
export class StateConflictError extends EngineError {
  override name = 'StateConflictError';
}

/** A value exceeds a configured limit; the message names the value, its size and the setting. */
export class LimitExceededError extends EngineError {
  override name = 'LimitExceededError';
}

/** The request came too early: what it acts on is still being written. The caller retries shortly (503). */
export class NotReadyError extends EngineError {
  override name = 'NotReadyError';
}

/** Base class of the errors raised while defining, loading or running DAGs. */
export class SdkError extends Error {
  override name = 'SdkError';
}

/** A DAG definition breaks a rule (bad id, unknown upstream task, cycle, bad option…). */
export class DagValidationError extends SdkError {
  override name = 'DagValidationError';
}

/** A DAG file could not be imported: a syntax error, a throw at import time or an invalid DAG. */
export class DagImportError extends SdkError {
  override name = 'DagImportError';
  readonly file: string;

  constructor(file: string, message: string, options?: ErrorOptions) {
    super(`Cannot load DAG file ${file}: ${message}`, options);
    this.file = file;
  }
}

/** A serialized DAG that does not match the serialized format. */
export class SerializedDagError extends SdkError {
  override name = 'SerializedDagError';
}

/** A workload names a task the DAG (as currently loaded) does not define. */
export class TaskNotFoundError extends SdkError {
  override name = 'TaskNotFoundError';
}

/** A branch task returned something other than the ids of its direct downstream tasks. */
export class InvalidBranchError extends SdkError {
  override name = 'InvalidBranchError';
}

/** A task returned a value that JSON cannot keep as it is (a function, a Map, NaN…), so it has no XCom. */
export class ReturnValueError extends SdkError {
  override name = 'ReturnValueError';
}

/**
 * A task threw something that is not an Error (a plain object, a string): carried as an Error
 * whose message shows the value, so the try's error reads better than `[object Object]`.
 */
export class ThrownValueError extends SdkError {
  override name = 'ThrownValueError';
  readonly value: unknown;

  constructor(message: string, value: unknown) {
    super(message);
    this.value = value;
  }
}

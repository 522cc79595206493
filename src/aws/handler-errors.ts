/**
 * Errors of the Lambda handlers' own wiring (the engine's and the adapters' errors pass through
 * unchanged). Each names what was wrong and, where one exists, the setting or resource to fix.
 */
export class HandlerError extends Error {
  override name = 'HandlerError';
}

/** The function was invoked with an event it is not wired for (a wrong trigger on the function). */
export class UnrecognisedEventError extends HandlerError {
  override name = 'UnrecognisedEventError';
}

/** A secret held something the handler cannot use (empty, or not in the documented format). */
export class SecretFormatError extends HandlerError {
  override name = 'SecretFormatError';
}

/** The serialized DAGs bundled for the deploy-time registration are missing or malformed. */
export class SerializedDagsError extends HandlerError {
  override name = 'SerializedDagsError';
}

/** Signing a request to the Execution API's function URL failed (no region, no credentials). */
export class RequestSigningError extends HandlerError {
  override name = 'RequestSigningError';
}

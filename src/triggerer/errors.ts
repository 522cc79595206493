/** Errors of the triggerer. */
export class TriggererError extends Error {
  override name = 'TriggererError';
}

/** A job route was called before the triggerer registered its job. */
export class NotRegisteredError extends TriggererError {
  override name = 'NotRegisteredError';
}

/**
 * The Execution API refused to register the triggerer's job (a wrong or expired credential, an
 * invalid body): no retry can help, so the process stops with the reason.
 */
export class RegistrationRefusedError extends TriggererError {
  override name = 'RegistrationRefusedError';
}

/** The triggerer's configuration is unusable (a missing credential, a trigger module that fails to import). */
export class TriggererConfigurationError extends TriggererError {
  override name = 'TriggererConfigurationError';
}

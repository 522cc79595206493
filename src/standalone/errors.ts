/** Standalone cannot start or run as configured; the message says what to change. */
export class StandaloneError extends Error {
  override name = 'StandaloneError';
}

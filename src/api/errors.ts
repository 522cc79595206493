/** The caller is authenticated but its token does not grant access to what it names. */
export class ForbiddenError extends Error {
  override name = 'ForbiddenError';
}

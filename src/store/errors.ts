/** Base class of the store's errors. */
export class StoreError extends Error {
  override name = 'StoreError';
}

/** A conditional write found the item in another state than expected; nothing was written. */
export class ConditionFailedError extends StoreError {
  override name = 'ConditionFailedError';
}

/** A create found the item already there; nothing was written. */
export class AlreadyExistsError extends StoreError {
  override name = 'AlreadyExistsError';
}

/** The item a write or read names does not exist. */
export class NotFoundError extends StoreError {
  override name = 'NotFoundError';
}

/** A value is larger than the store allows for it. */
export class ItemTooLargeError extends StoreError {
  override name = 'ItemTooLargeError';
}

/** An id cannot be part of a key: empty, contains the `#` separator, or a map index out of range. */
export class InvalidKeyError extends StoreError {
  override name = 'InvalidKeyError';
}

/** A page cursor this store did not issue (malformed, forged or from another listing's keys). */
export class InvalidCursorError extends StoreError {
  override name = 'InvalidCursorError';
}

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

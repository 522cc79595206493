/** Base class of the errors of DAG code bundles. */
export class BundleError extends Error {
  override name = 'BundleError';
}

/** A file of a bundle changed between its import and its snapshot: the next parse takes it again. */
export class BundleChangedError extends BundleError {
  override name = 'BundleChangedError';
}

import { ConditionFailedError } from '#store/errors.ts';

/**
 * Runs a conditional write whose losing is expected (another scheduler or a late report got
 * there first): undefined when the condition failed, the written item otherwise.
 */
export async function ignoreConflict<T>(write: Promise<T>): Promise<T | undefined> {
  try {
    return await write;
  } catch (error) {
    if (error instanceof ConditionFailedError) return undefined;
    throw error;
  }
}

import type { TaskInstanceKey } from '#core/models.ts';

/**
 * Where task logs live: one text log per try of a task instance. Standalone keeps them as
 * files under `<home>/logs/`; the AWS deployment adds an S3 or CloudWatch Logs adapter.
 */
export interface LogStore {
  /** Appends text to a try's log; returns false once the log reached its size limit. */
  append(key: TaskInstanceKey, tryNumber: number, text: string): Promise<boolean>;
  read(key: TaskInstanceKey, tryNumber: number): Promise<string | undefined>;
}

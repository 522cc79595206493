import { PutCommand } from '@aws-sdk/lib-dynamodb';
import type { DagRunKey } from '#core/models.ts';
import type { RunSummary, SummaryEntry } from '#core/run-summary.ts';
import type { TaskInstanceState } from '#core/states.ts';
import { ConditionFailedError, ItemTooLargeError } from './errors.ts';
import { DYNAMODB_ITEM_MAX_BYTES, itemSizeBytes } from './item-size.ts';
import { ExpressionBuilder, type Item, isConditionalCheckFailed } from './items.ts';
import { runSummaryKey } from './keys.ts';
import type { TableRequests } from './requests.ts';

/**
 * Entries one UpdateItem sets at most: each adds a name and a value placeholder to the update
 * expression, which DynamoDB caps at 4 KB.
 */
export const SUMMARY_ENTRIES_PER_UPDATE = 100;

/**
 * A summary entry as stored: a pass rewrites the whole item, billed by its size, so each entry is
 * a short string, `<state code><try>` (`S1`: success at try 1), or, when it carries a retry time or
 * the tasks a branch followed, a list `[<state code><try>, <nextRetryAt or null>, <followTaskIds>?]`.
 * Entries written as maps (`{ state, tryNumber, ... }`) by earlier versions are read as well.
 */
const STATE_CODES: Readonly<Record<TaskInstanceState, string>> = {
  none: 'n',
  scheduled: 's',
  queued: 'q',
  running: 'r',
  success: 'S',
  failed: 'F',
  up_for_retry: 'R',
  upstream_failed: 'U',
  skipped: 'K',
  removed: 'X',
  deferred: 'D',
};
/** A try number as written: no sign, exponent or leading zero. */
const TRY_DIGITS = /^(0|[1-9][0-9]{0,8})$/;
const isTry = (value: number) => Number.isInteger(value) && value >= 0;
const STATES_BY_CODE: ReadonlyMap<string, TaskInstanceState> = new Map(
  Object.entries(STATE_CODES).map(([state, code]) => [code, state as TaskInstanceState]),
);

export function encodeSummaryEntry(entry: SummaryEntry): string | unknown[] {
  const head = `${STATE_CODES[entry.state]}${entry.tryNumber}`;
  if (entry.nextRetryAt === undefined && entry.followTaskIds === undefined) return head;
  return [
    head,
    entry.nextRetryAt ?? null,
    ...(entry.followTaskIds === undefined ? [] : [entry.followTaskIds]),
  ];
}

/** Undefined for an entry it cannot read: the summary is a cache, and a pass reads a TI it has no entry for. */
export function decodeSummaryEntry(stored: unknown): SummaryEntry | undefined {
  if (typeof stored === 'string') {
    const state = STATES_BY_CODE.get(stored.slice(0, 1));
    const digits = stored.slice(1);
    return state !== undefined && TRY_DIGITS.test(digits) ? { state, tryNumber: Number(digits) } : undefined;
  }
  let head: SummaryEntry | undefined;
  let nextRetryAt: unknown;
  let followTaskIds: unknown;
  if (Array.isArray(stored)) {
    if (stored.length > 3) return undefined;
    head = decodeSummaryEntry(stored[0]);
    [, nextRetryAt, followTaskIds] = stored as [unknown, unknown, unknown];
  } else if (typeof stored === 'object' && stored !== null) {
    const legacy = stored as Record<string, unknown>;
    const tryNumber = Number(legacy.tryNumber ?? 0);
    if (typeof legacy.state === 'string' && Object.hasOwn(STATE_CODES, legacy.state) && isTry(tryNumber))
      head = { state: legacy.state as TaskInstanceState, tryNumber };
    ({ nextRetryAt, followTaskIds } = legacy);
  }
  // Anything off the format is left out: a wrong follow list would skip the wrong tasks.
  if (head === undefined) return undefined;
  if (nextRetryAt !== undefined && nextRetryAt !== null && typeof nextRetryAt !== 'string') return undefined;
  if (
    followTaskIds !== undefined &&
    !(Array.isArray(followTaskIds) && followTaskIds.every((taskId) => typeof taskId === 'string'))
  )
    return undefined;
  return {
    ...head,
    ...(typeof nextRetryAt === 'string' ? { nextRetryAt } : {}),
    ...(followTaskIds === undefined ? {} : { followTaskIds: [...(followTaskIds as string[])] }),
  };
}

export function runSummaryToItem(key: DagRunKey, summary: RunSummary): Item {
  return {
    ...runSummaryKey(key),
    clearCount: summary.clearCount,
    version: summary.version,
    tasks: Object.fromEntries(
      Object.entries(summary.tasks).map(([taskId, entry]) => [taskId, encodeSummaryEntry(entry)]),
    ),
  };
}

export function itemToRunSummary(item: Item): RunSummary {
  const tasks: Record<string, SummaryEntry> = {};
  for (const [taskId, stored] of Object.entries((item.tasks ?? {}) as Record<string, unknown>)) {
    const entry = decodeSummaryEntry(stored);
    if (entry !== undefined) tasks[taskId] = entry;
  }
  return {
    clearCount: Number(item.clearCount ?? 0),
    version: Number(item.version ?? 0),
    tasks,
  };
}

/** The per-task state summary of each run: one item in the run partition (see `#core/run-summary.ts`). */
export class DynamoRunSummaryStore {
  readonly #table: TableRequests;

  constructor(table: TableRequests) {
    this.#table = table;
  }

  /**
   * Writes a whole summary unless one for the same or a later clear is stored: a rebuild from an
   * older read never replaces a newer summary. Tells whether it was written.
   */
  async putRunSummary(key: DagRunKey, summary: RunSummary): Promise<boolean> {
    const item = { ...runSummaryToItem(key, summary), ...this.#table.expiry() };
    const bytes = itemSizeBytes(item);
    if (bytes > DYNAMODB_ITEM_MAX_BYTES) {
      throw new ItemTooLargeError(
        `the task state summary of DAG run ${key.dagId}/${key.runId} (${Object.keys(summary.tasks).length} tasks) ` +
          `is ${bytes} bytes, over DynamoDB's item limit of ${DYNAMODB_ITEM_MAX_BYTES} bytes`,
      );
    }
    try {
      await this.#table.client.send(
        new PutCommand({
          TableName: this.#table.tableName,
          Item: item,
          ConditionExpression: 'attribute_not_exists(#pk) OR #clearCount < :clearCount',
          ExpressionAttributeNames: { '#pk': 'pk', '#clearCount': 'clearCount' },
          ExpressionAttributeValues: { ':clearCount': summary.clearCount },
        }),
      );
      return true;
    } catch (error) {
      if (isConditionalCheckFailed(error)) return false;
      throw error;
    }
  }

  /**
   * Sets the given entries, in as few UpdateItems as the expression limit allows, each conditional
   * on the summary still being the one read (`clearCount` and `version`) and bumping the version.
   * False when another write or a clear came first (the rest is then not written).
   */
  async updateRunSummary(
    key: DagRunKey,
    read: { clearCount: number; version: number },
    entries: Record<string, SummaryEntry>,
  ): Promise<boolean> {
    const taskIds = Object.keys(entries);
    let version = read.version;
    for (let start = 0; start < taskIds.length; start += SUMMARY_ENTRIES_PER_UPDATE) {
      const expression = new ExpressionBuilder();
      const tasks = expression.name('tasks');
      const assignments = taskIds
        .slice(start, start + SUMMARY_ENTRIES_PER_UPDATE)
        .map(
          (taskId) =>
            `${tasks}.${expression.name(taskId)} = ${expression.value(encodeSummaryEntry(entries[taskId] as SummaryEntry))}`,
        );
      for (const [name, value] of Object.entries({ ...this.#table.expiry(), version: version + 1 }))
        assignments.push(expression.assign(name, value));
      const versionName = expression.name('version');
      const sameVersion = `${versionName} = ${expression.value(version)}`;
      try {
        await this.#table.conditionalUpdate(
          { Key: runSummaryKey(key), UpdateExpression: `SET ${assignments.join(', ')}` },
          expression,
          [
            expression.equals('clearCount', read.clearCount),
            version === 0 ? `(attribute_not_exists(${versionName}) OR ${sameVersion})` : sameVersion,
          ],
          (error) =>
            new ConditionFailedError(
              `the task state summary of ${key.dagId}/${key.runId} was written or cleared since it was read`,
              { cause: error },
            ),
        );
      } catch (error) {
        if (error instanceof ConditionFailedError) return false;
        throw error;
      }
      version += 1;
    }
    return true;
  }
}

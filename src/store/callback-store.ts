import type { QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import { QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Callback, CallbackKey, CallbackState } from '#core/callbacks.ts';
import type { DagRun, DagRunKey, TaskInstance } from '#core/models.ts';
import { ConditionFailedError, StoreError } from './errors.ts';
import {
  describeStoredItem,
  ExpressionBuilder,
  type Item,
  isConditionalCheckFailed,
  itemToDagRun,
  itemToTaskInstance,
  withoutKeyAttributes,
} from './items.ts';
import {
  ACTIVE_RUNS_INDEX,
  CALLBACK_SORT_PREFIX,
  CALLBACKS_DUE_PARTITION,
  CALLBACKS_OWED_PARTITION,
  CALLBACKS_TRIGGERER_DUE_PARTITION,
  CALLBACKS_TRIGGERER_PARTITION,
  type CallbackIndex,
  callbackDueKey,
  callbackItemKey,
  callbacksPartition,
  GSI1_PARTITION_KEY,
  GSI1_SORT_KEY,
  GSI2_PARTITION_KEY,
  GSI2_SORT_KEY,
  type ItemKey,
  OWED_CALLBACKS_ATTRIBUTE,
  RUN_SORT_KEY,
  RUNS_BY_LOGICAL_DATE_INDEX,
} from './keys.ts';
import { encodeCursor, queryPage } from './pagination.ts';
import type { CallbackExpectation, CallbackStore, OwedOwner, Page, PageRequest } from './port.ts';
import type { TableRequests } from './requests.ts';

export function callbackToItem(callback: Callback, dueAt: string | null, index?: CallbackIndex): Item {
  return {
    ...callbackItemKey(callback),
    ...(dueAt === null ? {} : callbackDueKey(callback.callbackId, dueAt, index)),
    ...callback,
  };
}

export function itemToCallback(item: Item): Callback {
  return withoutKeyAttributes(item) as unknown as Callback;
}

/**
 * Callback items (in a partition per run, `CALLBACKS#<dag>#<run>`), the due index over those not
 * final (GSI1 `CALLBACKS_DUE`), and the owed sets of their owners (task instances and runs,
 * indexed in GSI2 `CALLBACKS_OWED` while they hold any). See `src/engine/callbacks.ts`.
 */
export class DynamoCallbackStore implements CallbackStore {
  readonly #table: TableRequests;

  constructor(table: TableRequests) {
    this.#table = table;
  }

  async putCallback(callback: Callback, dueAt: string | null, index?: CallbackIndex): Promise<boolean> {
    return this.#table.putIfAbsent({ ...callbackToItem(callback, dueAt, index), ...this.#table.expiry() });
  }

  async getCallback(key: CallbackKey): Promise<Callback | undefined> {
    const item = await this.#table.get(callbackItemKey(key));
    return item === undefined ? undefined : itemToCallback(item);
  }

  async listCallbacks(run: DagRunKey, page: PageRequest): Promise<Page<Callback>> {
    const expression = new ExpressionBuilder();
    const result = await queryPage(
      this.#table.client,
      this.#table.partitionQuery(expression, callbacksPartition(run), CALLBACK_SORT_PREFIX),
      page,
    );
    return { ...result, items: result.items.map(itemToCallback) };
  }

  async listDueCallbacks(now: string, limit: number): Promise<Callback[]> {
    const [workers, triggerers] = await Promise.all([
      this.#listIndexed(CALLBACKS_DUE_PARTITION, now, limit),
      this.#listIndexed(CALLBACKS_TRIGGERER_DUE_PARTITION, now, limit),
    ]);
    return [...workers, ...triggerers];
  }

  listClaimableCallbacks(now: string, limit: number): Promise<Callback[]> {
    return this.#listIndexed(CALLBACKS_TRIGGERER_PARTITION, now, limit);
  }

  async countTriggererCallbacks(now: string, cap: number): Promise<number> {
    const [claimable, held] = await Promise.all([
      this.#count(CALLBACKS_TRIGGERER_PARTITION, cap, now),
      this.#count(CALLBACKS_TRIGGERER_DUE_PARTITION, cap),
    ]);
    return Math.min(cap, claimable + held);
  }

  /** Entries of a GSI1 partition (those due by `upTo` when given), counted up to `cap`. */
  async #count(partition: string, cap: number, upTo?: string): Promise<number> {
    const expression = new ExpressionBuilder();
    const key = expression.equals(GSI1_PARTITION_KEY, partition);
    const output = await this.#table.client.send(
      new QueryCommand({
        TableName: this.#table.tableName,
        IndexName: RUNS_BY_LOGICAL_DATE_INDEX,
        KeyConditionExpression:
          upTo === undefined
            ? key
            : `${key} AND ${expression.name(GSI1_SORT_KEY)} <= ${expression.value(`${upTo}#~`)}`,
        Select: 'COUNT',
        Limit: cap,
        ...expression.attributes(),
      }),
    );
    return output.Count ?? 0;
  }

  async #listIndexed(partition: string, now: string, limit: number): Promise<Callback[]> {
    const expression = new ExpressionBuilder();
    const input: QueryCommandInput = {
      TableName: this.#table.tableName,
      IndexName: RUNS_BY_LOGICAL_DATE_INDEX,
      KeyConditionExpression: `${expression.equals(GSI1_PARTITION_KEY, partition)} AND ${expression.name(GSI1_SORT_KEY)} <= ${expression.value(`${now}#~`)}`,
      ScanIndexForward: true,
      ...expression.attributes(),
    };
    // Up to `limit` entries, over as many pages as that takes (a page ends at 1 MB).
    const items: Record<string, unknown>[] = [];
    let cursor: string | undefined;
    do {
      const page = await queryPage(this.#table.client, input, {
        limit: limit - items.length,
        ...(cursor === undefined ? {} : { cursor }),
      });
      items.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor !== undefined && items.length < limit);
    return items.map(itemToCallback);
  }

  /** The cursor of `listCallbacks` that resumes right after this callback. */
  callbacksCursorAfter(key: CallbackKey): string {
    return encodeCursor({ ...callbackItemKey(key) });
  }

  async transitionCallback(
    key: CallbackKey,
    expected: CallbackExpectation,
    changes: Partial<Omit<Callback, 'callbackId' | 'dagId' | 'runId' | 'revision'>>,
    dueAt: string | null,
    index?: CallbackIndex,
  ): Promise<Callback> {
    const states: readonly CallbackState[] =
      typeof expected.state === 'string' ? [expected.state] : expected.state;
    if (states.length === 0) throw new StoreError('transitionCallback needs at least one expected state');
    const expression = new ExpressionBuilder();
    const conditions = [expression.exists('pk'), expression.oneOf('state', states)];
    if (expected.attempt !== undefined) conditions.push(expression.equals('attempt', expected.attempt));
    if (expected.revision !== undefined) conditions.push(expression.equals('revision', expected.revision));
    const due = dueAt === null ? {} : callbackDueKey(key.callbackId, dueAt, index);
    const remove = dueAt === null ? [GSI1_PARTITION_KEY, GSI1_SORT_KEY] : [];
    const item = await this.#table.conditionalUpdate(
      {
        Key: callbackItemKey(key),
        UpdateExpression: expression.update(changes, { ...due, ...this.#table.expiry() }, remove),
      },
      expression,
      conditions,
      (error) =>
        new ConditionFailedError(
          `callback ${key.callbackId} of ${key.dagId}/${key.runId} was not updated: it does not exist or is not ${states.join(' | ')}` +
            `${expected.attempt === undefined ? '' : ` at attempt ${expected.attempt}`}${describeStoredItem(error)}`,
          { cause: error },
        ),
    );
    return itemToCallback(item);
  }

  async settleOwed(owner: ItemKey, elements: readonly string[]): Promise<void> {
    if (elements.length > 0) {
      const expression = new ExpressionBuilder();
      try {
        const output = await this.#table.client.send(
          new UpdateCommand({
            TableName: this.#table.tableName,
            Key: owner,
            UpdateExpression: `DELETE ${expression.name(OWED_CALLBACKS_ATTRIBUTE)} ${expression.value(new Set(elements))}`,
            ConditionExpression: expression.exists('pk'),
            ReturnValues: 'ALL_NEW',
            ...expression.attributes(),
          }),
        );
        const left = output.Attributes?.[OWED_CALLBACKS_ATTRIBUTE];
        if (left instanceof Set && left.size > 0) return;
      } catch (error) {
        // The owner is gone (expired with its run): nothing is left to settle.
        if (isConditionalCheckFailed(error)) return;
        throw error;
      }
    }
    await this.#leaveOwedIndex(owner);
  }

  /** Out of the owed index once nothing is owed (a run back in the active-runs index stays there). */
  async #leaveOwedIndex(owner: ItemKey): Promise<void> {
    const expression = new ExpressionBuilder();
    try {
      await this.#table.client.send(
        new UpdateCommand({
          TableName: this.#table.tableName,
          Key: owner,
          UpdateExpression: `REMOVE ${expression.name(GSI2_PARTITION_KEY)}, ${expression.name(GSI2_SORT_KEY)}`,
          ConditionExpression: `${expression.exists('pk')} AND ${expression.equals(GSI2_PARTITION_KEY, CALLBACKS_OWED_PARTITION)} AND attribute_not_exists(${expression.name(OWED_CALLBACKS_ATTRIBUTE)})`,
          ...expression.attributes(),
        }),
      );
    } catch (error) {
      if (!isConditionalCheckFailed(error)) throw error;
    }
  }

  async listOwedOwners(before: string, limit: number): Promise<ItemKey[]> {
    const expression = new ExpressionBuilder();
    const input: QueryCommandInput = {
      TableName: this.#table.tableName,
      IndexName: ACTIVE_RUNS_INDEX,
      KeyConditionExpression: `${expression.equals(GSI2_PARTITION_KEY, CALLBACKS_OWED_PARTITION)} AND ${expression.name(GSI2_SORT_KEY)} < ${expression.value(before)}`,
      ScanIndexForward: true,
      ...expression.attributes(),
    };
    const result = await queryPage(this.#table.client, input, { limit });
    return result.items.map((item) => ({ pk: String(item.pk), sk: String(item.sk) }));
  }

  async getOwedOwner(owner: ItemKey): Promise<OwedOwner | undefined> {
    const item = await this.#table.get(owner);
    if (item === undefined) return undefined;
    if (owner.sk === RUN_SORT_KEY) return { kind: 'run', itemKey: owner, run: itemToDagRun(item) as DagRun };
    return { kind: 'task_instance', itemKey: owner, ti: itemToTaskInstance(item) as TaskInstance };
  }
}

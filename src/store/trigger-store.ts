import { DeleteCommand, QueryCommand, type QueryCommandInput, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { mapConcurrently } from '#core/concurrency.ts';
import type { Trigger } from '#core/models.ts';
import { batchGetAll, batchWriteAll } from './batch.ts';
import { ConditionFailedError, StoreError } from './errors.ts';
import { ExpressionBuilder, type Item, isConditionalCheckFailed, withoutKeyAttributes } from './items.ts';
import {
  assertKeySegment,
  GSI1_PARTITION_KEY,
  GSI1_SORT_KEY,
  jobTriggersPartition,
  TRIGGER_QUEUE_PARTITION_ATTRIBUTE,
  TRIGGER_SORT_PREFIX,
  TRIGGERS_BY_HOLDER_INDEX,
  TRIGGERS_PARTITION,
  triggerIndexSortKey,
  triggerKey,
  unclaimedTriggersPartition,
} from './keys.ts';
import { queryPage } from './pagination.ts';
import type { Page, PageRequest, TriggerStore } from './port.ts';
import type { TableRequests } from './requests.ts';

/** Queues read at once by `listUnclaimedTriggers`: a triggerer serves a handful. */
const QUEUE_QUERY_CONCURRENCY = 4;

export function triggerToItem(trigger: Trigger): Item {
  const queuePartition = unclaimedTriggersPartition(trigger.queue);
  return {
    ...triggerKey(trigger.triggerId),
    [GSI1_PARTITION_KEY]: trigger.jobId === null ? queuePartition : jobTriggersPartition(trigger.jobId),
    [GSI1_SORT_KEY]: triggerIndexSortKey(trigger),
    [TRIGGER_QUEUE_PARTITION_ATTRIBUTE]: queuePartition,
    ...trigger,
  };
}

export function itemToTrigger(item: Item): Trigger {
  const { [TRIGGER_QUEUE_PARTITION_ATTRIBUTE]: _queuePartition, ...model } = withoutKeyAttributes(item);
  return model as unknown as Trigger;
}

/** The holder DynamoDB returns with a failed condition (AWS only; the embedded server returns none). */
function describeHolder(error: unknown): string {
  const item = (error as { Item?: Record<string, { S?: string; NULL?: boolean }> }).Item;
  if (item === undefined) return '';
  const jobId = item.jobId?.S;
  return jobId === undefined ? '; stored: unclaimed' : `; stored: held by job '${jobId}'`;
}

function describeExpectedHolder(jobId: string | null): string {
  return jobId === null ? 'unclaimed' : `held by job '${jobId}'`;
}

/**
 * Triggers (ADR.md, "Triggers and triggerer jobs"): one partition `TRIGGERS`, and GSI1 as a
 * sparse index by holder. A claim, a takeover and a release are each one conditional UpdateItem
 * that moves the trigger between the queue's and the job's index partition.
 */
export class DynamoTriggerStore implements TriggerStore {
  readonly #table: TableRequests;

  constructor(table: TableRequests) {
    this.#table = table;
  }

  async putTrigger(trigger: Trigger): Promise<void> {
    // The same deferral stored again (a retried report) keeps the stored trigger and its claim.
    await this.#table.putIfAbsent(triggerToItem(trigger));
  }

  async getTrigger(triggerId: string): Promise<Trigger | undefined> {
    const item = await this.#table.get(triggerKey(triggerId));
    return item === undefined ? undefined : itemToTrigger(item);
  }

  async getTriggers(triggerIds: readonly string[]): Promise<Trigger[]> {
    const items = await batchGetAll(
      this.#table.client,
      this.#table.tableName,
      triggerIds.map((triggerId) => triggerKey(triggerId)),
    );
    const byId = new Map(items.map((item) => [String(item.triggerId), itemToTrigger(item)]));
    // In the order asked for, each once (BatchGetItem answers in any order).
    return [...new Set(triggerIds)].flatMap((triggerId) => byId.get(triggerId) ?? []);
  }

  async deleteTrigger(triggerId: string, expectedJobId?: string | null): Promise<void> {
    const expression = new ExpressionBuilder();
    const condition = expectedJobId === undefined ? undefined : this.#heldBy(expression, expectedJobId);
    try {
      await this.#table.client.send(
        new DeleteCommand({
          TableName: this.#table.tableName,
          Key: triggerKey(triggerId),
          ...(condition === undefined ? {} : { ConditionExpression: condition }),
          ...expression.attributes(),
        }),
      );
    } catch (error) {
      // Gone already, or held by another job: either way not this caller's to delete.
      if (!isConditionalCheckFailed(error)) throw error;
    }
  }

  async listUnclaimedTriggers(queues: readonly string[], limit: number): Promise<Trigger[]> {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new StoreError(`trigger limit ${limit} is not a positive integer`);
    }
    const partitions = [...new Set(queues)].map((queue) => unclaimedTriggersPartition(queue));
    const perQueue = await mapConcurrently(partitions, QUEUE_QUERY_CONCURRENCY, (partition) =>
      this.#oldestOf(partition, limit),
    );
    return perQueue
      .flat()
      .sort((a, b) => compare(a.createdAt, b.createdAt) || compare(a.triggerId, b.triggerId))
      .slice(0, limit);
  }

  async listTriggersOfJob(jobId: string, page: PageRequest): Promise<Page<Trigger>> {
    const result = await queryPage(this.#table.client, this.#indexQuery(jobTriggersPartition(jobId)), page);
    return { ...result, items: result.items.map(itemToTrigger) };
  }

  async listTriggers(page: PageRequest): Promise<Page<Trigger>> {
    const result = await queryPage(
      this.#table.client,
      this.#table.partitionQuery(new ExpressionBuilder(), TRIGGERS_PARTITION, TRIGGER_SORT_PREFIX),
      page,
    );
    return { ...result, items: result.items.map(itemToTrigger) };
  }

  async countTriggers(cap: number): Promise<number> {
    if (!Number.isInteger(cap) || cap < 1)
      throw new StoreError(`trigger count cap ${cap} is not a positive integer`);
    const output = await this.#table.client.send(
      new QueryCommand({
        ...this.#table.partitionQuery(new ExpressionBuilder(), TRIGGERS_PARTITION, TRIGGER_SORT_PREFIX),
        Select: 'COUNT',
        Limit: cap,
      }),
    );
    return Math.min(cap, output.Count ?? 0);
  }

  async claimTrigger(
    triggerId: string,
    expectedJobId: string | null,
    jobId: string,
    claimedAt: string,
    takeovers?: number,
  ): Promise<Trigger> {
    const key = triggerKey(triggerId);
    const expression = new ExpressionBuilder();
    // attribute_exists first: an update of a missing item would otherwise create one.
    const conditions = [expression.exists('pk'), this.#heldBy(expression, expectedJobId)];
    const item = await this.#table.conditionalUpdate(
      {
        Key: key,
        UpdateExpression: expression.update(
          { jobId, claimedAt, ...(takeovers !== undefined ? { takeovers } : {}) },
          { [GSI1_PARTITION_KEY]: jobTriggersPartition(jobId) },
        ),
      },
      expression,
      conditions,
      (error) =>
        new ConditionFailedError(
          `trigger '${triggerId}' was not claimed by job '${jobId}': it does not exist or is not ` +
            `${describeExpectedHolder(expectedJobId)}${describeHolder(error)}`,
          { cause: error },
        ),
    );
    return itemToTrigger(item);
  }

  async releaseTrigger(triggerId: string, jobId: string): Promise<void> {
    const key = triggerKey(triggerId);
    const expression = new ExpressionBuilder();
    const revision = expression.name('revision');
    // The queue's partition is copied from the item, so the release needs no read of the queue.
    const updates = [
      expression.assign('jobId', null),
      expression.assign('claimedAt', null),
      `${expression.name(GSI1_PARTITION_KEY)} = ${expression.name(TRIGGER_QUEUE_PARTITION_ATTRIBUTE)}`,
      `${revision} = ${revision} + ${expression.value(1)}`,
    ];
    const condition = this.#heldBy(expression, jobId);
    try {
      await this.#table.client.send(
        new UpdateCommand({
          TableName: this.#table.tableName,
          Key: key,
          UpdateExpression: `SET ${updates.join(', ')}`,
          ConditionExpression: condition,
          ...expression.attributes(),
        }),
      );
    } catch (error) {
      // Gone, or claimed by another job since: a stale holder leaves it as it is.
      if (!isConditionalCheckFailed(error)) throw error;
    }
  }

  async deleteTriggers(triggerIds: readonly string[]): Promise<void> {
    await batchWriteAll(
      this.#table.client,
      this.#table.tableName,
      [...new Set(triggerIds)].map((triggerId) => ({ DeleteRequest: { Key: triggerKey(triggerId) } })),
    );
  }

  /** The condition that the trigger is held by `jobId` (null: unclaimed, which a missing item also is). */
  #heldBy(expression: ExpressionBuilder, jobId: string | null): string {
    if (jobId === null) {
      const name = expression.name('jobId');
      return `(attribute_not_exists(${name}) OR ${name} = ${expression.value(null)})`;
    }
    assertKeySegment('job id', jobId);
    return expression.equals('jobId', jobId);
  }

  /** Up to `limit` triggers of one GSI1 partition, oldest first (every page until then). */
  async #oldestOf(partition: string, limit: number): Promise<Trigger[]> {
    const triggers: Trigger[] = [];
    let cursor: string | undefined;
    do {
      const page = await queryPage(this.#table.client, this.#indexQuery(partition), {
        limit: limit - triggers.length,
        cursor,
      });
      triggers.push(...page.items.map(itemToTrigger));
      cursor = page.nextCursor;
    } while (cursor !== undefined && triggers.length < limit);
    return triggers;
  }

  #indexQuery(partition: string): QueryCommandInput {
    const expression = new ExpressionBuilder();
    return {
      TableName: this.#table.tableName,
      IndexName: TRIGGERS_BY_HOLDER_INDEX,
      KeyConditionExpression: expression.equals(GSI1_PARTITION_KEY, partition),
      ScanIndexForward: true,
      ...expression.attributes(),
    };
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

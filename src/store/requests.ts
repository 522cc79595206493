import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  type QueryCommandInput,
  UpdateCommand,
  type UpdateCommandInput,
} from '@aws-sdk/lib-dynamodb';
import type { StoreError } from './errors.ts';
import { type ExpressionBuilder, type Item, isConditionalCheckFailed } from './items.ts';
import { type ItemKey, TTL_ATTRIBUTE } from './keys.ts';

/** The single-item requests of the adapter, bound to one table. */
export class TableRequests {
  readonly client: DynamoDBDocumentClient;
  readonly tableName: string;
  readonly #retentionSeconds: number;
  readonly #now: () => number;

  constructor(
    client: DynamoDBDocumentClient,
    tableName: string,
    retention: { retentionDays?: number; now?: () => number } = {},
  ) {
    this.client = client;
    this.tableName = tableName;
    this.#retentionSeconds = Math.round((retention.retentionDays ?? 0) * 86_400);
    this.#now = retention.now ?? Date.now;
  }

  now(): number {
    return this.#now();
  }

  /** The time-to-live stamp of a run's items written now; empty without a retention. */
  expiry(): Item {
    if (this.#retentionSeconds <= 0) return {};
    return { [TTL_ATTRIBUTE]: Math.floor(this.#now() / 1000) + this.#retentionSeconds };
  }

  /** Strongly consistent: the base table is the source of truth a state change is decided on. */
  async get(key: ItemKey): Promise<Item | undefined> {
    const output = await this.client.send(
      new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }),
    );
    return output.Item;
  }

  async put(item: Item): Promise<void> {
    await this.client.send(new PutCommand({ TableName: this.tableName, Item: item }));
  }

  /** Puts the item unless one with its key exists; tells whether it was written. */
  async putIfAbsent(item: Item): Promise<boolean> {
    try {
      await this.client.send(
        new PutCommand({
          TableName: this.tableName,
          Item: item,
          ConditionExpression: 'attribute_not_exists(#pk)',
          ExpressionAttributeNames: { '#pk': 'pk' },
        }),
      );
      return true;
    } catch (error) {
      if (isConditionalCheckFailed(error)) return false;
      throw error;
    }
  }

  /** A conditional UpdateItem returning the new item; a failed condition becomes the domain error. */
  async conditionalUpdate(
    input: Pick<UpdateCommandInput, 'Key' | 'UpdateExpression'>,
    expression: ExpressionBuilder,
    conditions: string[],
    onConditionFailed: (error: unknown) => StoreError,
  ): Promise<Item> {
    try {
      const output = await this.client.send(
        new UpdateCommand({
          ...input,
          TableName: this.tableName,
          ConditionExpression: conditions.join(' AND '),
          ...expression.attributes(),
          ReturnValues: 'ALL_NEW',
          // Real DynamoDB returns the stored item with the failure at no extra cost; dynalite ignores it.
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return output.Attributes ?? {};
    } catch (error) {
      if (isConditionalCheckFailed(error)) throw onConditionFailed(error);
      throw error;
    }
  }

  /** A query of one partition, optionally narrowed to sort keys starting with `sortPrefix`. */
  partitionQuery(expression: ExpressionBuilder, partition: string, sortPrefix?: string): QueryCommandInput {
    let condition = expression.equals('pk', partition);
    if (sortPrefix !== undefined) {
      condition += ` AND begins_with(${expression.name('sk')}, ${expression.value(sortPrefix)})`;
    }
    return { TableName: this.tableName, KeyConditionExpression: condition, ...expression.attributes() };
  }
}

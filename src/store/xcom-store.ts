import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { formatTaskInstanceKey, type TaskInstanceKey } from '#core/models.ts';
import { batchWriteAll, type WriteRequest } from './batch.ts';
import { MAX_VALUE_BYTES } from './dag-store.ts';
import { ConditionFailedError, ItemTooLargeError } from './errors.ts';
import { ExpressionBuilder, isConditionalCheckFailed } from './items.ts';
import { xcomKey, xcomPartition, xcomTaskInstancePrefix } from './keys.ts';
import { queryAllPages } from './pagination.ts';
import type { XComEntry, XComKey, XComStore } from './port.ts';
import type { TableRequests } from './requests.ts';

/** XCom values: one partition per run, sort key `<taskId>#<mapIndex>#<key>`. */
export class DynamoXComStore implements XComStore {
  readonly #table: TableRequests;

  constructor(table: TableRequests) {
    this.#table = table;
  }

  async putXCom(key: XComKey, value: string, tryNumber = 0): Promise<void> {
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > MAX_VALUE_BYTES) {
      throw new ItemTooLargeError(
        `XCom '${key.key}' of task instance ${formatTaskInstanceKey(key)} is ${bytes} bytes, ` +
          `over the store limit of ${MAX_VALUE_BYTES} bytes`,
      );
    }
    const { dagId, runId, taskId, mapIndex } = key;
    try {
      await this.#table.client.send(
        new PutCommand({
          TableName: this.#table.tableName,
          Item: {
            ...xcomKey(key),
            dagId,
            runId,
            taskId,
            mapIndex,
            key: key.key,
            value,
            tryNumber,
            ...this.#table.expiry(),
          },
          // A late report of an earlier try never overwrites what a later try wrote.
          ConditionExpression: 'attribute_not_exists(#pk) OR attribute_not_exists(#try) OR #try <= :try',
          ExpressionAttributeNames: { '#pk': 'pk', '#try': 'tryNumber' },
          ExpressionAttributeValues: { ':try': tryNumber },
        }),
      );
    } catch (error) {
      if (!isConditionalCheckFailed(error)) throw error;
      throw new ConditionFailedError(
        `XCom '${key.key}' of task instance ${formatTaskInstanceKey(key)} was not written for try ${tryNumber}: a later try wrote it`,
        { cause: error },
      );
    }
  }

  async getXCom(key: XComKey): Promise<string | undefined> {
    return (await this.getXComEntry(key))?.value;
  }

  async getXComEntry(key: XComKey): Promise<XComEntry | undefined> {
    const item = await this.#table.get(xcomKey(key));
    if (item === undefined) return undefined;
    return { value: String(item.value), tryNumber: typeof item.tryNumber === 'number' ? item.tryNumber : 0 };
  }

  async deleteXComs(ti: TaskInstanceKey): Promise<void> {
    const query = {
      ...this.#table.partitionQuery(new ExpressionBuilder(), xcomPartition(ti), xcomTaskInstancePrefix(ti)),
      ProjectionExpression: 'pk, sk',
    };
    // Page by page, so a task with many XComs (streamed pages) never sits in memory at once.
    for await (const items of queryAllPages(this.#table.client, { ...query, ConsistentRead: true })) {
      const requests = items.map(
        (item): WriteRequest => ({ DeleteRequest: { Key: { pk: item.pk, sk: item.sk } } }),
      );
      await batchWriteAll(this.#table.client, this.#table.tableName, requests);
    }
  }
}

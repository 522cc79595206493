import { formatTaskInstanceKey, type TaskInstanceKey } from '#core/models.ts';
import { batchWriteAll, type WriteRequest } from './batch.ts';
import { MAX_VALUE_BYTES } from './dag-store.ts';
import { ItemTooLargeError } from './errors.ts';
import { ExpressionBuilder } from './items.ts';
import { xcomKey, xcomPartition, xcomTaskInstancePrefix } from './keys.ts';
import { queryAllPages } from './pagination.ts';
import type { XComKey, XComStore } from './port.ts';
import type { TableRequests } from './requests.ts';

/** XCom values: one partition per run, sort key `<taskId>#<mapIndex>#<key>`. */
export class DynamoXComStore implements XComStore {
  readonly #table: TableRequests;

  constructor(table: TableRequests) {
    this.#table = table;
  }

  async putXCom(key: XComKey, value: string): Promise<void> {
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > MAX_VALUE_BYTES) {
      throw new ItemTooLargeError(
        `XCom '${key.key}' of task instance ${formatTaskInstanceKey(key)} is ${bytes} bytes, ` +
          `over the store limit of ${MAX_VALUE_BYTES} bytes`,
      );
    }
    const { dagId, runId, taskId, mapIndex } = key;
    await this.#table.put({ ...xcomKey(key), dagId, runId, taskId, mapIndex, key: key.key, value });
  }

  async getXCom(key: XComKey): Promise<string | undefined> {
    const item = await this.#table.get(xcomKey(key));
    return item === undefined ? undefined : String(item.value);
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

import { gunzipSync, gzipSync } from 'node:zlib';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { type SerializedDag, serializedDagSchema } from '#core/serialized-dag.ts';
import { batchWriteAll, type WriteRequest } from './batch.ts';
import { ConditionFailedError, ItemTooLargeError, NotFoundError } from './errors.ts';
import {
  describeStoredItem,
  ExpressionBuilder,
  type Item,
  importErrorToItem,
  isConditionalCheckFailed,
  itemToDag,
  itemToImportError,
  upsertDagUpdate,
} from './items.ts';
import {
  DAG_SORT_PREFIX,
  DAGS_PARTITION,
  dagKey,
  IMPORT_ERROR_SORT_PREFIX,
  importErrorKey,
  serializedDagKey,
} from './keys.ts';
import { countAll, queryAllPages, queryPage } from './pagination.ts';
import type {
  DagRecord,
  DagRecordChanges,
  DagRecordUpsert,
  DagStore,
  ImportError,
  Page,
  PageRequest,
} from './port.ts';
import type { TableRequests } from './requests.ts';

/** Largest XCom value or (gzip-compressed) serialized DAG this adapter stores: DynamoDB items stop at 400 KB, keys included. */
export const MAX_VALUE_BYTES = 350_000;

/** DAG records, serialized versions and import errors, all in small partitions (`DAGS`, `DAG#<id>`). */
export class DynamoDagStore implements DagStore {
  readonly #table: TableRequests;

  constructor(table: TableRequests) {
    this.#table = table;
  }

  /**
   * Stored gzip-compressed: a serialized DAG repeats the same keys for every task, so a DAG of a
   * few thousand tasks fits in one item.
   */
  async putSerializedDag(versionHash: string, dag: SerializedDag): Promise<void> {
    const json = JSON.stringify(dag);
    const serializedGzip = gzipSync(json);
    if (serializedGzip.byteLength > MAX_VALUE_BYTES) {
      throw new ItemTooLargeError(
        `serialized DAG ${dag.dagId} (version ${versionHash}, ${dag.tasks.length} tasks) is ${serializedGzip.byteLength} bytes ` +
          `gzip-compressed (${Buffer.byteLength(json, 'utf8')} bytes of JSON), over the store limit of ${MAX_VALUE_BYTES} bytes`,
      );
    }
    const item = {
      ...serializedDagKey(dag.dagId, versionHash),
      dagId: dag.dagId,
      versionHash,
      serializedGzip,
    };
    // Versions are immutable and named by their hash: a second put of the same hash is the same content.
    await this.#table.putIfAbsent(item);
  }

  async getSerializedDag(dagId: string, versionHash: string): Promise<SerializedDag | undefined> {
    const item = await this.#table.get(serializedDagKey(dagId, versionHash));
    return item === undefined ? undefined : itemToSerializedDag(item);
  }

  async upsertDag(record: DagRecordUpsert): Promise<DagRecord> {
    const expression = new ExpressionBuilder();
    const updateExpression = upsertDagUpdate(expression, record);
    const output = await this.#table.client.send(
      new UpdateCommand({
        TableName: this.#table.tableName,
        Key: dagKey(record.dagId),
        UpdateExpression: updateExpression,
        ...expression.attributes(),
        ReturnValues: 'ALL_NEW',
      }),
    );
    return itemToDag(output.Attributes ?? {});
  }

  async getDag(dagId: string): Promise<DagRecord | undefined> {
    const item = await this.#table.get(dagKey(dagId));
    return item === undefined ? undefined : itemToDag(item);
  }

  async listDags(page: PageRequest): Promise<Page<DagRecord>> {
    const result = await queryPage(
      this.#table.client,
      this.#table.partitionQuery(new ExpressionBuilder(), DAGS_PARTITION, DAG_SORT_PREFIX),
      page,
    );
    return { ...result, items: result.items.map(itemToDag) };
  }

  async countDags(): Promise<number> {
    return countAll(
      this.#table.client,
      this.#table.partitionQuery(new ExpressionBuilder(), DAGS_PARTITION, DAG_SORT_PREFIX),
    );
  }

  async updateDag(dagId: string, changes: DagRecordChanges, expectedRevision?: number): Promise<DagRecord> {
    const expression = new ExpressionBuilder();
    const conditions = [expression.exists('pk')];
    if (expectedRevision !== undefined) conditions.push(expression.equals('revision', expectedRevision));
    const item = await this.#table.conditionalUpdate(
      { Key: dagKey(dagId), UpdateExpression: expression.update(changes) },
      expression,
      conditions,
      (error) =>
        expectedRevision === undefined
          ? new NotFoundError(`DAG ${dagId} does not exist`, { cause: error })
          : new ConditionFailedError(
              `DAG ${dagId} was not updated: it does not exist or its revision is not ${expectedRevision}${describeStoredItem(error)}`,
              { cause: error },
            ),
    );
    return itemToDag(item);
  }

  /**
   * Counts a new run on its DAG record (one UpdateItem ADD). A run of a DAG without a record
   * (removed meanwhile) is still a run: the missing record is left missing, not created.
   */
  async incrementRunCount(dagId: string): Promise<void> {
    const expression = new ExpressionBuilder();
    try {
      await this.#table.client.send(
        new UpdateCommand({
          TableName: this.#table.tableName,
          Key: dagKey(dagId),
          UpdateExpression: `ADD ${expression.name('runCount')} ${expression.value(1)}`,
          ConditionExpression: expression.exists('pk'),
          ...expression.attributes(),
        }),
      );
    } catch (error) {
      if (!isConditionalCheckFailed(error)) throw error;
    }
  }

  async replaceImportErrors(errors: ImportError[]): Promise<void> {
    const wanted = new Map(errors.map((error) => [error.fileloc, error]));
    const requests: WriteRequest[] = [];
    for (const stored of await this.listImportErrors()) {
      const replacement = wanted.get(stored.fileloc);
      if (replacement === undefined) {
        requests.push({ DeleteRequest: { Key: importErrorKey(stored.fileloc) } });
      } else if (replacement.message === stored.message) {
        // The DAG processor calls this on every parse loop with a fresh timestamp: an error whose
        // message did not change keeps the time it was first seen and costs no write.
        wanted.delete(stored.fileloc);
      }
    }
    for (const error of wanted.values()) requests.push({ PutRequest: { Item: importErrorToItem(error) } });
    await batchWriteAll(this.#table.client, this.#table.tableName, requests);
  }

  async listImportErrors(): Promise<ImportError[]> {
    const errors: ImportError[] = [];
    for await (const items of queryAllPages(this.#table.client, {
      ...this.#table.partitionQuery(new ExpressionBuilder(), DAGS_PARTITION, IMPORT_ERROR_SORT_PREFIX),
      ConsistentRead: true,
    })) {
      errors.push(...items.map(itemToImportError));
    }
    return errors;
  }
}

/** A serialized DAG version as stored: gzip-compressed JSON (versions written before compression hold text). */
export function itemToSerializedDag(item: Item): SerializedDag {
  const json =
    item.serializedGzip instanceof Uint8Array
      ? gunzipSync(item.serializedGzip).toString('utf8')
      : String(item.serialized);
  return serializedDagSchema.parse(JSON.parse(json));
}

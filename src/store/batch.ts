import { BatchGetCommand, BatchWriteCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { mapConcurrently } from '#core/concurrency.ts';
import { StoreError } from './errors.ts';
import type { Item } from './items.ts';

/** DynamoDB's limit of requests in one BatchWriteItem. */
export const BATCH_WRITE_MAX_ITEMS = 25;
/** Batches of one call in flight at once: enough to hide latency, few enough not to throttle a partition. */
const BATCH_WRITE_CONCURRENCY = 4;
const UNPROCESSED_RETRY_ATTEMPTS = 10;
const UNPROCESSED_RETRY_BASE_MS = 25;
const UNPROCESSED_RETRY_MAX_MS = 2_000;

export type WriteRequest = { PutRequest: { Item: Item } } | { DeleteRequest: { Key: Item } };

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `work` over `items` with at most `concurrency` calls in flight; rejects with the first failure. */
export async function forEachConcurrently<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  await mapConcurrently(items, concurrency, work);
}

/**
 * Writes the requests in batches of 25. DynamoDB may leave some of a batch unprocessed when a
 * partition is busy; those are sent again with exponential backoff and jitter, and a batch
 * still unprocessed after the last attempt fails loudly rather than losing items.
 */
export async function batchWriteAll(
  client: DynamoDBDocumentClient,
  tableName: string,
  requests: readonly WriteRequest[],
): Promise<void> {
  const batches: WriteRequest[][] = [];
  for (let start = 0; start < requests.length; start += BATCH_WRITE_MAX_ITEMS) {
    batches.push(requests.slice(start, start + BATCH_WRITE_MAX_ITEMS));
  }
  await forEachConcurrently(batches, BATCH_WRITE_CONCURRENCY, (batch) =>
    writeBatch(client, tableName, batch),
  );
}

async function writeBatch(
  client: DynamoDBDocumentClient,
  tableName: string,
  batch: WriteRequest[],
): Promise<void> {
  let pending = batch;
  for (let attempt = 0; pending.length > 0; attempt++) {
    if (attempt >= UNPROCESSED_RETRY_ATTEMPTS) {
      throw new StoreError(
        `${pending.length} of ${batch.length} batch writes to table ${tableName} were still unprocessed ` +
          `after ${UNPROCESSED_RETRY_ATTEMPTS} attempts`,
      );
    }
    if (attempt > 0) {
      const ceiling = Math.min(UNPROCESSED_RETRY_MAX_MS, UNPROCESSED_RETRY_BASE_MS * 2 ** attempt);
      await sleep(ceiling / 2 + Math.random() * (ceiling / 2));
    }
    const output = await client.send(new BatchWriteCommand({ RequestItems: { [tableName]: pending } }));
    pending = (output.UnprocessedItems?.[tableName] ?? []) as WriteRequest[];
  }
}

/** DynamoDB's limit of keys in one BatchGetItem. */
export const BATCH_GET_MAX_KEYS = 100;

/**
 * Strongly consistent reads of `keys` in batches of 100 (duplicates read once); keys left
 * unprocessed by a busy partition are asked for again with backoff and jitter, and a batch still
 * unprocessed after the last attempt fails loudly. Items that do not exist are left out.
 */
export async function batchGetAll(
  client: DynamoDBDocumentClient,
  tableName: string,
  keys: readonly Item[],
): Promise<Item[]> {
  const unique = [...new Map(keys.map((key) => [`${key.pk}\u0000${key.sk}`, key])).values()];
  const batches: Item[][] = [];
  for (let start = 0; start < unique.length; start += BATCH_GET_MAX_KEYS) {
    batches.push(unique.slice(start, start + BATCH_GET_MAX_KEYS));
  }
  const results = await mapConcurrently(batches, BATCH_WRITE_CONCURRENCY, (batch) =>
    getBatch(client, tableName, batch),
  );
  return results.flat();
}

async function getBatch(client: DynamoDBDocumentClient, tableName: string, batch: Item[]): Promise<Item[]> {
  const found: Item[] = [];
  let pending = batch;
  for (let attempt = 0; pending.length > 0; attempt++) {
    if (attempt >= UNPROCESSED_RETRY_ATTEMPTS) {
      throw new StoreError(
        `${pending.length} of ${batch.length} batch reads from table ${tableName} were still unprocessed ` +
          `after ${UNPROCESSED_RETRY_ATTEMPTS} attempts`,
      );
    }
    if (attempt > 0) {
      const ceiling = Math.min(UNPROCESSED_RETRY_MAX_MS, UNPROCESSED_RETRY_BASE_MS * 2 ** attempt);
      await sleep(ceiling / 2 + Math.random() * (ceiling / 2));
    }
    const output = await client.send(
      new BatchGetCommand({ RequestItems: { [tableName]: { Keys: pending, ConsistentRead: true } } }),
    );
    found.push(...((output.Responses?.[tableName] ?? []) as Item[]));
    pending = (output.UnprocessedKeys?.[tableName]?.Keys ?? []) as Item[];
  }
  return found;
}

import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

const READ_OPERATIONS: ReadonlySet<string> = new Set([
  'GetItem',
  'BatchGetItem',
  'Query',
  'Scan',
  'TransactGetItems',
]);
const WRITE_OPERATIONS: ReadonlySet<string> = new Set([
  'PutItem',
  'UpdateItem',
  'DeleteItem',
  'BatchWriteItem',
  'TransactWriteItems',
]);

export interface RequestCounts {
  /** Data-plane read requests (GetItem, Query, …); table management is counted only by operation. */
  reads: number;
  writes: number;
  byOperation: Record<string, number>;
  /** Put and delete requests carried by BatchWriteItem calls, retries of unprocessed items included. */
  batchItemsWritten: number;
}

/** Counts store requests so benchmarks can report requests per task instance. */
export class RequestCounter {
  #reads = 0;
  #writes = 0;
  #byOperation: Record<string, number> = {};
  #batchItemsWritten = 0;

  /** Records one request of `operation` (e.g. `UpdateItem`) with the input it was sent with. */
  record(operation: string, input: unknown): void {
    this.#byOperation[operation] = (this.#byOperation[operation] ?? 0) + 1;
    if (READ_OPERATIONS.has(operation)) this.#reads++;
    if (WRITE_OPERATIONS.has(operation)) this.#writes++;
    if (operation === 'BatchWriteItem') this.#batchItemsWritten += countBatchItems(input);
  }

  snapshot(): RequestCounts {
    return {
      reads: this.#reads,
      writes: this.#writes,
      byOperation: { ...this.#byOperation },
      batchItemsWritten: this.#batchItemsWritten,
    };
  }

  reset(): void {
    this.#reads = 0;
    this.#writes = 0;
    this.#byOperation = {};
    this.#batchItemsWritten = 0;
  }
}

function countBatchItems(input: unknown): number {
  const requestItems =
    (input as { RequestItems?: Record<string, unknown[]> } | undefined)?.RequestItems ?? {};
  return Object.values(requestItems).reduce((total, requests) => total + requests.length, 0);
}

let nextCounterId = 0;
const counterIds = new WeakMap<RequestCounter, number>();

/**
 * Adds a middleware that records every command the client sends. A document client shares its
 * middleware stack with the client it wraps, and its commands run as the underlying command
 * (`UpdateCommand` as `UpdateItemCommand`), so either client can be instrumented, once.
 * The initialize step runs once per call, so SDK retries are not counted twice.
 */
export function instrumentClient(
  client: DynamoDBClient | DynamoDBDocumentClient,
  counter: RequestCounter,
): void {
  let id = counterIds.get(counter);
  if (id === undefined) {
    id = nextCounterId++;
    counterIds.set(counter, id);
  }
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const commandName = context.commandName ?? 'Unknown';
      counter.record(commandName.replace(/Command$/, ''), args.input);
      return next(args);
    },
    { step: 'initialize', name: `updraftRequestCounter${id}`, override: true },
  );
}

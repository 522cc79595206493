import { type DynamoDBDocumentClient, QueryCommand, type QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import { InvalidCursorError, StoreError } from './errors.ts';
import type { Item } from './items.ts';
import { KEY_ATTRIBUTES } from './keys.ts';

/**
 * A cursor is the query's LastEvaluatedKey as base64url JSON. It is opaque to callers; the
 * store only accepts back a flat map of this table's key attributes to strings.
 */
export function encodeCursor(lastEvaluatedKey: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(lastEvaluatedKey), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): Record<string, string> {
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch (error) {
    throw new InvalidCursorError(`page cursor '${cursor.slice(0, 40)}' is not a cursor this store issued`, {
      cause: error,
    });
  }
  if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded)) {
    throw new InvalidCursorError(`page cursor '${cursor.slice(0, 40)}' is not a cursor this store issued`);
  }
  const key: Record<string, string> = {};
  for (const [name, value] of Object.entries(decoded)) {
    if (!KEY_ATTRIBUTES.includes(name) || typeof value !== 'string') {
      throw new InvalidCursorError(`page cursor '${cursor.slice(0, 40)}' is not a cursor this store issued`);
    }
    key[name] = value;
  }
  return key;
}

/** Runs one page of a query: `limit` items at most, resuming after `cursor`. */
export async function queryPage(
  client: DynamoDBDocumentClient,
  input: QueryCommandInput,
  page: { limit: number; cursor?: string | undefined },
): Promise<{ items: Item[]; nextCursor?: string }> {
  if (!Number.isInteger(page.limit) || page.limit < 1) {
    throw new StoreError(`page limit ${page.limit} is not a positive integer`);
  }
  const output = await client
    .send(
      new QueryCommand({
        ...input,
        Limit: page.limit,
        ...(page.cursor === undefined ? {} : { ExclusiveStartKey: decodeCursor(page.cursor) }),
      }),
    )
    .catch((error: unknown) => {
      // A well-formed key of another list (another run's, or made up) is outside this query.
      if (page.cursor !== undefined && (error as { name?: string }).name === 'ValidationException') {
        throw new InvalidCursorError(
          `page cursor '${page.cursor.slice(0, 40)}' does not belong to this list (a cursor of another list, or one this store did not issue)`,
          { cause: error },
        );
      }
      throw error;
    });
  const items = output.Items ?? [];
  return output.LastEvaluatedKey === undefined
    ? { items }
    : { items, nextCursor: encodeCursor(output.LastEvaluatedKey) };
}

/** How many items a query matches, counted page by page on the server (no items are returned). */
export async function countAll(client: DynamoDBDocumentClient, input: QueryCommandInput): Promise<number> {
  let total = 0;
  let start: Record<string, unknown> | undefined;
  do {
    const output = await client.send(
      new QueryCommand({
        ...input,
        Select: 'COUNT',
        ...(start === undefined ? {} : { ExclusiveStartKey: start }),
      }),
    );
    total += output.Count ?? 0;
    start = output.LastEvaluatedKey;
  } while (start !== undefined);
  return total;
}

/**
 * Every page of a query, one at a time: a caller that handles each page before asking for the
 * next holds one page (at most 1 MB) in memory, however large the result.
 */
export async function* queryAllPages(
  client: DynamoDBDocumentClient,
  input: QueryCommandInput,
): AsyncGenerator<Item[]> {
  let exclusiveStartKey: Record<string, unknown> | undefined;
  do {
    const output = await client.send(
      new QueryCommand({
        ...input,
        ...(exclusiveStartKey === undefined ? {} : { ExclusiveStartKey: exclusiveStartKey }),
      }),
    );
    yield output.Items ?? [];
    exclusiveStartKey = output.LastEvaluatedKey;
  } while (exclusiveStartKey !== undefined);
}

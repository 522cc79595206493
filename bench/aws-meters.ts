import { createRequire } from 'node:module';
import { type AttributeValue, type DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { RUN_SORT_KEY, TABLE_DEFINITION } from '#store/keys.ts';

/**
 * DynamoDB request units of every request a client sends, as on-demand DynamoDB would bill them:
 *
 * - Each request asks for `ReturnConsumedCapacity: 'TOTAL'`, and dynalite answers with what
 *   DynamoDB computes from item sizes: reads 1 unit per 4 KB (half for eventually consistent),
 *   a missing item still 1 (or 0.5), BatchGetItem item by item, Query on the total size; writes
 *   1 unit per 1 KB of the larger of the old and new item.
 * - A Query or Scan costs at least 1 unit (0.5 eventually consistent) even when it finds nothing;
 *   dynalite reports 0.
 * - A conditional write that fails still costs write units, the size of the item that is there
 *   (at least 1); dynalite answers with an error and no capacity, so the item is read aside.
 * - Global secondary index writes are billed on top of the table's, and dynalite reports only
 *   the table's. Only run items (`sk = #RUN`) carry index keys (a check at the end of the run
 *   confirms it), so for writes to them, or requests naming an index key, the item is read aside
 *   before and after: a put into an index costs the projected entry's size in 1 KB units, a
 *   change of the index key a delete plus a put, a change of projected attributes one write,
 *   anything else nothing.
 * Side reads go through `imageClient`, which is not metered; they add a few ms to the write
 * they measure (run item writes and failed conditions only).
 */
export interface DynamoTally {
  requests: Record<string, number>;
  readUnits: number;
  /** Table write units, conditional failures included. */
  tableWriteUnits: number;
  indexWriteUnits: number;
  conditionalFailures: number;
  conditionalFailureUnits: number;
  /** Write units (table and index) by operation and kind of item (`UpdateItem RUN#/TI#`). */
  writeUnitsByItem: Record<string, number>;
  readUnitsByItem: Record<string, number>;
  /** Requests by the same keys as the units (a BatchGetItem or BatchWriteItem filed under its first item). */
  requestsByItem: Record<string, number>;
  /** Requests whose answer carried no capacity (should stay 0). */
  withoutCapacity: number;
}

const READS = new Set(['GetItem', 'BatchGetItem', 'Query', 'Scan']);
const WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem']);
const INDEX_KEY_NAMES = TABLE_DEFINITION.globalSecondaryIndexes.flatMap((index) => [
  index.partitionKey.name,
  index.sortKey.name,
]);
const PK = TABLE_DEFINITION.partitionKey.name;
const SK = TABLE_DEFINITION.sortKey.name;

type Item = Record<string, AttributeValue>;
type Key = { pk: string; sk: string };

/** dynalite's own item size (DynamoDB's rules), on marshalled items. */
const dynaliteDb = createRequire(import.meta.url)('dynalite/db/index.js') as {
  itemSize(item: Item): number;
};

export function emptyDynamoTally(): DynamoTally {
  return {
    requests: {},
    readUnits: 0,
    tableWriteUnits: 0,
    indexWriteUnits: 0,
    conditionalFailures: 0,
    conditionalFailureUnits: 0,
    writeUnitsByItem: {},
    readUnitsByItem: {},
    requestsByItem: {},
    withoutCapacity: 0,
  };
}

export class DynamoCapacityMeter {
  readonly #imageClient: DynamoDBClient;
  readonly #tableName: string;
  #tallies = new Map<string, DynamoTally>();
  active = false;

  constructor(imageClient: DynamoDBClient, tableName: string) {
    this.#imageClient = imageClient;
    this.#tableName = tableName;
  }

  /** The tallies so far, by the name given to `attach`, and a fresh start. */
  take(): Record<string, DynamoTally> {
    const taken = Object.fromEntries(this.#tallies);
    this.#tallies = new Map();
    return taken;
  }

  /** Meters every request `client` sends under `owner` (a function's name). */
  attach(client: DynamoDBClient, owner: string): void {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const operation = (context.commandName ?? '').replace(/Command$/, '');
        if (!this.active || !(READS.has(operation) || WRITES.has(operation))) return next(args);
        const tally = this.#tallyOf(owner);
        tally.requests[operation] = (tally.requests[operation] ?? 0) + 1;
        const input: Record<string, unknown> = {
          ...(args.input as Record<string, unknown>),
          ReturnConsumedCapacity: 'TOTAL',
        };
        const targets = WRITES.has(operation) ? writeTargetsOf(operation, input) : [];
        const imaged = targets.filter((key) => key.sk === RUN_SORT_KEY || namesIndexKey(input));
        const before = await Promise.all(imaged.map((key) => this.#image(key)));
        let result: Awaited<ReturnType<typeof next>>;
        try {
          result = await next({ ...args, input });
        } catch (error) {
          if ((error as { name?: string }).name === 'ConditionalCheckFailedException' && targets[0]) {
            const units = writeUnits(await this.#image(targets[0]));
            tally.conditionalFailures += 1;
            tally.conditionalFailureUnits += units;
            tally.tableWriteUnits += units;
            const key = `${operation} ${kindOf(targets[0])} (failed condition)`;
            add(tally.writeUnitsByItem, key, units);
            add(tally.requestsByItem, key, 1);
          }
          throw error;
        }
        const consumed = capacityOf((result.output as { ConsumedCapacity?: unknown }).ConsumedCapacity);
        if (consumed === undefined) tally.withoutCapacity += 1;
        const kind = targets[0] ? kindOf(targets[0]) : readKindOf(input);
        if (READS.has(operation)) {
          const consistent = input.ConsistentRead === true;
          const minimum = operation === 'Query' || operation === 'Scan' ? (consistent ? 1 : 0.5) : 0;
          const units = Math.max(consumed ?? 0, minimum);
          tally.readUnits += units;
          add(tally.readUnitsByItem, `${operation} ${kind}`, units);
          add(tally.requestsByItem, `${operation} ${kind}`, 1);
          return result;
        }
        tally.tableWriteUnits += consumed ?? 0;
        let indexUnits = 0;
        if (imaged.length > 0) {
          const after = await Promise.all(imaged.map((key) => this.#image(key)));
          imaged.forEach((_, index) => {
            indexUnits += indexWriteUnits(before[index], after[index]);
          });
        }
        tally.indexWriteUnits += indexUnits;
        add(tally.writeUnitsByItem, `${operation} ${kind}`, (consumed ?? 0) + indexUnits);
        add(tally.requestsByItem, `${operation} ${kind}`, 1);
        return result;
      },
      { step: 'initialize', name: `benchAwsCapacityMeter_${owner}`, override: true },
    );
  }

  #tallyOf(owner: string): DynamoTally {
    let tally = this.#tallies.get(owner);
    if (!tally) {
      tally = emptyDynamoTally();
      this.#tallies.set(owner, tally);
    }
    return tally;
  }

  async #image(key: Key): Promise<Item | undefined> {
    const output = await this.#imageClient.send(
      new GetItemCommand({
        TableName: this.#tableName,
        Key: { [PK]: { S: key.pk }, [SK]: { S: key.sk } },
        ConsistentRead: true,
      }),
    );
    return output.Item;
  }
}

/** Write units of an item (or of none: 1), DynamoDB's 1 KB rounding. */
export function writeUnits(item: Item | undefined): number {
  return item ? Math.max(1, Math.ceil(dynaliteDb.itemSize(item) / 1024)) : 1;
}

/** Index write units of one table write, from the item before and after it (see the class comment). */
export function indexWriteUnits(before: Item | undefined, after: Item | undefined): number {
  let units = 0;
  for (const index of TABLE_DEFINITION.globalSecondaryIndexes) {
    const entryOf = (item: Item | undefined): Item | undefined => {
      if (!item?.[index.partitionKey.name] || !item[index.sortKey.name]) return undefined;
      if (index.projectionType === 'ALL') return item;
      const names = [PK, SK, index.partitionKey.name, index.sortKey.name, ...(index.nonKeyAttributes ?? [])];
      return Object.fromEntries(
        names.filter((name) => item[name]).map((name) => [name, item[name] as AttributeValue]),
      );
    };
    const old = entryOf(before);
    const next = entryOf(after);
    if (!old && !next) continue;
    if (!old || !next) {
      units += writeUnits(old ?? next);
      continue;
    }
    const keyOf = (entry: Item) =>
      JSON.stringify([entry[index.partitionKey.name], entry[index.sortKey.name]]);
    if (keyOf(old) !== keyOf(next)) units += writeUnits(old) + writeUnits(next);
    else if (JSON.stringify(sorted(old)) !== JSON.stringify(sorted(next))) units += writeUnits(next);
  }
  return units;
}

function sorted(item: Item): Item {
  return Object.fromEntries(Object.entries(item).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function capacityOf(consumed: unknown): number | undefined {
  if (consumed === undefined || consumed === null) return undefined;
  const list = Array.isArray(consumed) ? consumed : [consumed];
  return list.reduce(
    (total: number, entry) => total + Number((entry as { CapacityUnits?: number }).CapacityUnits ?? 0),
    0,
  );
}

/** A key attribute as a string, whether the document client has marshalled the input yet or not. */
function textOf(value: unknown): string {
  if (typeof value === 'string') return value;
  const marshalled = (value as { S?: unknown } | undefined)?.S;
  return typeof marshalled === 'string' ? marshalled : '';
}

function keyOf(record: Record<string, unknown> | undefined): Key | undefined {
  return record ? { pk: textOf(record[PK]), sk: textOf(record[SK]) } : undefined;
}

function writeTargetsOf(operation: string, input: Record<string, unknown>): Key[] {
  if (operation === 'PutItem')
    return [keyOf(input.Item as Record<string, unknown>)].filter((key) => key !== undefined);
  if (operation === 'UpdateItem' || operation === 'DeleteItem')
    return [keyOf(input.Key as Record<string, unknown>)].filter((key) => key !== undefined);
  const requests = Object.values((input.RequestItems ?? {}) as Record<string, unknown[]>).flat() as {
    PutRequest?: { Item: Record<string, unknown> };
    DeleteRequest?: { Key: Record<string, unknown> };
  }[];
  return requests
    .map((request) => keyOf(request.PutRequest?.Item ?? request.DeleteRequest?.Key))
    .filter((key) => key !== undefined);
}

function namesIndexKey(input: Record<string, unknown>): boolean {
  const text = JSON.stringify(input);
  return INDEX_KEY_NAMES.some((name) => text.includes(`"${name}"`));
}

/** `RUN#/TI#`: the kind of an item, identifiers cut off. */
function kindOf(key: Key): string {
  return `${prefixOf(key.pk)}/${prefixOf(key.sk)}`;
}

function readKindOf(input: Record<string, unknown>): string {
  const key = keyOf(input.Key as Record<string, unknown> | undefined);
  if (key) return kindOf(key);
  const batch = Object.values(
    (input.RequestItems ?? {}) as Record<string, { Keys?: Record<string, unknown>[] }>,
  )[0];
  const first = keyOf(batch?.Keys?.[0]);
  if (first) return kindOf(first);
  const values = Object.values((input.ExpressionAttributeValues ?? {}) as Record<string, unknown>).map(
    textOf,
  );
  return `${(input.IndexName as string | undefined) ?? 'table'} ${prefixOf(values.find(Boolean) ?? '')}`.trim();
}

function prefixOf(value: string): string {
  const cut = value.indexOf('#', 1);
  return cut === -1 ? value : value.slice(0, cut + 1);
}

function add(counts: Record<string, number>, name: string, by: number): void {
  counts[name] = (counts[name] ?? 0) + by;
}

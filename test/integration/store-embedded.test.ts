import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import { afterEach, describe, expect, it } from 'vitest';
import { DynamoStore } from '#store/dynamodb.ts';
import { createDynamoClient, ensureTable, startEmbeddedDynamo, toDocumentClient } from '#store/embedded.ts';
import { TABLE_DEFINITION } from '#store/keys.ts';
import { dagRecord } from './store-fixtures.ts';

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(path?: string) {
  const server = await startEmbeddedDynamo(path === undefined ? {} : { path });
  const client = createDynamoClient({ endpoint: server.endpoint });
  return {
    client,
    store: new DynamoStore({ client: toDocumentClient(client), tableName: 'updraft' }),
    async stop() {
      client.destroy();
      await server.close();
    },
  };
}

describe('startEmbeddedDynamo', () => {
  it('listens on a free port of 127.0.0.1', async () => {
    const server = await startEmbeddedDynamo();
    cleanups.push(() => server.close());
    expect(server.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(server.endpoint).not.toBe('http://127.0.0.1:0');
  });

  it('keeps data on disk across restarts when given a path', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'updraft-store-'));
    cleanups.push(() => rm(directory, { recursive: true, force: true }));
    const first = await start(directory);
    await ensureTable(first.client, 'updraft');
    const { revision: _, ...record } = dagRecord('etl');
    await first.store.upsertDag(record);
    await first.stop();
    const second = await start(directory);
    cleanups.push(() => second.stop());
    await ensureTable(second.client, 'updraft');
    expect(await second.store.getDag('etl')).toEqual(dagRecord('etl'));
  });
});

describe('ensureTable', () => {
  it('creates the table from the key module and is a no-op the second time', async () => {
    const embedded = await start();
    cleanups.push(() => embedded.stop());
    await Promise.all([ensureTable(embedded.client, 'updraft'), ensureTable(embedded.client, 'updraft')]);
    await ensureTable(embedded.client, 'updraft');
    const { Table } = await embedded.client.send(new DescribeTableCommand({ TableName: 'updraft' }));
    expect(Table?.TableStatus).toBe('ACTIVE');
    expect(Table?.KeySchema).toEqual([
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ]);
    expect(Table?.GlobalSecondaryIndexes?.map((index) => index.IndexName)).toEqual(
      TABLE_DEFINITION.globalSecondaryIndexes.map((index) => index.indexName),
    );
    expect(Table?.GlobalSecondaryIndexes?.[1]?.Projection).toEqual({
      ProjectionType: 'INCLUDE',
      NonKeyAttributes: ['dagId', 'runId', 'state'],
    });
  });
});

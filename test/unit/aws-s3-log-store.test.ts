import {
  GetObjectCommand,
  type GetObjectCommandOutput,
  ListObjectsV2Command,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { allCustomMatcher } from 'aws-sdk-client-mock-vitest';
import type {} from 'aws-sdk-client-mock-vitest/extend';
import { beforeEach, describe, expect, it } from 'vitest';
import { S3LogStoreError } from '#aws/errors.ts';
import { idSegmentOf, S3LogStore } from '#aws/s3-log-store.ts';
import type { TaskInstanceKey } from '#core/models.ts';
import { noteChunkId, workerChunkId } from '#logs/port.ts';

expect.extend(allCustomMatcher);

const BUCKET = 'updraft-logs';
const key: TaskInstanceKey = {
  dagId: 'example_etl',
  runId: 'manual__2026-03-01T12:00:00+00:00',
  taskId: 'extract',
  mapIndex: -1,
};
/** `:` and `+` percent-encoded; the rest of the id grammar is left as it is. */
const TRY_PREFIX = 'logs/example_etl/manual__2026-03-01T12%3A00%3A00%2B00%3A00/extract/-1/2/';
const NOTE = noteChunkId(Date.parse('2026-03-01T12:30:00.000Z'));

const s3 = mockClient(S3Client);

function makeStore(): S3LogStore {
  return new S3LogStore({ client: new S3Client({ region: 'eu-west-1' }), bucket: BUCKET });
}

/** A GetObject body as the SDK returns it, reduced to what the store reads. */
function bodyOf(text: string): GetObjectCommandOutput['Body'] {
  return { transformToString: async () => text } as unknown as GetObjectCommandOutput['Body'];
}

/** Serves GetObject from `objects` by key. */
function serveObjects(objects: Record<string, string>): void {
  for (const [objectKey, text] of Object.entries(objects)) {
    s3.on(GetObjectCommand, { Bucket: BUCKET, Key: objectKey }).resolves({ Body: bodyOf(text) });
  }
}

beforeEach(() => {
  s3.reset();
});

describe('S3LogStore.appendChunk', () => {
  it('puts one object per chunk under the try, with percent-encoded ids', async () => {
    s3.on(PutObjectCommand).resolves({});

    await makeStore().appendChunk(key, 2, workerChunkId(1), 'line 1\n');

    expect(s3.commandCalls(PutObjectCommand).map((call) => call.args[0].input)).toEqual([
      {
        Bucket: BUCKET,
        Key: `${TRY_PREFIX}000001`,
        Body: 'line 1\n',
        ContentType: 'text/plain; charset=utf-8',
      },
    ]);
  });

  it('puts a chunk again unconditionally, so the latest version of an open chunk wins', async () => {
    s3.on(PutObjectCommand).resolves({});

    await makeStore().appendChunk(key, 2, workerChunkId(1), 'line 1\n');
    await makeStore().appendChunk(key, 2, workerChunkId(1), 'line 1\nline 2\n');

    expect(s3).toHaveReceivedCommandTimes(PutObjectCommand, 2);
    expect(s3).toHaveReceivedNthCommandWith(PutObjectCommand, 2, {
      Key: `${TRY_PREFIX}000001`,
      Body: 'line 1\nline 2\n',
    });
    expect(
      s3.commandCalls(PutObjectCommand).every((call) => call.args[0].input.IfNoneMatch === undefined),
    ).toBe(true);
  });

  it("encodes a note's chunk id and a mapped task's index", async () => {
    s3.on(PutObjectCommand).resolves({});

    await makeStore().appendChunk({ ...key, mapIndex: 12 }, 1, NOTE, 'refused\n');

    expect(s3).toHaveReceivedCommandExactlyOnceWith(PutObjectCommand, {
      Key: 'logs/example_etl/manual__2026-03-01T12%3A00%3A00%2B00%3A00/extract/12/1/~2026-03-01T12%3A30%3A00.000Z',
    });
  });

  it('wraps a failed put in an S3LogStoreError naming the object', async () => {
    const cause = new Error('Access Denied');
    s3.on(PutObjectCommand).rejects(cause);

    const appending = makeStore().appendChunk(key, 2, workerChunkId(3), 'x');

    await expect(appending).rejects.toThrow(S3LogStoreError);
    await expect(appending).rejects.toMatchObject({
      message: `PutObject of s3://${BUCKET}/${TRY_PREFIX}000003 failed: Access Denied`,
      cause,
    });
  });

  it('refuses an empty chunk id with nothing sent', async () => {
    await expect(makeStore().appendChunk(key, 2, '', 'x')).rejects.toThrow(S3LogStoreError);
    expect(s3).not.toHaveReceivedAnyCommand();
  });
});

describe('S3LogStore client', () => {
  it('is made on the first call, once, by a factory given the S3 library', async () => {
    s3.on(PutObjectCommand).resolves({});
    const made: S3Client[] = [];
    const store = new S3LogStore({
      client: (library) => {
        const client = new library.S3Client({ region: 'eu-west-1' });
        made.push(client);
        return client;
      },
      bucket: BUCKET,
    });
    expect(made).toHaveLength(0);

    await Promise.all([
      store.appendChunk(key, 2, workerChunkId(1), 'a\n'),
      store.appendChunk(key, 2, workerChunkId(2), 'b\n'),
    ]);
    s3.on(ListObjectsV2Command).resolves({ Contents: [] });
    await store.read(key, 2);

    expect(made).toHaveLength(1);
    expect(made[0]).toBeInstanceOf(S3Client);
    expect(s3).toHaveReceivedCommandTimes(PutObjectCommand, 2);
  });

  it('wraps a failed load of the S3 library like a failed call, and loads it again on the next call', async () => {
    s3.on(PutObjectCommand).resolves({});
    let loads = 0;
    const store = new S3LogStore({
      client: (library) => new library.S3Client({ region: 'eu-west-1' }),
      bucket: BUCKET,
      loadLibrary: async () => {
        loads += 1;
        if (loads === 1) throw new Error("Cannot find package '@aws-sdk/client-s3'");
        return import('@aws-sdk/client-s3');
      },
    });

    const failed = store.appendChunk(key, 2, workerChunkId(1), 'a\n');
    await expect(failed).rejects.toBeInstanceOf(S3LogStoreError);
    await expect(failed).rejects.toThrow(
      `PutObject of s3://${BUCKET}/${TRY_PREFIX}${workerChunkId(1)} failed: Cannot find package '@aws-sdk/client-s3'`,
    );
    expect(s3).toHaveReceivedCommandTimes(PutObjectCommand, 0);

    await store.appendChunk(key, 2, workerChunkId(1), 'a\n');
    await store.appendChunk(key, 2, workerChunkId(2), 'b\n');
    expect(loads).toBe(2);
    expect(s3).toHaveReceivedCommandTimes(PutObjectCommand, 2);
  });
});

describe('S3LogStore.read', () => {
  it('reads chunks listed across two pages, in chunk id order, the note last', async () => {
    s3.on(ListObjectsV2Command)
      .resolvesOnce({
        IsTruncated: true,
        NextContinuationToken: 'page-2',
        Contents: [{ Key: `${TRY_PREFIX}000001` }, { Key: `${TRY_PREFIX}000002` }],
      })
      .resolvesOnce({
        IsTruncated: false,
        Contents: [{ Key: `${TRY_PREFIX}000010` }, { Key: `${TRY_PREFIX}~2026-03-01T12%3A30%3A00.000Z` }],
      });
    serveObjects({
      [`${TRY_PREFIX}000001`]: 'one\n',
      [`${TRY_PREFIX}000002`]: 'two\n',
      [`${TRY_PREFIX}000010`]: 'ten\n',
      [`${TRY_PREFIX}~2026-03-01T12%3A30%3A00.000Z`]: 'note\n',
    });

    expect(await makeStore().read(key, 2)).toBe('one\ntwo\nten\nnote\n');

    expect(s3).toHaveReceivedCommandTimes(ListObjectsV2Command, 2);
    expect(s3.commandCalls(ListObjectsV2Command).map((call) => call.args[0].input)).toEqual([
      { Bucket: BUCKET, Prefix: TRY_PREFIX },
      { Bucket: BUCKET, Prefix: TRY_PREFIX, ContinuationToken: 'page-2' },
    ]);
    expect(s3).toHaveReceivedCommandTimes(GetObjectCommand, 4);
    expect(s3.commandCalls(GetObjectCommand).map((call) => call.args[0].input)).toEqual([
      { Bucket: BUCKET, Key: `${TRY_PREFIX}000001` },
      { Bucket: BUCKET, Key: `${TRY_PREFIX}000002` },
      { Bucket: BUCKET, Key: `${TRY_PREFIX}000010` },
      { Bucket: BUCKET, Key: `${TRY_PREFIX}~2026-03-01T12%3A30%3A00.000Z` },
    ]);
  });

  it('orders by chunk id even where the encoded keys sort otherwise', async () => {
    // Encoded, `a:b` is `a%3Ab`, which sorts before `a-b` although `:` sorts after `-`.
    s3.on(ListObjectsV2Command).resolves({
      Contents: [{ Key: `${TRY_PREFIX}a%3Ab` }, { Key: `${TRY_PREFIX}a-b` }],
    });
    serveObjects({ [`${TRY_PREFIX}a%3Ab`]: 'colon\n', [`${TRY_PREFIX}a-b`]: 'dash\n' });

    expect(await makeStore().read(key, 2)).toBe('dash\ncolon\n');
  });

  it('is undefined when the try has no chunks', async () => {
    s3.on(ListObjectsV2Command).resolves({ KeyCount: 0, IsTruncated: false });

    expect(await makeStore().read(key, 2)).toBeUndefined();
    expect(s3).toHaveReceivedCommandExactlyOnceWith(ListObjectsV2Command, {
      Bucket: BUCKET,
      Prefix: TRY_PREFIX,
    });
    expect(s3).not.toHaveReceivedCommand(GetObjectCommand);
  });

  it('lists only its own try: the prefix ends with a slash so try 1 does not see try 10', async () => {
    s3.on(ListObjectsV2Command).resolves({});

    await makeStore().read(key, 1);

    expect(s3).toHaveReceivedCommandWith(ListObjectsV2Command, {
      Prefix: 'logs/example_etl/manual__2026-03-01T12%3A00%3A00%2B00%3A00/extract/-1/1/',
    });
  });

  it('skips a chunk expired between the list and the get', async () => {
    s3.on(ListObjectsV2Command).resolves({
      Contents: [{ Key: `${TRY_PREFIX}000001` }, { Key: `${TRY_PREFIX}000002` }],
    });
    serveObjects({ [`${TRY_PREFIX}000002`]: 'two\n' });
    s3.on(GetObjectCommand, { Bucket: BUCKET, Key: `${TRY_PREFIX}000001` }).rejects(
      new NoSuchKey({ message: 'gone', $metadata: {} }),
    );

    expect(await makeStore().read(key, 2)).toBe('two\n');
  });

  it('is undefined when every listed chunk expired before it was read', async () => {
    s3.on(ListObjectsV2Command).resolves({ Contents: [{ Key: `${TRY_PREFIX}000001` }] });
    s3.on(GetObjectCommand).rejects(new NoSuchKey({ message: 'gone', $metadata: {} }));

    expect(await makeStore().read(key, 2)).toBeUndefined();
  });

  it('throws an S3LogStoreError when a get fails otherwise', async () => {
    s3.on(ListObjectsV2Command).resolves({ Contents: [{ Key: `${TRY_PREFIX}000001` }] });
    s3.on(GetObjectCommand).rejects(new Error('SlowDown'));

    await expect(makeStore().read(key, 2)).rejects.toThrow(
      new S3LogStoreError(`GetObject of s3://${BUCKET}/${TRY_PREFIX}000001 failed: SlowDown`),
    );
  });

  it('reads back what it wrote, through the keys it chose', async () => {
    const written = new Map<string, string>();
    s3.on(PutObjectCommand).callsFake((input: { Key: string; Body: string }) => {
      written.set(input.Key, input.Body);
      return {};
    });
    s3.on(ListObjectsV2Command).callsFake((input: { Prefix: string }) => ({
      // S3's order: UTF-8 bytes of the keys.
      Contents: [...written.keys()]
        .filter((objectKey) => objectKey.startsWith(input.Prefix))
        .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
        .map((objectKey) => ({ Key: objectKey })),
    }));
    s3.on(GetObjectCommand).callsFake((input: { Key: string }) => ({
      Body: bodyOf(written.get(input.Key) ?? ''),
    }));
    const odd: TaskInstanceKey = { dagId: 'a/b', runId: '..', taskId: 'c%2Fd', mapIndex: 0 };
    const store = makeStore();

    await store.appendChunk(odd, 1, NOTE, 'note\n');
    await store.appendChunk(odd, 1, workerChunkId(2), 'two\n');
    await store.appendChunk(odd, 1, workerChunkId(1), 'one\n');
    await store.appendChunk({ ...odd, dagId: 'a', runId: 'b/..' }, 1, workerChunkId(1), 'other\n');

    expect(await store.read(odd, 1)).toBe('one\ntwo\nnote\n');
    expect([...written.keys()][0]).toBe('logs/a%2Fb/%2E%2E/c%252Fd/0/1/~2026-03-01T12%3A30%3A00.000Z');
  });
});

describe('S3 key order', () => {
  it("lists a note's key after every worker chunk's key in UTF-8 byte order, as S3 does", () => {
    const noteKey = Buffer.from(`${TRY_PREFIX}${encodeURIComponent(NOTE)}`);
    for (const seq of [1, 9, 10, 999_999]) {
      const workerKey = Buffer.from(`${TRY_PREFIX}${encodeURIComponent(workerChunkId(seq))}`);
      expect(Buffer.compare(workerKey, noteKey)).toBe(-1);
    }
    // Worker chunks among themselves: fixed width, so byte order is number order.
    expect(Buffer.compare(Buffer.from(workerChunkId(9)), Buffer.from(workerChunkId(10)))).toBe(-1);
  });
});

describe('idSegmentOf', () => {
  it('keeps ids of the id grammar readable', () => {
    expect(idSegmentOf('example_etl')).toBe('example_etl');
    expect(idSegmentOf('scheduled__2026-01-01T00:00:00+00:00')).toBe(
      'scheduled__2026-01-01T00%3A00%3A00%2B00%3A00',
    );
  });

  it('spells out a segment of dots and encodes slashes', () => {
    expect(idSegmentOf('.')).toBe('%2E');
    expect(idSegmentOf('..')).toBe('%2E%2E');
    expect(idSegmentOf('a/b')).toBe('a%2Fb');
  });

  it('shortens a long id with a hash, keeping the key under 1,024 bytes and ids apart', () => {
    const longRun = ':'.repeat(250);
    const segment = idSegmentOf(longRun);
    expect(segment).toMatch(/^(%3A){60}@[0-9a-f]{32}$/);
    expect(idSegmentOf(`${':'.repeat(249)}+`)).not.toBe(segment);
    const store = makeStore();
    const prefix = store.prefixOf(
      { dagId: 'd'.repeat(250), runId: longRun, taskId: 't'.repeat(250), mapIndex: 99_999 },
      1000,
    );
    expect(Buffer.byteLength(`${prefix}${encodeURIComponent(NOTE)}`)).toBeLessThan(1024);
  });

  it('keeps a 200-character encoded id whole and shortens a 201-character one', () => {
    expect(idSegmentOf('a'.repeat(200))).toBe('a'.repeat(200));
    expect(idSegmentOf('a'.repeat(201))).toMatch(/^a{60}@[0-9a-f]{32}$/);
  });
});

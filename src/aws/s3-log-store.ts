import { createHash } from 'node:crypto';
import type { ListObjectsV2CommandOutput, S3Client } from '@aws-sdk/client-s3';
import type { TaskInstanceKey } from '#core/models.ts';
import type { LogStore } from '#logs/port.ts';
import { awsErrorName, S3LogStoreError } from './errors.ts';

/** Where every log object lives in the bucket, so one lifecycle rule covers them all. */
export const LOG_KEY_PREFIX = 'logs/';
/** Encoded ids up to this length are their own key segment; longer ones are shortened with a hash. */
const SEGMENT_MAX = 200;
/** Readable head (before encoding) kept in front of the hash of a shortened id. */
const HASHED_HEAD = 60;
/** Chunk reads in flight at once for one `read`. */
const READ_CONCURRENCY = 8;

type S3Module = typeof import('@aws-sdk/client-s3');

export interface S3LogStoreOptions {
  /** The client, or how to make it once the library is loaded (on the store's first call). */
  client: S3Client | ((s3: S3Module) => S3Client);
  bucket: string;
  /**
   * How the S3 client library is loaded (default: a dynamic import of `@aws-sdk/client-s3`). A
   * load that fails is tried again on the next call.
   */
  loadLibrary?: () => Promise<S3Module>;
}

/**
 * Task logs on S3, one object per chunk: `logs/<dag>/<run>/<task>/<map index>/<try>/<chunk id>`.
 * A chunk is one PutObject, so a reader never sees half of one and writing a chunk id again
 * replaces its object: the worker re-sends its open chunk, longer, under the same id, and the
 * latest must win (which is why the put is unconditional, see ADAPTERS.md). S3's strong
 * read-after-write consistency makes a chunk visible to every API instance once the put returns.
 */
export class S3LogStore implements LogStore {
  readonly #makeClient: (s3: S3Module) => S3Client;
  readonly #loadLibrary: () => Promise<S3Module>;
  #library: Promise<S3Module> | undefined;
  #client: S3Client | undefined;
  readonly #bucket: string;

  constructor(options: S3LogStoreOptions) {
    const { client } = options;
    this.#makeClient = typeof client === 'function' ? client : () => client;
    this.#loadLibrary = options.loadLibrary ?? importS3;
    this.#bucket = options.bucket;
  }

  /** The library and the client, both made on first use. */
  async #s3(): Promise<{ s3: S3Module; client: S3Client }> {
    this.#library ??= this.#loadLibrary().catch((error: unknown) => {
      this.#library = undefined;
      throw error;
    });
    const s3 = await this.#library;
    this.#client ??= this.#makeClient(s3);
    return { s3, client: this.#client };
  }

  async appendChunk(key: TaskInstanceKey, tryNumber: number, chunkId: string, text: string): Promise<void> {
    const objectKey = `${this.prefixOf(key, tryNumber)}${chunkSegmentOf(chunkId)}`;
    try {
      const { s3, client } = await this.#s3();
      await client.send(
        new s3.PutObjectCommand({
          Bucket: this.#bucket,
          Key: objectKey,
          Body: text,
          ContentType: 'text/plain; charset=utf-8',
        }),
      );
    } catch (error) {
      throw this.#failure('PutObject', objectKey, error);
    }
  }

  async read(key: TaskInstanceKey, tryNumber: number): Promise<string | undefined> {
    const prefix = this.prefixOf(key, tryNumber);
    const chunks = await this.#list(prefix);
    if (chunks.length === 0) return undefined;
    // S3 lists in UTF-8 byte order of the encoded keys; the port's order is that of the chunk ids.
    chunks.sort((a, b) => (a.chunkId < b.chunkId ? -1 : a.chunkId > b.chunkId ? 1 : 0));
    const texts = await mapInOrder(chunks, READ_CONCURRENCY, (chunk) => this.#get(chunk.objectKey));
    const present = texts.filter((text) => text !== undefined);
    return present.length === 0 ? undefined : present.join('');
  }

  /** The folder of one try, ending in `/` so try 1 never lists try 10's chunks. */
  prefixOf(key: TaskInstanceKey, tryNumber: number): string {
    const segments = [
      idSegmentOf(key.dagId),
      idSegmentOf(key.runId),
      idSegmentOf(key.taskId),
      String(key.mapIndex),
      String(tryNumber),
    ];
    return `${LOG_KEY_PREFIX}${segments.join('/')}/`;
  }

  async #list(prefix: string): Promise<{ objectKey: string; chunkId: string }[]> {
    const chunks: { objectKey: string; chunkId: string }[] = [];
    let continuationToken: string | undefined;
    do {
      const input = {
        Bucket: this.#bucket,
        Prefix: prefix,
        ...(continuationToken !== undefined ? { ContinuationToken: continuationToken } : {}),
      };
      let output: ListObjectsV2CommandOutput;
      try {
        const { s3, client } = await this.#s3();
        output = await client.send(new s3.ListObjectsV2Command(input));
      } catch (error) {
        throw this.#failure('ListObjectsV2', prefix, error);
      }
      for (const object of output.Contents ?? []) {
        if (object.Key === undefined) continue;
        chunks.push({ objectKey: object.Key, chunkId: decodeSegment(object.Key.slice(prefix.length)) });
      }
      continuationToken = output.IsTruncated ? output.NextContinuationToken : undefined;
    } while (continuationToken !== undefined);
    return chunks;
  }

  async #get(objectKey: string): Promise<string | undefined> {
    try {
      const { s3, client } = await this.#s3();
      const output = await client.send(new s3.GetObjectCommand({ Bucket: this.#bucket, Key: objectKey }));
      return (await output.Body?.transformToString('utf-8')) ?? '';
    } catch (error) {
      // Expired by the lifecycle rule between the list and the get: the chunk is gone, not broken.
      if (awsErrorName(error) === 'NoSuchKey') return undefined;
      throw this.#failure('GetObject', objectKey, error);
    }
  }

  #failure(operation: string, objectKey: string, error: unknown): S3LogStoreError {
    const reason = error instanceof Error ? error.message : String(error);
    return new S3LogStoreError(`${operation} of s3://${this.#bucket}/${objectKey} failed: ${reason}`, {
      cause: error,
    });
  }
}

/**
 * The S3 client library, imported on the first log call rather than when the function loads:
 * most API calls touch no log. In the Lambda functions it comes from the runtime (not bundled:
 * it would take the API bundles over 1 MiB), with its own copy of the SDK's core, so this first
 * import costs about 50 ms of that call on each instance. A bundle keeps this dynamic import of
 * an external package as it is.
 */
function importS3(): Promise<S3Module> {
  return import('@aws-sdk/client-s3');
}

/**
 * The key segment of a DAG, run or task id. Percent-encoding keeps `/` and characters S3 keys
 * handle badly out of the key; a segment of dots only is spelled out so no tool resolves it as a
 * path step. An id whose encoding is longer than `SEGMENT_MAX` becomes `<head>@<sha-256>`: `@`
 * is percent-encoded everywhere else, so a shortened segment never equals a plain one, and the
 * key stays far below S3's 1,024 bytes (a run id of 250 `:` encodes to 750 characters).
 */
export function idSegmentOf(id: string): string {
  const encoded = encodeSegment(id);
  if (encoded.length <= SEGMENT_MAX) return encoded;
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 32);
  return `${encodeSegment(Array.from(id).slice(0, HASHED_HEAD).join(''))}@${hash}`;
}

/**
 * A chunk id's key segment. Never shortened, since the id is read back from the key to order the
 * chunks; the port's ids are a few characters, so a long one is a caller's mistake.
 */
function chunkSegmentOf(chunkId: string): string {
  const encoded = encodeSegment(chunkId);
  if (chunkId === '' || encoded.length > SEGMENT_MAX) {
    throw new S3LogStoreError(
      `Log chunk id ${JSON.stringify(chunkId.slice(0, 50))} must be 1 to ${SEGMENT_MAX} characters once percent-encoded, not ${encoded.length}`,
    );
  }
  return encoded;
}

function encodeSegment(value: string): string {
  // encodeURIComponent never outputs `%2E`, so spelling the dots out stays reversible.
  return /^\.+$/.test(value) ? value.replaceAll('.', '%2E') : encodeURIComponent(value);
}

/** An object put there by hand may not decode; it still orders by its raw key. */
function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** `map` with at most `concurrency` calls in flight, results in input order. */
async function mapInOrder<T, R>(
  items: readonly T[],
  concurrency: number,
  call: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < items.length; index = next++) {
      results[index] = await call(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}

import { fork } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  CreateTableCommand,
  type CreateTableCommandInput,
  DescribeTableCommand,
  DynamoDBClient,
  DynamoDBServiceException,
} from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import dynalite from 'dynalite';
import { StoreError } from './errors.ts';
import { TABLE_DEFINITION } from './keys.ts';

/**
 * The embedded DynamoDB-compatible server for standalone mode and tests: dynalite in this
 * process, in memory or on LevelDB under a directory, on 127.0.0.1 only.
 */
export async function startEmbeddedDynamo(
  options: { path?: string; port?: number } = {},
): Promise<{ endpoint: string; close(): Promise<void> }> {
  const server = dynalite({
    ...(options.path === undefined ? {} : { path: options.path }),
    createTableMs: 0,
    deleteTableMs: 0,
    updateTableMs: 0,
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Clients keep sockets alive; without this close would wait for them to time out.
        server.closeIdleConnections();
      }),
  };
}

/** The embedded server's own process, as `startEmbeddedDynamoProcess` started it. */
export interface EmbeddedDynamoProcess {
  endpoint: string;
  /** The port it listens on (a restart asks for the same one, so clients keep their endpoint). */
  port: number;
  pid: number;
  /** Settles when the process ends, for whatever reason; never rejects. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Asks it to stop (it closes its database first) and waits until it has. */
  close(): Promise<void>;
}

/**
 * The embedded server in a child process of its own, so the store does not compete with the
 * scheduler and the API for one event loop (standalone mode). The child dies with its parent;
 * it may also die on its own (killed, out of memory), which `exited` tells: standalone's
 * supervisor restarts it on the same port.
 */
export async function startEmbeddedDynamoProcess(
  options: { path?: string; port?: number } = {},
): Promise<EmbeddedDynamoProcess> {
  const entry = fileURLToPath(new URL('./embedded-server.ts', import.meta.url));
  const child = fork(entry, [options.path ?? '', String(options.port ?? 0)], {
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    execArgv: ['--disable-warning=ExperimentalWarning'],
    // Out of the terminal's process group: on Ctrl-C the parent still needs the store for its
    // graceful stop (handing tries back), and closes it by disconnecting when done.
    detached: true,
  });
  // Kept for the start error; passed on to this process's stderr as it comes.
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4_000);
    process.stderr.write(chunk);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const endpoint = await new Promise<string>((resolve, reject) => {
    child.once('error', reject);
    void exited.then(({ code, signal }) =>
      reject(
        new StoreError(
          `the embedded DynamoDB server exited during start (${signal ? `signal ${signal}` : `exit code ${code}`})${startErrorOf(stderr)}`,
        ),
      ),
    );
    child.once('message', (message: { type: string; endpoint: string }) => resolve(message.endpoint));
  });
  child.removeAllListeners('error');
  child.on('error', () => {}); // a failed disconnect of a child that just died; `exited` tells
  return {
    endpoint,
    port: Number(new URL(endpoint).port),
    pid: child.pid as number,
    exited,
    close: async () => {
      // A child killed by a signal has a signalCode and no exitCode; its 'exit' has already fired.
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (child.connected) child.disconnect();
      else child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The last line of the child's stderr that names an error, for the start failure's message. */
function startErrorOf(stderr: string): string {
  const line = stderr
    .split('\n')
    .map((text) => text.trim())
    .filter((text) => /error/i.test(text))
    .at(-1);
  return line ? `: ${line}` : '';
}

/** The table as a CreateTable request, built from the single definition in keys.ts. */
export function createTableInput(tableName: string): CreateTableCommandInput {
  const { partitionKey, sortKey, globalSecondaryIndexes } = TABLE_DEFINITION;
  const keyAttributes = [
    partitionKey,
    sortKey,
    ...globalSecondaryIndexes.flatMap((i) => [i.partitionKey, i.sortKey]),
  ];
  const attributeDefinitions = [...new Map(keyAttributes.map((a) => [a.name, a])).values()];
  return {
    TableName: tableName,
    BillingMode: TABLE_DEFINITION.billingMode,
    AttributeDefinitions: attributeDefinitions.map((a) => ({ AttributeName: a.name, AttributeType: a.type })),
    KeySchema: [
      { AttributeName: partitionKey.name, KeyType: 'HASH' },
      { AttributeName: sortKey.name, KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: globalSecondaryIndexes.map((index) => ({
      IndexName: index.indexName,
      KeySchema: [
        { AttributeName: index.partitionKey.name, KeyType: 'HASH' },
        { AttributeName: index.sortKey.name, KeyType: 'RANGE' },
      ],
      Projection: {
        ProjectionType: index.projectionType,
        ...(index.nonKeyAttributes === undefined ? {} : { NonKeyAttributes: [...index.nonKeyAttributes] }),
      },
    })),
  };
}

const TABLE_ACTIVE_TIMEOUT_MS = 60_000;

function isErrorNamed(error: unknown, name: string): boolean {
  return error instanceof Error && error.name === name;
}

async function tableStatus(client: DynamoDBClient, tableName: string): Promise<string | undefined> {
  try {
    const output = await client.send(new DescribeTableCommand({ TableName: tableName }));
    return output.Table?.TableStatus ?? 'UNKNOWN';
  } catch (error) {
    if (isErrorNamed(error, 'ResourceNotFoundException')) return undefined;
    throw error;
  }
}

/** Creates the table when absent (on demand) and waits until it is ACTIVE. Safe to call concurrently. */
export async function ensureTable(client: DynamoDBClient, tableName: string): Promise<void> {
  if ((await tableStatus(client, tableName)) === undefined) {
    try {
      await client.send(new CreateTableCommand(createTableInput(tableName)));
    } catch (error) {
      // Another process created it between our describe and create.
      if (!isErrorNamed(error, 'ResourceInUseException')) throw error;
    }
  }
  const deadline = Date.now() + TABLE_ACTIVE_TIMEOUT_MS;
  for (let delayMs = 20; ; delayMs = Math.min(delayMs * 2, 1_000)) {
    const status = await tableStatus(client, tableName);
    if (status === 'ACTIVE') return;
    if (Date.now() > deadline) {
      throw new StoreError(
        `table ${tableName} is ${status ?? 'missing'}, not ACTIVE, after ${TABLE_ACTIVE_TIMEOUT_MS} ms`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

/**
 * Time limits of a request to the embedded server, a process on this machine that answers in
 * milliseconds: one that takes longer is hung (stopped, swapped out, a stalled disk). Each
 * attempt fails with a TimeoutError (the store is unavailable: 503) instead of waiting forever.
 */
export const EMBEDDED_CONNECTION_TIMEOUT_MS = 2_000;
export const EMBEDDED_REQUEST_TIMEOUT_MS = 5_000;

/**
 * A DynamoDB client. With an endpoint (the embedded server, LocalStack) it uses fixed dummy
 * credentials; without one, the default AWS credential chain and region. `embedded: true` marks
 * the embedded server, which checks that requests carry an AWS4 Authorization header but never
 * verifies the signature: such requests get a fixed header instead of a computed signature. Its
 * requests also get connection and request timeouts (`EMBEDDED_…_TIMEOUT_MS` unless given).
 */
export function createDynamoClient(
  options: {
    endpoint?: string;
    region?: string;
    embedded?: boolean;
    /** Attempts of one request, the first included (5 unless given). */
    maxAttempts?: number;
    /** Per attempt; default for the embedded server only (none otherwise). */
    connectionTimeoutMs?: number;
    requestTimeoutMs?: number;
  } = {},
): DynamoDBClient {
  const connectionTimeout =
    options.connectionTimeoutMs ?? (options.embedded ? EMBEDDED_CONNECTION_TIMEOUT_MS : undefined);
  const requestTimeout =
    options.requestTimeoutMs ?? (options.embedded ? EMBEDDED_REQUEST_TIMEOUT_MS : undefined);
  const timeouts = connectionTimeout !== undefined || requestTimeout !== undefined;
  const client = new DynamoDBClient({
    maxAttempts: options.maxAttempts ?? 5,
    ...(timeouts
      ? {
          requestHandler: new NodeHttpHandler({
            ...(connectionTimeout === undefined ? {} : { connectionTimeout }),
            ...(requestTimeout === undefined ? {} : { requestTimeout, throwOnRequestTimeout: true }),
          }),
        }
      : {}),
    ...(options.region === undefined ? {} : { region: options.region }),
    ...(options.endpoint === undefined
      ? {}
      : {
          endpoint: options.endpoint,
          region: options.region ?? 'us-east-1',
          credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
        }),
    ...(options.embedded ? { signer: embeddedServerSigner } : {}),
  });
  // On every client, whatever its endpoint: DynamoDB itself refuses the same requests, dynalite
  // does not, and the tests run on clients made here with and without `embedded`.
  client.middlewareStack.add(enforceExpressionLimit, {
    step: 'initialize',
    name: 'updraftExpressionLimit',
  });
  // The SDK's own request logging is not used (no SDK logger is set), but its middleware filters
  // every request and response for sensitive fields all the same: a few percent of the CPU a
  // request costs.
  client.middlewareStack.remove('loggerMiddleware');
  return client;
}

/** DynamoDB refuses any expression string longer than 4 KB (its documented limit). */
export const DYNAMODB_EXPRESSION_MAX_BYTES = 4_096;

const EXPRESSION_FIELDS = [
  'UpdateExpression',
  'ConditionExpression',
  'KeyConditionExpression',
  'FilterExpression',
  'ProjectionExpression',
] as const;

/**
 * What dynalite does not check and DynamoDB does: the 4 KB limit of each expression. Clients made
 * by `createDynamoClient` refuse such requests before sending them, as DynamoDB would (a
 * ValidationException), so code that builds expressions from many entries is held to the limit
 * by every test, simulation and standalone run.
 */
const enforceExpressionLimit =
  // biome-ignore lint/suspicious/noExplicitAny: the SDK's middleware signature is generic over every command.
    (next: (args: any) => Promise<any>) =>
    // biome-ignore lint/suspicious/noExplicitAny: as above.
    async (args: any) => {
      const input = (args.input ?? {}) as Record<string, unknown>;
      for (const field of EXPRESSION_FIELDS) {
        const expression = input[field];
        if (typeof expression === 'string' && Buffer.byteLength(expression) > DYNAMODB_EXPRESSION_MAX_BYTES) {
          throw new DynamoDBServiceException({
            name: 'ValidationException',
            $fault: 'client',
            $metadata: { httpStatusCode: 400 },
            message: `Invalid ${field}: Expression size has exceeded the maximum allowed size; expression size: ${Buffer.byteLength(expression)}`,
          });
        }
      }
      return next(args);
    };

const embeddedServerSigner = {
  async sign<T extends { headers: Record<string, string> }>(request: T): Promise<T> {
    request.headers.authorization =
      'AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0';
    request.headers['x-amz-date'] = '20260101T000000Z';
    return request;
  },
};

/** Wraps a client for the store: native values in and out, undefined fields left out of items. */
export function toDocumentClient(client: DynamoDBClient): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
}

/** `createDynamoClient` wrapped by `toDocumentClient`; destroy it with `client.destroy()`. */
export function createDocumentClient(
  options: { endpoint?: string; region?: string } = {},
): DynamoDBDocumentClient {
  return toDocumentClient(createDynamoClient(options));
}

import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The few AWS operations the deployed bundles call besides DynamoDB, answered over HTTP on
 * 127.0.0.1 as the services answer them, for tests that run the real bundles (SDK clients and
 * all) where no local implementation exists: Secrets Manager `GetSecretValue`, SQS
 * `SendMessageBatch` and `GetQueueAttributes` (JSON protocol), S3 `PutObject`, `ListObjectsV2` and
 * `GetObject` (path style). Every request is recorded with its headers. A POST to `/hooks` is
 * answered 204, for the example DAGs' webhook notifier.
 */
export interface FakeAws {
  endpoint: string;
  /** Messages sent, by queue URL path (`/<account>/<name>`). */
  queues: Map<string, { messageId: string; receiptHandle: string; body: string; receiveCount: number }[]>;
  /** Objects put, by `<bucket>/<key>`. */
  objects: Map<string, string>;
  requests: { method: string; path: string; target?: string; headers: IncomingHttpHeaders }[];
  close(): Promise<void>;
}

export async function startFakeAws(options: { secrets: Record<string, string> }): Promise<FakeAws> {
  const queues: FakeAws['queues'] = new Map();
  const objects = new Map<string, string>();
  const requests: FakeAws['requests'] = [];
  const server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const target = request.headers['x-amz-target'] as string | undefined;
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    requests.push({
      method: request.method ?? '',
      path: url.pathname + url.search,
      ...(target === undefined ? {} : { target }),
      headers: request.headers,
    });
    const json = (status: number, value: unknown, type: string) => {
      response.writeHead(status, { 'content-type': type });
      response.end(JSON.stringify(value));
    };
    if (target?.startsWith('secretsmanager.')) {
      const { SecretId } = JSON.parse(body) as { SecretId: string };
      const type = 'application/x-amz-json-1.1';
      const secret = options.secrets[SecretId];
      if (secret === undefined)
        return json(400, { __type: 'ResourceNotFoundException', message: SecretId }, type);
      return json(200, { ARN: SecretId, Name: SecretId, SecretString: secret, VersionId: 'v1' }, type);
    }
    if (target?.startsWith('AmazonSQS.')) {
      const type = 'application/x-amz-json-1.0';
      const input = JSON.parse(body) as { QueueUrl: string; Entries?: { Id: string; MessageBody: string }[] };
      const path = new URL(input.QueueUrl).pathname;
      const queue = queues.get(path) ?? [];
      queues.set(path, queue);
      if (target === 'AmazonSQS.SendMessageBatch') {
        const successful = (input.Entries ?? []).map((entry) => {
          const messageId = randomUUID();
          queue.push({ messageId, receiptHandle: messageId, body: entry.MessageBody, receiveCount: 1 });
          const md5 = createHash('md5').update(entry.MessageBody).digest('hex');
          return { Id: entry.Id, MessageId: messageId, MD5OfMessageBody: md5 };
        });
        return json(200, { Successful: successful, Failed: [] }, type);
      }
      if (target === 'AmazonSQS.GetQueueAttributes') {
        const attributes = {
          ApproximateNumberOfMessages: String(queue.length),
          ApproximateNumberOfMessagesNotVisible: '0',
          ApproximateNumberOfMessagesDelayed: '0',
        };
        return json(200, { Attributes: attributes }, type);
      }
      return json(400, { __type: 'com.amazonaws.sqs#UnsupportedOperation', message: target }, type);
    }
    if (request.method === 'POST' && url.pathname === '/hooks') {
      response.writeHead(204);
      return response.end();
    }
    const [, bucket = '', ...rest] = url.pathname.split('/');
    const key = decodeURIComponent(rest.join('/'));
    if (request.method === 'PUT') {
      objects.set(`${bucket}/${key}`, body);
      response.writeHead(200, { etag: '"0"' });
      return response.end();
    }
    if (request.method === 'GET' && url.searchParams.get('list-type') === '2') {
      const prefix = url.searchParams.get('prefix') ?? '';
      const keys = [...objects.keys()]
        .filter((stored) => stored.startsWith(`${bucket}/${prefix}`))
        .map((stored) => stored.slice(bucket.length + 1))
        .sort();
      const contents = keys
        .map(
          (stored) =>
            `<Contents><Key>${stored}</Key><Size>${objects.get(`${bucket}/${stored}`)?.length}</Size></Contents>`,
        )
        .join('');
      response.writeHead(200, { 'content-type': 'application/xml' });
      return response.end(
        `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${bucket}</Name><Prefix>${prefix}</Prefix><KeyCount>${keys.length}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>${contents}</ListBucketResult>`,
      );
    }
    if (request.method === 'GET') {
      const object = objects.get(`${bucket}/${key}`);
      if (object === undefined) {
        response.writeHead(404, { 'content-type': 'application/xml' });
        return response.end(
          '<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>',
        );
      }
      response.writeHead(200, { 'content-type': 'text/plain' });
      return response.end(object);
    }
    response.writeHead(400);
    response.end(`not answered by the fake: ${request.method} ${url.pathname}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    queues,
    objects,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { SESv2Client, SendEmailCommand } from '@aws-sdk/client-sesv2';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CallbackContext } from '#sdk/callback-context.ts';
import { DagValidationError } from '#sdk/errors.ts';
import { sesEmailNotifier, snsNotifier, summaryOf, webhookNotifier } from '#sdk/notifiers.ts';

const lines: string[] = [];
function context(overrides: Partial<CallbackContext> = {}): CallbackContext {
  return {
    kind: 'task_failure',
    callbackId: 'cb-123',
    idempotencyKey: 'cb-123',
    attempt: 2,
    maxAttempts: 3,
    previousAttemptMayHaveRun: true,
    dagId: 'etl',
    runId: 'manual__1',
    logicalDate: '2026-12-01T00:00:00.000Z',
    conf: {},
    taskId: 'load',
    mapIndex: -1,
    tryNumber: 3,
    errorMessage: 'boom',
    errorType: 'task_error',
    log: (...args: unknown[]) => lines.push(args.join(' ')),
    signal: new AbortController().signal,
    ...overrides,
  };
}

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

describe('webhookNotifier against a local HTTP server', () => {
  let server: Server;
  let url: string;
  const received: Received[] = [];
  let answers: number[] = [];

  beforeAll(async () => {
    server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      request.on('end', () => {
        received.push({ headers: request.headers, body });
        response.statusCode = answers.shift() ?? 200;
        response.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/hook`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });
  afterEach(() => {
    received.length = 0;
    answers = [];
    delete process.env.UPDRAFT_TEST_HOOK_URL;
    delete process.env.UPDRAFT_TEST_HOOK_SECRET;
  });

  it('POSTs the summary with the idempotency key, and sends the same key again after a 5xx', async () => {
    answers = [503, 200];
    await webhookNotifier({ url, headers: { 'x-team': 'data' } })(context());
    expect(received).toHaveLength(2);
    for (const request of received) {
      expect(request.headers['idempotency-key']).toBe('cb-123');
      expect(request.headers['content-type']).toBe('application/json');
      expect(request.headers['x-team']).toBe('data');
      expect(JSON.parse(request.body)).toEqual(summaryOf(context()));
    }
    expect(JSON.parse(received[0]?.body as string)).toMatchObject({
      kind: 'task_failure',
      dag_id: 'etl',
      task_id: 'load',
      try_number: 3,
      error_message: 'boom',
    });
  });

  it('fails the attempt on a 4xx without asking again, and after its tries on 5xx', async () => {
    answers = [400];
    await expect(webhookNotifier({ url })(context())).rejects.toThrow(
      'webhookNotifier: the webhook answered 400',
    );
    expect(received).toHaveLength(1);
    received.length = 0;
    answers = [500, 500];
    await expect(webhookNotifier({ url, tries: 2 })(context())).rejects.toThrow(
      /answered 500 \(after 2 requests\)/,
    );
    expect(received).toHaveLength(2);
  });

  it('refuses a timeout of 0 or over 15 minutes when the DAG is built, and takes 15 minutes', () => {
    expect(() => webhookNotifier({ url, timeout: 0 })).toThrow(
      'webhookNotifier: timeout must be more than 0 and at most 15 minutes (the longest a callback attempt may run), got 0 ms',
    );
    expect(() => webhookNotifier({ url, timeout: '30d' })).toThrow(/at most 15 minutes/);
    expect(() => webhookNotifier({ url, timeout: '15m' })).not.toThrow();
  });

  it('reads the URL and the signing secret from the worker environment, and signs the body', async () => {
    process.env.UPDRAFT_TEST_HOOK_URL = url;
    process.env.UPDRAFT_TEST_HOOK_SECRET = 'hook-secret';
    const notify = webhookNotifier({
      urlFromEnv: 'UPDRAFT_TEST_HOOK_URL',
      signingSecretFromEnv: 'UPDRAFT_TEST_HOOK_SECRET',
    });
    await notify(context());
    const [request] = received;
    const expected = createHmac('sha256', 'hook-secret')
      .update(request?.body as string)
      .digest('hex');
    expect(request?.headers['updraft-signature']).toBe(`sha256=${expected}`);
    delete process.env.UPDRAFT_TEST_HOOK_URL;
    await expect(notify(context())).rejects.toThrow(
      'the environment variable UPDRAFT_TEST_HOOK_URL is not set',
    );
  });

  it("keeps its own headers over the author's of any case, and never quotes the URL in an error", async () => {
    await webhookNotifier({ url, headers: { 'Content-Type': 'text/plain', 'Idempotency-Key': 'mine' } })(
      context(),
    );
    expect(received[0]?.headers['content-type']).toBe('application/json');
    expect(received[0]?.headers['idempotency-key']).toBe('cb-123');
    process.env.UPDRAFT_TEST_HOOK_URL = 'hooks.example.com/services/T0/B0/XOXB-SECRET';
    const fromEnv = webhookNotifier({ urlFromEnv: 'UPDRAFT_TEST_HOOK_URL' });
    const refused = await Promise.resolve(fromEnv(context())).catch((error: Error) => error.message);
    expect(refused).toBe('webhookNotifier: the URL in UPDRAFT_TEST_HOOK_URL is not a URL');
    lines.length = 0;
    const closed = 'http://127.0.0.1:9/hooks/SECRET-PATH';
    const unreachable = await Promise.resolve(webhookNotifier({ url: closed, tries: 2 })(context())).catch(
      (error: Error) => error.message,
    );
    expect(unreachable).toMatch(/could not be reached \(\w+\) \(after 2 requests\)/);
    expect(`${unreachable} ${lines.join(' ')}`).not.toContain('SECRET');
  });

  it('is refused at parse time without exactly one of url and urlFromEnv, or with a bad URL', () => {
    expect(() => webhookNotifier({ url: 'https://user:pass@example.com/hook' })).toThrow(
      'webhookNotifier: url carries credentials (fetch refuses them): send them in headers instead',
    );
    expect(() => webhookNotifier({})).toThrow(DagValidationError);
    expect(() => webhookNotifier({ url, urlFromEnv: 'X' })).toThrow('give exactly one of url and urlFromEnv');
    expect(() => webhookNotifier({ url: 'not a url' })).toThrow('is not a URL');
    expect(webhookNotifier({ url }).name).toBe('webhookNotifier');
  });
});

describe('snsNotifier and sesEmailNotifier send exactly these commands', () => {
  const sns = mockClient(SNSClient);
  const ses = mockClient(SESv2Client);
  afterEach(() => {
    sns.reset();
    ses.reset();
  });

  it('publishes the summary to a standard topic', async () => {
    sns.on(PublishCommand).resolves({ MessageId: 'm-1' });
    const topicArn = 'arn:aws:sns:eu-west-1:123456789012:alerts';
    await snsNotifier({ topicArn, client: new SNSClient({ region: 'eu-west-1' }) })(context());
    expect(sns.commandCalls(PublishCommand).map((call) => call.args[0].input)).toEqual([
      {
        TopicArn: topicArn,
        Subject: '[Updraft] task_failure: etl/manual__1 load (try 3)',
        Message: JSON.stringify(summaryOf(context())),
      },
    ]);
  });

  it('dedupes on the idempotency key on a FIFO topic', async () => {
    sns.on(PublishCommand).resolves({ MessageId: 'm-2' });
    const topicArn = 'arn:aws:sns:eu-west-1:123456789012:alerts.fifo';
    await snsNotifier({ topicArn, subject: 'ETL', client: new SNSClient({ region: 'eu-west-1' }) })(
      context(),
    );
    expect(sns.commandCalls(PublishCommand)[0]?.args[0].input).toEqual({
      TopicArn: topicArn,
      Subject: 'ETL',
      Message: JSON.stringify(summaryOf(context())),
      MessageGroupId: 'etl',
      MessageDeduplicationId: 'cb-123',
    });
    expect(() => snsNotifier({ topicArn: 'alerts' })).toThrow('is not an SNS topic ARN');
  });

  it('sends a plain-text email through SES', async () => {
    ses.on(SendEmailCommand).resolves({ MessageId: 'e-1' });
    await sesEmailNotifier({
      from: 'updraft@example.com',
      to: ['oncall@example.com'],
      client: new SESv2Client({ region: 'eu-west-1' }),
    })(
      context({
        kind: 'dag_success',
        taskId: undefined,
        tryNumber: undefined,
        mapIndex: undefined,
        errorMessage: undefined,
        errorType: undefined,
      }),
    );
    const input = ses.commandCalls(SendEmailCommand)[0]?.args[0].input;
    expect(input).toEqual({
      FromEmailAddress: 'updraft@example.com',
      Destination: { ToAddresses: ['oncall@example.com'] },
      Content: {
        Simple: {
          Subject: { Data: '[Updraft] dag_success: etl/manual__1' },
          Body: {
            Text: {
              Data: [
                'kind: dag_success',
                'dag_id: etl',
                'dag_run_id: manual__1',
                'logical_date: 2026-12-01T00:00:00.000Z',
                'attempt: 2',
                'idempotency_key: cb-123',
              ].join('\n'),
            },
          },
        },
      },
    });
    expect(() => sesEmailNotifier({ from: 'a@b.c', to: [] })).toThrow('give 1 to 50 recipients');
  });
});

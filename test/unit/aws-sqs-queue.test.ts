import {
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  MessageNotInflight,
  ReceiptHandleIsInvalid,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { allCustomMatcher } from 'aws-sdk-client-mock-vitest';
import type {} from 'aws-sdk-client-mock-vitest/extend';
import { beforeEach, describe, expect, it } from 'vitest';
import { SqsRequestError } from '#aws/errors.ts';
import { SQS_MAX_MESSAGE_BYTES, SqsQueue } from '#aws/sqs-queue.ts';
import { MessageTooLargeError, QueueError } from '#queue/errors.ts';

expect.extend(allCustomMatcher);

const QUEUE_URL = 'https://sqs.eu-west-1.amazonaws.com/123456789012/updraft-tasks-default';
const sqs = mockClient(SQSClient);

/** How the SDK surfaces a query-compatible error code SQS does not model (`InvalidParameterValue`). */
function sqsError(name: string, message: string): Error {
  return Object.assign(new Error(message), { name, Code: name, $fault: 'client', $metadata: {} });
}

/** What SQS answers for a receipt that expired, and for a message no longer in flight. */
const EXPIRED =
  'Value AQEBexample for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.';
const NOT_IN_FLIGHT =
  'Value AQEBexample for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.';

function makeQueue(maxMessageBytes?: number): SqsQueue {
  return new SqsQueue({
    client: new SQSClient({ region: 'eu-west-1' }),
    queueUrl: QUEUE_URL,
    name: 'tasks_default',
    ...(maxMessageBytes !== undefined ? { maxMessageBytes } : {}),
  });
}

function sentBatches(): { Id?: string; MessageBody?: string; DelaySeconds?: number }[][] {
  return sqs.commandCalls(SendMessageBatchCommand).map((call) => call.args[0].input.Entries ?? []);
}

beforeEach(() => {
  sqs.reset();
});

describe('SqsQueue.send', () => {
  it('sends 23 messages in three SendMessageBatch calls of 10, 10 and 3 with per-batch entry ids', async () => {
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const bodies = Array.from({ length: 23 }, (_, index) => `m${index}`);

    const result = await makeQueue().send(bodies.map((body) => ({ body })));

    expect(result).toEqual({ failed: [] });
    expect(sqs).toHaveReceivedCommandTimes(SendMessageBatchCommand, 3);
    expect(sqs.commandCalls(SendMessageBatchCommand).map((call) => call.args[0].input)).toEqual([
      {
        QueueUrl: QUEUE_URL,
        Entries: bodies.slice(0, 10).map((body, i) => ({ Id: String(i), MessageBody: body })),
      },
      {
        QueueUrl: QUEUE_URL,
        Entries: bodies.slice(10, 20).map((body, i) => ({ Id: String(i), MessageBody: body })),
      },
      {
        QueueUrl: QUEUE_URL,
        Entries: bodies.slice(20).map((body, i) => ({ Id: String(i), MessageBody: body })),
      },
    ]);
  });

  it('passes a delay as DelaySeconds, up to 900', async () => {
    sqs.on(SendMessageBatchCommand).resolves({});

    await makeQueue().send([{ body: 'now' }, { body: 'later', delaySeconds: 900 }]);

    expect(sqs).toHaveReceivedCommandExactlyOnceWith(SendMessageBatchCommand, {
      QueueUrl: QUEUE_URL,
      Entries: [
        { Id: '0', MessageBody: 'now' },
        { Id: '1', MessageBody: 'later', DelaySeconds: 900 },
      ],
    });
  });

  it('returns the entries a batch refused, with their error code and message, and nothing else', async () => {
    sqs
      .on(SendMessageBatchCommand)
      .resolvesOnce({
        Successful: [{ Id: '0', MessageId: 'a', MD5OfMessageBody: 'x' }],
        Failed: [{ Id: '1', SenderFault: false, Code: 'InternalError', Message: 'try again' }],
      })
      .resolvesOnce({
        Successful: [],
        Failed: [{ Id: '0', SenderFault: true, Code: 'InvalidMessageContents', Message: 'bad' }],
      });
    const messages = Array.from({ length: 11 }, (_, index) => ({ body: `m${index}` }));

    const result = await makeQueue().send(messages);

    expect(result.failed).toEqual([
      { message: { body: 'm1' }, error: 'InternalError: try again' },
      { message: { body: 'm10' }, error: 'InvalidMessageContents: bad' },
    ]);
  });

  it('throws a SqsRequestError naming the queue when a batch call fails as a whole', async () => {
    const cause = new Error('socket hang up');
    sqs.on(SendMessageBatchCommand).rejects(cause);

    const sending = makeQueue().send([{ body: 'x' }]);

    await expect(sending).rejects.toThrow(SqsRequestError);
    await expect(sending).rejects.toMatchObject({
      message: 'SendMessageBatch on the tasks_default queue failed: socket hang up',
      cause,
    });
  });

  it('refuses a body one UTF-8 byte over the limit with nothing sent, naming the queue, size and limit', async () => {
    sqs.on(SendMessageBatchCommand).resolves({});
    // 'é' is one UTF-16 unit but two UTF-8 bytes: the limit counts bytes, as SQS does.
    const body = `é${'a'.repeat(SQS_MAX_MESSAGE_BYTES - 1)}`;
    expect(body.length).toBe(SQS_MAX_MESSAGE_BYTES);

    const sending = makeQueue().send([{ body: 'fine' }, { body }]);

    await expect(sending).rejects.toThrow(MessageTooLargeError);
    await expect(sending).rejects.toThrow(
      "A message of 262145 bytes is larger than the tasks_default queue's limit of 262144 bytes",
    );
    expect(sqs).not.toHaveReceivedAnyCommand();
  });

  it('sends a body of exactly the limit', async () => {
    sqs.on(SendMessageBatchCommand).resolves({});
    const body = `é${'a'.repeat(SQS_MAX_MESSAGE_BYTES - 2)}`;

    await makeQueue().send([{ body }]);

    expect(sqs).toHaveReceivedCommandExactlyOnceWith(SendMessageBatchCommand, {
      QueueUrl: QUEUE_URL,
      Entries: [{ Id: '0', MessageBody: body }],
    });
  });

  it('starts a new batch before the bodies of one batch together pass the limit', async () => {
    sqs.on(SendMessageBatchCommand).resolves({});
    const big = 'b'.repeat(100_000);

    await makeQueue().send([{ body: big }, { body: big }, { body: big }, { body: 'small' }]);

    expect(sentBatches().map((entries) => entries.map((entry) => entry.MessageBody?.length))).toEqual([
      [100_000, 100_000],
      [100_000, 5],
    ]);
  });

  it('refuses a delay of 901 seconds with nothing sent, naming the limit', async () => {
    const sending = makeQueue().send([{ body: 'x', delaySeconds: 901 }]);

    await expect(sending).rejects.toThrow(QueueError);
    await expect(sending).rejects.toThrow(
      "A delay of 901 seconds on the tasks_default queue is outside SQS's 0..900 whole seconds",
    );
    expect(sqs).not.toHaveReceivedAnyCommand();
  });

  it('refuses a fractional or negative delay', async () => {
    await expect(makeQueue().send([{ body: 'x', delaySeconds: 1.5 }])).rejects.toThrow(QueueError);
    await expect(makeQueue().send([{ body: 'x', delaySeconds: -1 }])).rejects.toThrow(QueueError);
    expect(sqs).not.toHaveReceivedAnyCommand();
  });

  it('refuses a character SQS rejects, naming it', async () => {
    await expect(makeQueue().send([{ body: '{"a":"\uFFFF"}' }])).rejects.toThrow(
      'A message for the tasks_default queue contains U+FFFF at index 6',
    );
    await expect(makeQueue().send([{ body: 'lone \uD800 surrogate' }])).rejects.toThrow('U+D800');
    expect(sqs).not.toHaveReceivedAnyCommand();
  });

  it('accepts tabs, newlines and characters outside the basic plane', async () => {
    sqs.on(SendMessageBatchCommand).resolves({});
    await makeQueue().send([{ body: 'a\tb\r\nc 🚀 \uE000' }]);
    expect(sqs).toHaveReceivedCommandTimes(SendMessageBatchCommand, 1);
  });

  it('makes no call for no messages', async () => {
    expect(await makeQueue().send([])).toEqual({ failed: [] });
    expect(sqs).not.toHaveReceivedAnyCommand();
  });
});

describe('SqsQueue.receive', () => {
  it('asks for the receive count, caps the batch at 10 and the long-poll at 20 seconds', async () => {
    sqs.on(ReceiveMessageCommand).resolves({
      Messages: [
        { MessageId: 'm1', ReceiptHandle: 'r1', Body: 'one', Attributes: { ApproximateReceiveCount: '3' } },
      ],
    });

    const received = await makeQueue().receive({ maxMessages: 50, waitTimeMs: 60_000 });

    expect(received).toEqual([{ messageId: 'm1', receiptHandle: 'r1', body: 'one', receiveCount: 3 }]);
    expect(sqs.commandCalls(ReceiveMessageCommand).map((call) => call.args[0].input)).toEqual([
      {
        QueueUrl: QUEUE_URL,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 20,
        MessageSystemAttributeNames: ['ApproximateReceiveCount'],
      },
    ]);
  });

  it('counts a message without a receive count as received once', async () => {
    sqs
      .on(ReceiveMessageCommand)
      .resolves({ Messages: [{ MessageId: 'm1', ReceiptHandle: 'r1', Body: 'one' }] });

    const [message] = await makeQueue().receive({ maxMessages: 1, waitTimeMs: 0 });

    expect(message?.receiveCount).toBe(1);
  });

  it('rounds a wait up to whole seconds and passes the visibility timeout when given', async () => {
    sqs.on(ReceiveMessageCommand).resolves({});

    expect(
      await makeQueue().receive({ maxMessages: 3, waitTimeMs: 1_500, visibilityTimeoutSeconds: 45 }),
    ).toEqual([]);

    expect(sqs).toHaveReceivedCommandExactlyOnceWith(ReceiveMessageCommand, {
      QueueUrl: QUEUE_URL,
      MaxNumberOfMessages: 3,
      WaitTimeSeconds: 2,
      VisibilityTimeout: 45,
      MessageSystemAttributeNames: ['ApproximateReceiveCount'],
    });
  });

  it('hands the abort signal to the SDK', async () => {
    sqs.on(ReceiveMessageCommand).resolves({});
    const controller = new AbortController();

    await makeQueue().receive({ maxMessages: 1, waitTimeMs: 0, signal: controller.signal });

    expect((sqs.commandCalls(ReceiveMessageCommand)[0]?.args as unknown[] | undefined)?.[1]).toEqual({
      abortSignal: controller.signal,
    });
  });

  it('returns no messages when the long-poll is aborted', async () => {
    const controller = new AbortController();
    sqs.on(ReceiveMessageCommand).callsFake(() => {
      controller.abort();
      return Promise.reject(Object.assign(new Error('Request aborted'), { name: 'AbortError' }));
    });

    expect(
      await makeQueue().receive({ maxMessages: 1, waitTimeMs: 20_000, signal: controller.signal }),
    ).toEqual([]);
  });

  it('makes no call when the signal is already aborted', async () => {
    expect(
      await makeQueue().receive({ maxMessages: 1, waitTimeMs: 20_000, signal: AbortSignal.abort() }),
    ).toEqual([]);
    expect(sqs).not.toHaveReceivedAnyCommand();
  });

  it('throws a SqsRequestError when a receive fails without an abort', async () => {
    sqs.on(ReceiveMessageCommand).rejects(new Error('throttled'));
    await expect(makeQueue().receive({ maxMessages: 1, waitTimeMs: 0 })).rejects.toThrow(
      new SqsRequestError('ReceiveMessage on the tasks_default queue failed: throttled'),
    );
  });
});

describe('SqsQueue.delete', () => {
  it('deletes 12 receipts in DeleteMessageBatch calls of 10 and 2', async () => {
    sqs.on(DeleteMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const handles = Array.from({ length: 12 }, (_, index) => `r${index}`);

    await makeQueue().delete(handles);

    expect(sqs).toHaveReceivedCommandTimes(DeleteMessageBatchCommand, 2);
    expect(sqs).toHaveReceivedNthCommandWith(DeleteMessageBatchCommand, 1, {
      QueueUrl: QUEUE_URL,
      Entries: handles.slice(0, 10).map((handle, i) => ({ Id: String(i), ReceiptHandle: handle })),
    });
    expect(sqs).toHaveReceivedNthCommandWith(DeleteMessageBatchCommand, 2, {
      QueueUrl: QUEUE_URL,
      Entries: [
        { Id: '0', ReceiptHandle: 'r10' },
        { Id: '1', ReceiptHandle: 'r11' },
      ],
    });
  });

  it('ignores entries whose receipt handle is invalid', async () => {
    sqs.on(DeleteMessageBatchCommand).resolves({
      Successful: [{ Id: '0' }],
      Failed: [{ Id: '1', SenderFault: true, Code: 'ReceiptHandleIsInvalid', Message: 'not valid' }],
    });

    await expect(makeQueue().delete(['r0', 'stale'])).resolves.toBeUndefined();
  });

  it('ignores an entry whose receipt handle has expired (SQS: InvalidParameterValue about ReceiptHandle)', async () => {
    sqs.on(DeleteMessageBatchCommand).resolves({
      Successful: [{ Id: '0' }],
      Failed: [{ Id: '1', SenderFault: true, Code: 'InvalidParameterValue', Message: EXPIRED }],
    });

    await expect(makeQueue().delete(['fresh', 'expired'])).resolves.toBeUndefined();
  });

  it('throws for an InvalidParameterValue entry that is not about the receipt', async () => {
    sqs.on(DeleteMessageBatchCommand).resolves({
      Successful: [],
      Failed: [
        {
          Id: '0',
          SenderFault: true,
          Code: 'InvalidParameterValue',
          Message: 'Value x for parameter Id is invalid.',
        },
      ],
    });

    await expect(makeQueue().delete(['r0'])).rejects.toThrow(SqsRequestError);
  });

  it('throws naming the queue when an entry fails for another reason', async () => {
    sqs.on(DeleteMessageBatchCommand).resolves({
      Successful: [],
      Failed: [
        { Id: '0', SenderFault: true, Code: 'ReceiptHandleIsInvalid', Message: 'not valid' },
        { Id: '1', SenderFault: false, Code: 'InternalError', Message: 'oops' },
      ],
    });

    await expect(makeQueue().delete(['stale', 'r1'])).rejects.toThrow(
      new SqsRequestError(
        'DeleteMessageBatch on the tasks_default queue failed for 1 of 2 messages: InternalError: oops',
      ),
    );
  });

  it('makes no call for no receipts', async () => {
    await makeQueue().delete([]);
    expect(sqs).not.toHaveReceivedAnyCommand();
  });
});

describe('SqsQueue.changeVisibility', () => {
  it('sends ChangeMessageVisibility', async () => {
    sqs.on(ChangeMessageVisibilityCommand).resolves({});

    await makeQueue().changeVisibility('r1', 120);

    expect(sqs).toHaveReceivedCommandExactlyOnceWith(ChangeMessageVisibilityCommand, {
      QueueUrl: QUEUE_URL,
      ReceiptHandle: 'r1',
      VisibilityTimeout: 120,
    });
  });

  it('ignores a receipt no longer valid or a message no longer in flight', async () => {
    sqs
      .on(ChangeMessageVisibilityCommand)
      .rejectsOnce(new ReceiptHandleIsInvalid({ message: 'invalid', $metadata: {} }))
      .rejectsOnce(new MessageNotInflight({ message: 'not in flight', $metadata: {} }));

    await expect(makeQueue().changeVisibility('gone', 10)).resolves.toBeUndefined();
    await expect(makeQueue().changeVisibility('gone', 10)).resolves.toBeUndefined();
  });

  it('ignores an expired receipt, which SQS reports as InvalidParameterValue', async () => {
    sqs.on(ChangeMessageVisibilityCommand).rejects(sqsError('InvalidParameterValue', EXPIRED));
    await expect(makeQueue().changeVisibility('expired', 0)).resolves.toBeUndefined();
  });

  it('ignores a message no longer in flight as SQS actually reports it (InvalidParameterValue)', async () => {
    sqs.on(ChangeMessageVisibilityCommand).rejects(sqsError('InvalidParameterValue', NOT_IN_FLIGHT));
    await expect(makeQueue().changeVisibility('deleted', 0)).resolves.toBeUndefined();
  });

  it('still throws an InvalidParameterValue that is not about the receipt (a visibility over 12 h)', async () => {
    sqs
      .on(ChangeMessageVisibilityCommand)
      .rejects(
        sqsError(
          'InvalidParameterValue',
          'Value 43201 for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200.',
        ),
      );
    await expect(makeQueue().changeVisibility('r1', 43_201)).rejects.toThrow(/VisibilityTimeout/);
  });

  it('throws other failures', async () => {
    sqs.on(ChangeMessageVisibilityCommand).rejects(new Error('access denied'));
    await expect(makeQueue().changeVisibility('r1', 10)).rejects.toThrow(SqsRequestError);
  });
});

describe('SqsQueue.stats', () => {
  it('reads the approximate counts from GetQueueAttributes', async () => {
    sqs.on(GetQueueAttributesCommand).resolves({
      Attributes: {
        ApproximateNumberOfMessages: '7',
        ApproximateNumberOfMessagesNotVisible: '2',
        ApproximateNumberOfMessagesDelayed: '1',
      },
    });

    expect(await makeQueue().stats()).toEqual({ visible: 7, inFlight: 2, delayed: 1 });
    expect(sqs).toHaveReceivedCommandExactlyOnceWith(GetQueueAttributesCommand, {
      QueueUrl: QUEUE_URL,
      AttributeNames: [
        'ApproximateNumberOfMessages',
        'ApproximateNumberOfMessagesNotVisible',
        'ApproximateNumberOfMessagesDelayed',
      ],
    });
  });
});

import {
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  type ReceiveMessageCommandOutput,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { MessageTooLargeError, QueueError } from '#queue/errors.ts';
import {
  MAX_BATCH,
  type OutgoingMessage,
  type Queue,
  type QueueName,
  type ReceivedMessage,
  type ReceiveOptions,
  type SendResult,
} from '#queue/port.ts';
import { awsErrorName, SqsRequestError } from './errors.ts';

/** SQS's message size limit, which also bounds the sum of the bodies in one batch call. */
export const SQS_MAX_MESSAGE_BYTES = 262_144;
/** SQS's largest delivery delay. */
export const SQS_MAX_DELAY_SECONDS = 900;
/** SQS's longest long-poll. */
const MAX_WAIT_SECONDS = 20;

/**
 * Characters SQS accepts in a body (#x9 | #xA | #xD | #x20–#xD7FF | #xE000–#xFFFD | #x10000–#x10FFFF).
 * JSON can carry the others (U+FFFE, U+FFFF), and SQS would refuse the whole batch call for them.
 */
const FORBIDDEN_CHARACTER = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

export interface SqsQueueOptions {
  client: SQSClient;
  queueUrl: string;
  name: QueueName;
  /**
   * Largest body in UTF-8 bytes (`UPDRAFT_QUEUE_MAX_MESSAGE_BYTES`), also used as the budget of one
   * batch call, since SQS limits the batch's total the same way.
   */
  maxMessageBytes?: number;
}

/**
 * The queue port on SQS. Everything the port's limits refuse is refused before a call is made,
 * with the same errors the in-memory queue throws, so a send that throws sent nothing unless an
 * SQS call failed part-way through.
 */
export class SqsQueue implements Queue {
  readonly name: QueueName;
  readonly #client: SQSClient;
  readonly #queueUrl: string;
  readonly #maxMessageBytes: number;

  constructor(options: SqsQueueOptions) {
    this.name = options.name;
    this.#client = options.client;
    this.#queueUrl = options.queueUrl;
    this.#maxMessageBytes = options.maxMessageBytes ?? SQS_MAX_MESSAGE_BYTES;
  }

  async send(messages: readonly OutgoingMessage[]): Promise<SendResult> {
    const sizes = messages.map((message) => this.#validate(message));
    const failed: SendResult['failed'] = [];
    // Sequential batches: a send is at most a few dozen calls, and a failure then stops the rest.
    for (const batch of this.#batches(messages, sizes)) {
      const entries = batch.map(
        (message, index): SendMessageBatchRequestEntry => ({
          Id: String(index),
          MessageBody: message.body,
          ...(message.delaySeconds !== undefined ? { DelaySeconds: message.delaySeconds } : {}),
        }),
      );
      const output = await this.#call('SendMessageBatch', () =>
        this.#client.send(new SendMessageBatchCommand({ QueueUrl: this.#queueUrl, Entries: entries })),
      );
      for (const entry of output.Failed ?? []) {
        const message = batch[Number(entry.Id)];
        if (!message) continue;
        failed.push({ message, error: `${entry.Code ?? 'UnknownError'}: ${entry.Message ?? 'no message'}` });
      }
    }
    return { failed };
  }

  async receive(options: ReceiveOptions): Promise<ReceivedMessage[]> {
    const { signal } = options;
    if (signal?.aborted) return [];
    const command = new ReceiveMessageCommand({
      QueueUrl: this.#queueUrl,
      MaxNumberOfMessages: Math.min(Math.max(Math.trunc(options.maxMessages), 1), MAX_BATCH),
      // Rounded up: a wait asked for must not become a short poll, which samples only some servers.
      WaitTimeSeconds: Math.min(Math.max(Math.ceil(options.waitTimeMs / 1000), 0), MAX_WAIT_SECONDS),
      ...(options.visibilityTimeoutSeconds !== undefined
        ? { VisibilityTimeout: options.visibilityTimeoutSeconds }
        : {}),
      MessageSystemAttributeNames: ['ApproximateReceiveCount'],
    });
    let output: ReceiveMessageCommandOutput;
    try {
      // The SDK's abort signal cancels the HTTP request of a long-poll, not only the wait for it.
      output = await (signal
        ? this.#client.send(command, { abortSignal: signal })
        : this.#client.send(command));
    } catch (error) {
      // An aborted long-poll is how a consumer stops, as the in-memory queue's receive returns empty.
      if (signal?.aborted) return [];
      throw this.#failure('ReceiveMessage', error);
    }
    return (output.Messages ?? []).map((message) => ({
      messageId: message.MessageId ?? '',
      receiptHandle: message.ReceiptHandle ?? '',
      body: message.Body ?? '',
      receiveCount: receiveCountOf(message.Attributes?.ApproximateReceiveCount),
    }));
  }

  async delete(receiptHandles: readonly string[]): Promise<void> {
    for (let start = 0; start < receiptHandles.length; start += MAX_BATCH) {
      const batch = receiptHandles.slice(start, start + MAX_BATCH);
      const output = await this.#call('DeleteMessageBatch', () =>
        this.#client.send(
          new DeleteMessageBatchCommand({
            QueueUrl: this.#queueUrl,
            Entries: batch.map((handle, index) => ({ Id: String(index), ReceiptHandle: handle })),
          }),
        ),
      );
      // The port ignores unknown receipts: the message was deleted already or received again since.
      const failures = (output.Failed ?? []).filter((entry) => !isStaleReceipt(entry.Code, entry.Message));
      if (failures.length > 0) {
        const reasons = failures.map((entry) => `${entry.Code}: ${entry.Message}`).join('; ');
        throw new SqsRequestError(
          `DeleteMessageBatch on the ${this.name} queue failed for ${failures.length} of ${batch.length} messages: ${reasons}`,
        );
      }
    }
  }

  async changeVisibility(receiptHandle: string, visibilityTimeoutSeconds: number): Promise<void> {
    try {
      await this.#client.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: this.#queueUrl,
          ReceiptHandle: receiptHandle,
          VisibilityTimeout: visibilityTimeoutSeconds,
        }),
      );
    } catch (error) {
      // As in the in-memory queue: a message deleted or received again since is no longer ours to extend.
      if (isStaleReceipt(awsErrorCode(error), error instanceof Error ? error.message : undefined)) return;
      throw this.#failure('ChangeMessageVisibility', error);
    }
  }

  async stats(): Promise<{ visible: number; inFlight: number; delayed: number }> {
    const output = await this.#call('GetQueueAttributes', () =>
      this.#client.send(
        new GetQueueAttributesCommand({
          QueueUrl: this.#queueUrl,
          AttributeNames: [
            'ApproximateNumberOfMessages',
            'ApproximateNumberOfMessagesNotVisible',
            'ApproximateNumberOfMessagesDelayed',
          ],
        }),
      ),
    );
    const attributes = output.Attributes ?? {};
    return {
      visible: Number(attributes.ApproximateNumberOfMessages ?? 0),
      inFlight: Number(attributes.ApproximateNumberOfMessagesNotVisible ?? 0),
      delayed: Number(attributes.ApproximateNumberOfMessagesDelayed ?? 0),
    };
  }

  /** The body's size in UTF-8 bytes, after checking what SQS would refuse. */
  #validate(message: OutgoingMessage): number {
    const bytes = Buffer.byteLength(message.body, 'utf8');
    if (bytes > this.#maxMessageBytes) {
      throw new MessageTooLargeError(
        `A message of ${bytes} bytes is larger than the ${this.name} queue's limit of ` +
          `${this.#maxMessageBytes} bytes (UPDRAFT_QUEUE_MAX_MESSAGE_BYTES)`,
      );
    }
    const delay = message.delaySeconds ?? 0;
    if (!Number.isInteger(delay) || delay < 0 || delay > SQS_MAX_DELAY_SECONDS) {
      throw new QueueError(
        `A delay of ${delay} seconds on the ${this.name} queue is outside SQS's 0..${SQS_MAX_DELAY_SECONDS} whole seconds`,
      );
    }
    const forbidden = FORBIDDEN_CHARACTER.exec(message.body);
    if (forbidden) {
      const codePoint = forbidden[0].codePointAt(0) ?? 0;
      throw new QueueError(
        `A message for the ${this.name} queue contains U+${codePoint.toString(16).toUpperCase().padStart(4, '0')} ` +
          `at index ${forbidden.index}, a character SQS does not accept in a message body`,
      );
    }
    return bytes;
  }

  /** Up to `MAX_BATCH` messages per call whose bodies together stay within the size limit. */
  *#batches(messages: readonly OutgoingMessage[], sizes: readonly number[]): Generator<OutgoingMessage[]> {
    let batch: OutgoingMessage[] = [];
    let batchBytes = 0;
    for (const [index, message] of messages.entries()) {
      const bytes = sizes[index] ?? 0;
      if (batch.length === MAX_BATCH || (batch.length > 0 && batchBytes + bytes > this.#maxMessageBytes)) {
        yield batch;
        batch = [];
        batchBytes = 0;
      }
      batch.push(message);
      batchBytes += bytes;
    }
    if (batch.length > 0) yield batch;
  }

  async #call<T>(operation: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw this.#failure(operation, error);
    }
  }

  #failure(operation: string, error: unknown): SqsRequestError {
    const reason = error instanceof Error ? error.message : String(error);
    return new SqsRequestError(`${operation} on the ${this.name} queue failed: ${reason}`, { cause: error });
  }
}

/**
 * Whether SQS refused a receipt because it is no longer ours: the message was deleted, received
 * again since (a new receipt), or its receipt expired. SQS says so with `ReceiptHandleIsInvalid`
 * or `MessageNotInflight`, and for an expired receipt or a message no longer in flight with
 * `InvalidParameterValue` and a message about the parameter `ReceiptHandle`. Any other
 * `InvalidParameterValue` (a visibility timeout out of range, say) is the caller's mistake.
 */
function isStaleReceipt(code: string | undefined, message: string | undefined): boolean {
  if (code === 'ReceiptHandleIsInvalid' || code === 'MessageNotInflight') return true;
  return code === 'InvalidParameterValue' && /\bReceiptHandle\b/.test(message ?? '');
}

/** The error code of an SQS error: its name, or the query protocol's `Code` when the SDK does not model it. */
function awsErrorCode(error: unknown): string | undefined {
  const name = awsErrorName(error);
  if (name && name !== 'Error' && name !== 'SQSServiceException') return name;
  const code = typeof error === 'object' && error !== null && 'Code' in error ? error.Code : undefined;
  return typeof code === 'string' ? code : name;
}

/** SQS counts the receive being handled, so a count that is missing means this is the first. */
function receiveCountOf(value: string | undefined): number {
  const count = Number.parseInt(value ?? '', 10);
  return Number.isFinite(count) && count > 0 ? count : 1;
}

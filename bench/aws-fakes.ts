import {
  GetObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandInput,
  PutObjectCommand,
  type PutObjectCommandInput,
  type S3Client,
} from '@aws-sdk/client-s3';
import {
  CreateScheduleCommand,
  type CreateScheduleCommandInput,
  type SchedulerClient,
} from '@aws-sdk/client-scheduler';
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  type DeleteMessageBatchCommandInput,
  GetQueueAttributesCommand,
  SendMessageBatchCommand,
  type SendMessageBatchCommandInput,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { InMemoryQueue } from '#queue/memory.ts';
import { QUEUE_NAMES, type QueueName } from '#queue/port.ts';
import { sqsBilledRequests } from './aws-cost.ts';

/**
 * Stand-ins for the SDK clients of SQS, S3 and EventBridge Scheduler under the real adapters
 * (`SqsQueue`, `S3LogStore`, `AwsWakeTimers`): each command is carried out on an in-memory
 * equivalent and counted as the AWS request it is, so the counts include the adapters' own
 * batching (10 messages or 256 KB per SendMessageBatch, one PutObject per log chunk).
 */

export interface RequestTally {
  /** By `Operation queue-or-bucket`. */
  calls: Record<string, number>;
  /** SQS: billed requests (one per 64 KB chunk of payload) by operation. */
  billed: Record<string, number>;
  entries: Record<string, number>;
  payloadBytes: Record<string, number>;
}

export function emptyRequestTally(): RequestTally {
  return { calls: {}, billed: {}, entries: {}, payloadBytes: {} };
}

const queueUrlOf = (name: QueueName) => `https://sqs.us-east-1.amazonaws.com/123456789012/updraft-${name}`;

export class FakeAws {
  readonly #queues: Readonly<Record<QueueName, InMemoryQueue>>;
  readonly #objects = new Map<string, string>();
  #tally = emptyRequestTally();
  active = false;

  constructor(queues: Readonly<Record<QueueName, InMemoryQueue>>) {
    this.#queues = queues;
  }

  /** Counts so far, and a fresh start. */
  take(): RequestTally {
    const taken = this.#tally;
    this.#tally = emptyRequestTally();
    return taken;
  }

  /** Counts one request the bench models rather than sends (the event source mappings' receives and deletes). */
  count(operation: string, target: string, entries: number, payloadBytes = 0): void {
    if (!this.active) return;
    const key = `${operation} ${target}`;
    add(this.#tally.calls, key, 1);
    add(this.#tally.billed, operation, sqsBilledRequests(payloadBytes));
    add(this.#tally.entries, key, entries);
    add(this.#tally.payloadBytes, key, payloadBytes);
  }

  queueUrl(name: QueueName): string {
    return queueUrlOf(name);
  }

  readonly sqs = {
    send: async (command: unknown): Promise<unknown> => {
      if (command instanceof SendMessageBatchCommand) return this.#sendBatch(command.input);
      if (command instanceof DeleteMessageBatchCommand) return this.#deleteBatch(command.input);
      if (command instanceof ChangeMessageVisibilityCommand) {
        const { QueueUrl, ReceiptHandle, VisibilityTimeout } = command.input;
        this.count('ChangeMessageVisibility', this.#queueOf(QueueUrl).name, 1);
        await this.#queueOf(QueueUrl).changeVisibility(ReceiptHandle ?? '', VisibilityTimeout ?? 0);
        return {};
      }
      if (command instanceof GetQueueAttributesCommand) {
        const queue = this.#queueOf(command.input.QueueUrl);
        this.count('GetQueueAttributes', queue.name, 0);
        const stats = await queue.stats();
        return {
          Attributes: {
            ApproximateNumberOfMessages: String(stats.visible),
            ApproximateNumberOfMessagesNotVisible: String(stats.inFlight),
            ApproximateNumberOfMessagesDelayed: String(stats.delayed),
          },
        };
      }
      throw new Error(`The bench's SQS stand-in does not handle ${(command as object).constructor.name}`);
    },
  } as unknown as SQSClient;

  readonly s3 = {
    send: async (command: unknown): Promise<unknown> => {
      if (command instanceof PutObjectCommand) {
        const { Key, Body } = command.input as PutObjectCommandInput;
        const text = String(Body ?? '');
        this.count('PutObject', 'log bucket', 1, Buffer.byteLength(text));
        this.#objects.set(Key ?? '', text);
        return {};
      }
      if (command instanceof GetObjectCommand) {
        const key = command.input.Key ?? '';
        this.count('GetObject', 'log bucket', 1);
        const text = this.#objects.get(key);
        if (text === undefined) throw Object.assign(new Error(`NoSuchKey ${key}`), { name: 'NoSuchKey' });
        return { Body: { transformToString: async () => text } };
      }
      if (command instanceof ListObjectsV2Command) {
        const { Prefix = '' } = command.input as ListObjectsV2CommandInput;
        this.count('ListObjectsV2', 'log bucket', 1);
        const keys = [...this.#objects.keys()].filter((key) => key.startsWith(Prefix)).sort();
        return { Contents: keys.map((key) => ({ Key: key })), IsTruncated: false };
      }
      throw new Error(`The bench's S3 stand-in does not handle ${(command as object).constructor.name}`);
    },
  } as unknown as S3Client;

  /** One-time schedules fire at their time as a send to the scheduler queue (counted as the SQS request it is). */
  readonly scheduler = {
    send: async (command: unknown): Promise<unknown> => {
      if (!(command instanceof CreateScheduleCommand))
        throw new Error(
          `The bench's Scheduler stand-in does not handle ${(command as object).constructor.name}`,
        );
      const input = command.input as CreateScheduleCommandInput;
      this.count('CreateSchedule', 'timers', 1);
      const due = Date.parse(`${/^at\((.*)\)$/.exec(input.ScheduleExpression ?? '')?.[1] ?? ''}Z`);
      setTimeout(
        () => {
          this.count('ScheduleInvocation', 'timers', 1);
          this.count(
            'SendMessage',
            'scheduler (from EventBridge Scheduler)',
            1,
            Buffer.byteLength(input.Target?.Input ?? ''),
          );
          void this.#queues.scheduler.send([{ body: input.Target?.Input ?? '' }]);
        },
        Math.max(0, (Number.isFinite(due) ? due : Date.now()) - Date.now()),
      ).unref();
      return {};
    },
  } as unknown as SchedulerClient;

  async #sendBatch(input: SendMessageBatchCommandInput): Promise<unknown> {
    const queue = this.#queueOf(input.QueueUrl);
    const entries = input.Entries ?? [];
    const bytes = entries.reduce((total, entry) => total + Buffer.byteLength(entry.MessageBody ?? ''), 0);
    this.count('SendMessageBatch', queue.name, entries.length, bytes);
    const { failed } = await queue.send(
      entries.map((entry) => ({
        body: entry.MessageBody ?? '',
        ...(entry.DelaySeconds === undefined ? {} : { delaySeconds: entry.DelaySeconds }),
      })),
    );
    const failedBodies = new Set(failed.map((failure) => failure.message.body));
    return {
      Successful: entries
        .filter((entry) => !failedBodies.has(entry.MessageBody ?? ''))
        .map((entry) => ({ Id: entry.Id })),
      Failed: entries
        .filter((entry) => failedBodies.has(entry.MessageBody ?? ''))
        .map((entry) => ({ Id: entry.Id, Code: 'InternalError', Message: 'refused', SenderFault: false })),
    };
  }

  async #deleteBatch(input: DeleteMessageBatchCommandInput): Promise<unknown> {
    const queue = this.#queueOf(input.QueueUrl);
    const entries = input.Entries ?? [];
    this.count('DeleteMessageBatch', queue.name, entries.length);
    await queue.delete(entries.map((entry) => entry.ReceiptHandle ?? ''));
    return { Successful: entries.map((entry) => ({ Id: entry.Id })), Failed: [] };
  }

  #queueOf(url: string | undefined): InMemoryQueue {
    const name = QUEUE_NAMES.find((candidate) => queueUrlOf(candidate) === url);
    if (!name) throw new Error(`No queue at ${url}`);
    return this.#queues[name];
  }
}

function add(counts: Record<string, number>, key: string, by: number): void {
  counts[key] = (counts[key] ?? 0) + by;
}

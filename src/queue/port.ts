/**
 * The queue port, shaped after SQS so the SQS adapter is a thin mapping: batches of at most
 * `MAX_BATCH` messages, a message size limit, a visibility timeout, a receive count and
 * dead-lettering after a number of receives. Queues are hints, not truth: a message can be lost,
 * delayed or delivered twice, and every consumer must cope.
 */

export const MAX_BATCH = 10;

/** The queues of one deployment. Workers read task queues highest priority first; callbacks come before all. */
export const QUEUE_NAMES = ['callbacks', 'tasks_high', 'tasks_default', 'tasks_low', 'scheduler'] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

export interface OutgoingMessage {
  body: string;
  /** Delivery delay; SQS allows up to 900 seconds. */
  delaySeconds?: number;
}

/** Entries of a send that the queue did not take (SQS batches fail per entry); the rest were sent. */
export interface SendResult {
  failed: { message: OutgoingMessage; error: string }[];
}

export interface ReceivedMessage {
  messageId: string;
  receiptHandle: string;
  body: string;
  /** How many times this message has been received, this receive included. */
  receiveCount: number;
}

export interface ReceiveOptions {
  maxMessages: number;
  /** Long-poll: how long to wait for a first message when none is ready. */
  waitTimeMs: number;
  visibilityTimeoutSeconds?: number;
  signal?: AbortSignal;
}

export interface Queue {
  readonly name: QueueName;
  /**
   * Sends messages, in as few batch calls as the batch limit allows. Entries the queue refused are
   * returned (a batch can fail per entry); a call that fails as a whole throws.
   */
  send(messages: readonly OutgoingMessage[]): Promise<SendResult>;
  receive(options: ReceiveOptions): Promise<ReceivedMessage[]>;
  /** Deletes processed messages, batched like `send`. Unknown or expired receipts are ignored. */
  delete(receiptHandles: readonly string[]): Promise<void>;
  /** Extends (or shortens) how long a received message stays invisible. */
  changeVisibility(receiptHandle: string, visibilityTimeoutSeconds: number): Promise<void>;
  /** Approximate number of visible and in-flight messages, for metrics. */
  stats(): Promise<{ visible: number; inFlight: number; delayed: number }>;
}

export type Queues = Readonly<Record<QueueName, Queue>>;

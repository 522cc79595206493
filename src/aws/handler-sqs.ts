import type { ScheduledEvent, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { ReceivedMessage } from '#queue/port.ts';

/**
 * The Lambda event shapes the handlers recognise, checked by their discriminating fields only:
 * the event comes from a trigger the stack configured, and its body is validated by the engine
 * (scheduling requests, workloads) where it is read.
 */

/** An SQS batch from an event source mapping. */
export function isSqsEvent(event: unknown): event is SQSEvent {
  if (!isObject(event) || !Array.isArray(event.Records)) return false;
  return event.Records.every((record: unknown) => isObject(record) && record.eventSource === 'aws:sqs');
}

/** The periodic EventBridge rule's event (`aws.events`, `Scheduled Event`). */
export function isScheduledEvent(event: unknown): event is ScheduledEvent {
  return isObject(event) && event.source === 'aws.events' && event['detail-type'] === 'Scheduled Event';
}

/**
 * A record as the queue port's consumers see a received message. The worker bundle must not carry
 * the SQS client for this (the event source mapping deletes messages, the worker sends none), so
 * it is not taken from the SQS adapter's module.
 */
export function receivedMessageOf(record: SQSRecord): ReceivedMessage {
  const count = Number.parseInt(record.attributes?.ApproximateReceiveCount ?? '', 10);
  return {
    messageId: record.messageId,
    receiptHandle: record.receiptHandle,
    body: record.body,
    // SQS counts the receive being handled: a missing count means this is the first.
    receiveCount: Number.isFinite(count) && count > 0 ? count : 1,
  };
}

/** The partial batch response: the records to deliver again, by message id, each once. */
export function batchResponseOf(failedMessageIds: Iterable<string>): SQSBatchResponse {
  return { batchItemFailures: [...new Set(failedMessageIds)].map((itemIdentifier) => ({ itemIdentifier })) };
}

/** A short description of an event for an error message, without its payload. */
export function describeEvent(event: unknown): string {
  if (!isObject(event)) return typeof event;
  const keys = Object.keys(event).slice(0, 8).join(', ');
  const source = typeof event.source === 'string' ? ` from ${event.source}` : '';
  return `an event${source} with keys ${keys || '(none)'}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

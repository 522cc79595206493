export class QueueError extends Error {
  override name = 'QueueError';
}

/** A message body is larger than the queue's message size limit (`UPDRAFT_QUEUE_MAX_MESSAGE_BYTES`). */
export class MessageTooLargeError extends QueueError {
  override name = 'MessageTooLargeError';
}

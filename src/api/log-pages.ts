import { InvalidRequestError } from '#engine/errors.ts';

/**
 * A try's log answered in pages bounded in bytes, so every answer fits where it must go: a Lambda
 * response is at most 6 MB (6,291,456 bytes) as the runtime sends it, which is the handler's
 * result JSON-serialized, so the log text is JSON-escaped twice (in the body, then the body in the
 * result). A byte of text grows to at most 7 bytes that way (a control character: `\u0001` in the
 * body, `\\u0001` in the result), so a page of 768 KiB is at most 5.25 MiB, with room for the
 * headers. A log at `UPDRAFT_LOG_MAX_BYTES` (5 MiB) is 7 pages.
 */
export const LOG_PAGE_MAX_BYTES = 768 * 1024;

export interface LogPage {
  content: string;
  /** Where the next page starts; absent when this page reaches the end of the log as it is now. */
  continuation_token?: string;
}

/**
 * The page of `log` from the position `token` names (the start without one), cut at a UTF-8
 * character boundary at most `maxBytes` in. The token is opaque to clients: a byte offset.
 */
export function logPageOf(log: string, token: string | undefined, maxBytes = LOG_PAGE_MAX_BYTES): LogPage {
  const bytes = Buffer.from(log, 'utf8');
  const start = token === undefined ? 0 : offsetOf(token);
  if (start > bytes.length || isContinuationByte(bytes[start])) {
    throw new InvalidRequestError(
      'The log `token` does not name a place in this log: start again without it',
    );
  }
  let end = Math.min(bytes.length, start + maxBytes);
  // Never inside a character: back to the first byte of the one the limit cuts.
  while (end > start && end < bytes.length && isContinuationByte(bytes[end])) end -= 1;
  const content = bytes.subarray(start, end).toString('utf8');
  return end < bytes.length ? { content, continuation_token: tokenOf(end) } : { content };
}

function isContinuationByte(byte: number | undefined): boolean {
  return byte !== undefined && (byte & 0xc0) === 0x80;
}

function tokenOf(offset: number): string {
  return Buffer.from(JSON.stringify({ offset }), 'utf8').toString('base64url');
}

function offsetOf(token: string): number {
  let offset: unknown;
  try {
    offset = (JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { offset?: unknown }).offset;
  } catch {
    offset = undefined;
  }
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
    throw new InvalidRequestError(
      'The log `token` is not one this API gave: pass the `continuation_token` of the previous page as it was',
    );
  }
  return offset;
}

import { decodeTaskInstanceId, EXECUTION_BATCH_PATH } from '#contracts/execution-api.ts';
import type { TaskInstanceKey } from '#core/models.ts';

/** One worker call the Execution API answered: sent alone, or one of a batch's. */
export interface AnsweredCall {
  method: string;
  path: string;
  /** The call's body, parsed. */
  body: unknown;
  status: number;
  answer: unknown;
}

/**
 * The calls one request to the Execution API carried, with their answers: the request itself, or
 * for `POST /execution/batch` each call of the batch (none when the batch was refused whole).
 */
export function answeredCalls(
  method: string,
  path: string,
  requestText: string,
  status: number,
  responseText: string,
): AnsweredCall[] {
  const parse = (text: string): unknown => {
    try {
      return text ? (JSON.parse(text) as unknown) : null;
    } catch {
      return text;
    }
  };
  if (path !== EXECUTION_BATCH_PATH) {
    return [{ method, path, body: parse(requestText), status, answer: parse(responseText) }];
  }
  if (status !== 200) return [];
  const { calls } = parse(requestText) as { calls: { method: string; path: string; body: unknown }[] };
  const { results } = parse(responseText) as { results: { status: number; body: unknown }[] };
  return calls.map((call, index) => ({
    method: call.method,
    path: call.path,
    body: call.body,
    status: results[index]?.status ?? 0,
    answer: results[index]?.body,
  }));
}

/** The TI a task-instance call names, and what it does (`run`, `heartbeat` or `state`). */
export function taskInstanceCall(path: string): { key: TaskInstanceKey; action: string } | undefined {
  const match = /^\/execution\/task-instances\/([^/]+)\/(run|heartbeat|state)$/.exec(path);
  const key = match?.[1] ? decodeTaskInstanceId(match[1]) : undefined;
  return key && match?.[2] ? { key, action: match[2] } : undefined;
}

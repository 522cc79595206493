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

/**
 * Sends a request to the Execution API through `send`, and names the tries it started: each start
 * it carried (alone or in a batch) that the API answered 200.
 */
export async function sendNotingStarts(
  request: Request,
  send: (request: Request) => Promise<Response>,
): Promise<{ response: Response; started: { key: TaskInstanceKey; tryNumber: number }[] }> {
  const sent = request.body ? await request.clone().text() : '';
  const response = await send(request);
  const path = new URL(request.url).pathname;
  const answered = answeredCalls(request.method, path, sent, response.status, await response.clone().text());
  const started = answered.flatMap((call) => {
    const ti = taskInstanceCall(call.path);
    if (ti?.action !== 'run' || call.status !== 200) return [];
    return [{ key: ti.key, tryNumber: (call.answer as { try_number: number }).try_number }];
  });
  return { response, started };
}

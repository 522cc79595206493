import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { SETTING_ENV_VARS } from '#config/settings.ts';
import { errorSchema } from '#contracts/common.ts';
import {
  BATCH_ANSWER_MAX_BYTES,
  type BatchCall,
  type BatchResult,
  EXECUTION_API_VERSION_HEADER,
  EXECUTION_BATCH_PATH,
  executionBatchBody,
  executionBatchResultsSchema,
  isBatchableCall,
  REFRESHED_TOKEN_HEADER,
} from '#contracts/execution-api.ts';
import type { ApiDeps } from './app.ts';
import { jsonBody as body, jsonContent as json } from './route-docs.ts';

/**
 * `POST /execution/batch`: several worker calls in one request, each served by its own route as
 * if it came alone (its token checked, its body validated, its answer kept), side by side. The
 * scheduling requests they make are gathered and sent together, per run, before the answer:
 * a Lambda worker's batch of reports costs one invocation and one queue request instead of one
 * of each per report. The batch itself carries no token; every call carries its own.
 */
export function registerExecutionBatchRoute(
  app: OpenAPIHono,
  deps: Pick<ApiDeps, 'notifier' | 'metrics' | 'settings' | 'log'>,
): void {
  const maxCalls = deps.settings.executionBatchMaxCalls;
  app.openapi(
    createRoute({
      method: 'post',
      path: EXECUTION_BATCH_PATH,
      tags: ['Execution'],
      // The batch carries no token of its own: each call carries its call's.
      security: [],
      description: `Up to ${maxCalls} calls (UPDRAFT_EXECUTION_BATCH_MAX_CALLS) to the start, heartbeat and report routes of task instances and callbacks, each with its own token.`,
      request: { body: body(executionBatchBody) },
      responses: {
        200: json(
          executionBatchResultsSchema,
          'One result per call, in the order sent: the status, answer and refreshed token the call would have had alone',
        ),
        400: json(errorSchema, 'An Updraft-API-Version this server does not speak'),
        413: json(errorSchema, 'The request body is over UPDRAFT_REQUEST_MAX_BYTES'),
        422: json(errorSchema, `Invalid request, or more calls than UPDRAFT_EXECUTION_BATCH_MAX_CALLS`),
      },
    }),
    async (c) => {
      const { calls } = c.req.valid('json');
      if (calls.length > maxCalls) {
        return c.json(
          {
            detail: `A batch of ${calls.length} calls is over the limit of ${maxCalls} (${SETTING_ENV_VARS.executionBatchMaxCalls})`,
            status: 422,
          },
          422,
        );
      }
      const version = c.req.header(EXECUTION_API_VERSION_HEADER);
      deps.metrics.increment('execution_api.batches');
      deps.metrics.increment('execution_api.batched_calls', calls.length);
      // serveCall never throws: every call settles before the gathered requests are sent.
      const results = await deps.notifier.collect(() =>
        Promise.all(calls.map((call) => serveCall(app, call, version, deps.log))),
      );
      return c.json({ results: withinAnswerBudget(results) }, 200);
    },
  );
}

/**
 * One call of a batch, through the router as a request of its own. Never throws: a call the
 * router could not even be asked (a malformed request) is that call's 500.
 */
async function serveCall(
  app: OpenAPIHono,
  call: BatchCall,
  version: string | undefined,
  log: ApiDeps['log'],
): Promise<BatchResult> {
  try {
    return await dispatch(app, call, version);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    log.error('A batched call failed before its route answered', {
      call: `${call.method} ${call.path}`,
      error: message.replaceAll(call.token, '[token]'),
    });
    return { status: 500, body: { detail: 'Internal server error', status: 500 } };
  }
}

async function dispatch(
  app: OpenAPIHono,
  call: BatchCall,
  version: string | undefined,
): Promise<BatchResult> {
  // Only those routes, as written: their ids are base64url, so no dot segment or escape gets through.
  if (!isBatchableCall(call.method, call.path)) {
    const detail = `${call.method} ${call.path} cannot be sent in a batch: only the start, heartbeat and report calls of task instances and callbacks can`;
    return { status: 400, body: { detail, status: 400 } };
  }
  const response = await app.request(call.path, {
    method: call.method,
    headers: {
      authorization: `Bearer ${call.token}`,
      'content-type': 'application/json',
      ...(version ? { [EXECUTION_API_VERSION_HEADER]: version } : {}),
    },
    body: JSON.stringify(call.body),
  });
  const text = await response.text();
  const refreshed = response.headers.get(REFRESHED_TOKEN_HEADER);
  return {
    status: response.status,
    body: parsed(text),
    ...(refreshed ? { refreshed_token: refreshed } : {}),
  };
}

/**
 * The results as answered: those that would take the answer past BATCH_ANSWER_MAX_BYTES become a
 * 503 that asks for the call alone (it was served; alone it is answered again, a start by its
 * start id, a report by its report id).
 */
function withinAnswerBudget(results: BatchResult[]): BatchResult[] {
  let bytes = 0;
  return results.map((result) => {
    const size = Buffer.byteLength(JSON.stringify(result));
    if (bytes + size <= BATCH_ANSWER_MAX_BYTES) {
      bytes += size;
      return result;
    }
    const detail = `This call's answer does not fit in the batch's answer (at most ${BATCH_ANSWER_MAX_BYTES} bytes): send it again alone, where it is answered as it was here (a start by its start_id, a report by its report_id)`;
    return { status: 503, body: { detail, status: 503 }, send_alone: true as const };
  });
}

function parsed(text: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

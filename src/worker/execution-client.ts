import type * as z from 'zod';
import type { FinishCallbackBody, startCallbackBody, startedCallbackSchema } from '#contracts/callbacks.ts';
import {
  EXECUTION_API_VERSION_HEADER,
  EXECUTION_API_VERSIONS,
  encodeTaskInstanceId,
  type FinishedResponse,
  type FinishTaskBody,
  type HeartbeatBody,
  REFRESHED_TOKEN_HEADER,
  type StartedTask,
  type StartTaskBody,
  type XComResponse,
} from '#contracts/execution-api.ts';
import type { TaskInstanceKey } from '#core/models.ts';
import { HttpClient, type HttpClientOptions, type RetryPolicy } from '#http/client.ts';
import { HttpError } from '#http/errors.ts';

export type { LogChunk, StartedTask } from '#contracts/execution-api.ts';
export type StartedCallback = z.infer<typeof startedCallbackSchema>;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** How a try ended, before the report's id and log chunk are added. */
export type FinishState = DistributiveOmit<FinishTaskBody, 'report_id' | 'log'>;

export interface CallOptions {
  retry?: Partial<RetryPolicy>;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * The worker's client of the Execution API. The token is passed per call: one client serves
 * every workload, and each workload swaps in the refreshed tokens the API hands out.
 * Failures are HttpError (`status`, `retryable`); retries follow the call's policy.
 */
export class ExecutionClient {
  readonly #http: HttpClient;

  /**
   * `fetch` defaults to the global one (HTTP). Standalone passes its API's own `fetch`, which
   * serves the request through the same router, authentication and validation without a socket.
   */
  constructor(baseUrl: string, options: Omit<HttpClientOptions, 'baseUrl'> = {}) {
    const version = EXECUTION_API_VERSIONS[EXECUTION_API_VERSIONS.length - 1] as string;
    this.#http = new HttpClient({
      baseUrl,
      ...options,
      headers: { [EXECUTION_API_VERSION_HEADER]: version, ...options.headers },
    });
  }

  async start(
    token: string,
    key: TaskInstanceKey,
    worker: StartTaskBody,
    options: CallOptions = {},
  ): Promise<{ started: StartedTask; refreshedToken: string | undefined }> {
    const response = await this.#http.request<StartedTask>({
      method: 'PATCH',
      path: `/execution/task-instances/${encodeTaskInstanceId(key)}/run`,
      token,
      body: worker,
      ...options,
    });
    return { started: response.body, refreshedToken: refreshedToken(response.headers) };
  }

  async heartbeat(
    token: string,
    key: TaskInstanceKey,
    body: HeartbeatBody,
    options: CallOptions = {},
  ): Promise<{ refreshedToken: string | undefined }> {
    const response = await this.#http.request({
      method: 'PUT',
      path: `/execution/task-instances/${encodeTaskInstanceId(key)}/heartbeat`,
      token,
      body,
      ...options,
    });
    return { refreshedToken: refreshedToken(response.headers) };
  }

  /** `duplicate`: the API had already recorded this report (same `report_id`). */
  async finish(
    token: string,
    key: TaskInstanceKey,
    body: FinishTaskBody,
    options: CallOptions = {},
  ): Promise<{ duplicate: boolean }> {
    const response = await this.#http.request<FinishedResponse>({
      method: 'PATCH',
      path: `/execution/task-instances/${encodeTaskInstanceId(key)}/state`,
      token,
      body,
      ...options,
    });
    return { duplicate: response.body.duplicate === true };
  }

  /** Starts the attempt its token names. */
  async startCallback(
    token: string,
    callbackId: string,
    worker: z.infer<typeof startCallbackBody>,
    options: CallOptions = {},
  ): Promise<StartedCallback> {
    const response = await this.#http.request<StartedCallback>({
      method: 'PATCH',
      path: `/execution/callbacks/${encodeURIComponent(callbackId)}/run`,
      token,
      body: worker,
      ...options,
    });
    return response.body;
  }

  /** Reports how the attempt ended; `duplicate` when the API had recorded this report already. */
  async finishCallback(
    token: string,
    callbackId: string,
    body: FinishCallbackBody,
    options: CallOptions = {},
  ): Promise<{ duplicate: boolean; state: string }> {
    const response = await this.#http.request<{ duplicate?: boolean; state: string }>({
      method: 'PATCH',
      path: `/execution/callbacks/${encodeURIComponent(callbackId)}/state`,
      token,
      body,
      ...options,
    });
    return { duplicate: response.body.duplicate === true, state: response.body.state };
  }

  /** The XCom's JSON text, or undefined when the task pushed none. */
  async getXCom(
    token: string,
    key: TaskInstanceKey,
    xcomKey: string,
    options: CallOptions = {},
  ): Promise<string | undefined> {
    const path = `/execution/xcoms/${[key.dagId, key.runId, key.taskId, xcomKey].map(encodeURIComponent).join('/')}?map_index=${key.mapIndex}`;
    try {
      return (await this.#http.request<XComResponse>({ method: 'GET', path, token, ...options })).body.value;
    } catch (error) {
      if (error instanceof HttpError && error.status === 404) return undefined;
      throw error;
    }
  }
}

function refreshedToken(headers: Headers): string | undefined {
  return headers.get(REFRESHED_TOKEN_HEADER) ?? undefined;
}

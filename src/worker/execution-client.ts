import type { z } from '@hono/zod-openapi';
import type { finishTaskBody, startedTaskSchema } from '#api/schemas.ts';
import { encodeTaskInstanceId } from '#api/serializers.ts';
import type { TaskInstanceKey } from '#core/models.ts';

/** The Execution API's wire shapes, taken from the schemas the API validates with. */
export type StartedTask = z.infer<typeof startedTaskSchema>;
export type FinishBody = z.infer<typeof finishTaskBody>;

/** The API answered with an error status; `status` tells whether trying again can help. */
export class ExecutionApiError extends Error {
  override name = 'ExecutionApiError';
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
  /** 409: the TI moved on (cleared, failed as a zombie, a duplicate delivery): drop the work. */
  get isConflict(): boolean {
    return this.status === 409;
  }
}

const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/**
 * The worker's client of the Execution API, with one token per workload. Transient failures
 * (network errors, 5xx, 429) are retried with backoff; a 4xx is final and surfaces at once.
 */
export class ExecutionClient {
  readonly #baseUrl: string;
  readonly #attempts: number;
  readonly #fetch: typeof fetch;

  /**
   * `fetch` defaults to the global one (HTTP). Standalone passes its API's own `fetch`, which
   * serves the request through the same router, authentication and validation without a socket.
   */
  constructor(baseUrl: string, options: { attempts?: number; fetch?: typeof fetch } = {}) {
    this.#baseUrl = baseUrl.replace(/\/$/, '');
    this.#attempts = options.attempts ?? 5;
    this.#fetch = options.fetch ?? fetch;
  }

  start(token: string, key: TaskInstanceKey, worker: { hostname: string; worker_id: string; pid: number }) {
    return this.#call<StartedTask>(
      token,
      'PATCH',
      `/execution/task-instances/${encodeTaskInstanceId(key)}/run`,
      worker,
    );
  }

  heartbeat(token: string, key: TaskInstanceKey, logs?: string) {
    return this.#call(token, 'PUT', `/execution/task-instances/${encodeTaskInstanceId(key)}/heartbeat`, {
      logs,
    });
  }

  finish(token: string, key: TaskInstanceKey, body: FinishBody) {
    return this.#call(token, 'PATCH', `/execution/task-instances/${encodeTaskInstanceId(key)}/state`, body);
  }

  /** The XCom's JSON text, or undefined when the task pushed none. */
  async getXCom(token: string, key: TaskInstanceKey, xcomKey: string): Promise<string | undefined> {
    const path = `/execution/xcoms/${[key.dagId, key.runId, key.taskId, xcomKey].map(encodeURIComponent).join('/')}?map_index=${key.mapIndex}`;
    try {
      return (await this.#call<{ value: string }>(token, 'GET', path)).value;
    } catch (error) {
      if (error instanceof ExecutionApiError && error.status === 404) return undefined;
      throw error;
    }
  }

  async #call<T>(token: string, method: string, path: string, body?: unknown): Promise<T> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= this.#attempts; attempt += 1) {
      try {
        const response = await this.#fetch(`${this.#baseUrl}${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        const text = await response.text();
        if (response.ok) return (text ? JSON.parse(text) : {}) as T;
        const detail = safeDetail(text) ?? response.statusText;
        lastError = new ExecutionApiError(response.status, `${method} ${path}: ${response.status} ${detail}`);
        if (!TRANSIENT_STATUS.has(response.status)) throw lastError;
      } catch (error) {
        if (error instanceof ExecutionApiError && !TRANSIENT_STATUS.has(error.status)) throw error;
        lastError = error;
      }
      if (attempt < this.#attempts)
        await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** (attempt - 1)));
    }
    throw lastError;
  }
}

function safeDetail(text: string): string | undefined {
  try {
    const parsed = JSON.parse(text) as { detail?: unknown };
    return typeof parsed.detail === 'string' ? parsed.detail : undefined;
  } catch {
    return undefined;
  }
}

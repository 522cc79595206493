import type {
  ClearTaskInstancesBody,
  Dag,
  DagCollection,
  DagDetail,
  DagRun,
  DagRunCollection,
  TaskInstance,
  TaskInstanceCollection,
  TaskLog,
  TriggerDagRunBody,
  XComEntry,
} from '#contracts/public-api.ts';
import { ApiRequestError, ApiUnreachableError } from './errors.ts';

/** A request that gets no answer in this time is reported as an unreachable API rather than hanging. */
const REQUEST_TIMEOUT_MS = 30_000;

type Query = Record<string, string | number | undefined>;

/** A client of the public REST API (`/api/v2`), the only way the CLI reaches Updraft. */
export class ApiClient {
  readonly baseUrl: string;
  readonly #token: string | undefined;

  constructor(baseUrl: string, token: string | undefined) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.#token = token;
  }

  listDags(page: { limit?: number; cursor?: string } = {}): Promise<DagCollection> {
    return this.#request('GET', '/dags', { query: page });
  }

  getDag(dagId: string): Promise<DagDetail> {
    return this.#request('GET', `/dags/${enc(dagId)}`);
  }

  patchDag(dagId: string, body: { is_paused: boolean }): Promise<Dag> {
    return this.#request('PATCH', `/dags/${enc(dagId)}`, { body });
  }

  triggerRun(dagId: string, body: TriggerDagRunBody): Promise<DagRun> {
    return this.#request('POST', `/dags/${enc(dagId)}/dagRuns`, { body });
  }

  /** Newest first. */
  listRuns(dagId: string, limit?: number, cursor?: string): Promise<DagRunCollection> {
    return this.#request('GET', `/dags/${enc(dagId)}/dagRuns`, { query: { limit, cursor } });
  }

  getRun(dagId: string, runId: string): Promise<DagRun> {
    return this.#request('GET', `/dags/${enc(dagId)}/dagRuns/${enc(runId)}`);
  }

  listTaskInstances(dagId: string, runId: string): Promise<TaskInstanceCollection> {
    return this.#request('GET', `/dags/${enc(dagId)}/dagRuns/${enc(runId)}/taskInstances`);
  }

  getTaskInstance(dagId: string, runId: string, taskId: string, mapIndex = -1): Promise<TaskInstance> {
    return this.#request('GET', `/dags/${enc(dagId)}/dagRuns/${enc(runId)}/taskInstances/${enc(taskId)}`, {
      query: { map_index: mapIndex },
    });
  }

  getLog(dagId: string, runId: string, taskId: string, tryNumber: number, mapIndex = -1): Promise<TaskLog> {
    return this.#request(
      'GET',
      `/dags/${enc(dagId)}/dagRuns/${enc(runId)}/taskInstances/${enc(taskId)}/logs/${tryNumber}`,
      { query: { map_index: mapIndex } },
    );
  }

  getXCom(
    dagId: string,
    runId: string,
    taskId: string,
    key = 'return_value',
    mapIndex = -1,
  ): Promise<XComEntry> {
    return this.#request(
      'GET',
      `/dags/${enc(dagId)}/dagRuns/${enc(runId)}/taskInstances/${enc(taskId)}/xcomEntries/${enc(key)}`,
      { query: { map_index: mapIndex } },
    );
  }

  clearTaskInstances(dagId: string, body: ClearTaskInstancesBody): Promise<TaskInstanceCollection> {
    return this.#request('POST', `/dags/${enc(dagId)}/clearTaskInstances`, { body });
  }

  async #request<T>(
    method: string,
    path: string,
    options: { query?: Query; body?: unknown } = {},
  ): Promise<T> {
    const url = new URL(`${this.baseUrl}/api/v2${path}`);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      // fetch rejects only when no HTTP answer came back: refused, reset, DNS, timeout.
      throw new ApiUnreachableError(this.baseUrl, { cause: error });
    }
    const text = await response.text();
    if (!response.ok)
      throw new ApiRequestError(method, url.pathname, response.status, detailOf(text, response));
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiRequestError(
        method,
        url.pathname,
        response.status,
        `The API answered with a body that is not JSON: ${text.slice(0, 200)}`,
      );
    }
  }
}

function enc(segment: string): string {
  return encodeURIComponent(segment);
}

/** The API's `detail`; validation errors may carry a list or an object, printed as JSON. */
function detailOf(text: string, response: Response): string {
  try {
    const parsed = JSON.parse(text) as { detail?: unknown };
    if (typeof parsed.detail === 'string') return parsed.detail;
    if (parsed.detail !== undefined) return JSON.stringify(parsed.detail);
  } catch {
    // Not JSON (a proxy's error page, say): fall back to the status text below.
  }
  return text.trim().slice(0, 500) || response.statusText || 'no detail given';
}

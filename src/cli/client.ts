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
  TriggerCollection,
  TriggerDagRunBody,
  TriggererCollection,
  XComEntry,
} from '#contracts/public-api.ts';
import { type IdKind, invalidIdReason } from '#core/ids.ts';
import { ApiRequestError, ApiUnreachableError, CliUsageError } from './errors.ts';

/** A request that gets no answer in this time is reported as an unreachable API rather than hanging. */
const REQUEST_TIMEOUT_MS = 30_000;

/** More than a log at `UPDRAFT_LOG_MAX_BYTES` of any size takes (a 5 MiB log is 7 pages). */
const LOG_MAX_PAGES = 1_000;

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
    return this.#request('GET', `/dags/${id('DAG', dagId)}`);
  }

  patchDag(dagId: string, body: { is_paused: boolean }): Promise<Dag> {
    return this.#request('PATCH', `/dags/${id('DAG', dagId)}`, { body });
  }

  triggerRun(dagId: string, body: TriggerDagRunBody): Promise<DagRun> {
    if (body.dag_run_id !== undefined) id('run', body.dag_run_id);
    return this.#request('POST', `/dags/${id('DAG', dagId)}/dagRuns`, { body });
  }

  /** Newest first. */
  listRuns(dagId: string, limit?: number, cursor?: string): Promise<DagRunCollection> {
    return this.#request('GET', `/dags/${id('DAG', dagId)}/dagRuns`, { query: { limit, cursor } });
  }

  getRun(dagId: string, runId: string): Promise<DagRun> {
    return this.#request('GET', `/dags/${id('DAG', dagId)}/dagRuns/${id('run', runId)}`);
  }

  listTaskInstances(dagId: string, runId: string): Promise<TaskInstanceCollection> {
    return this.#request('GET', `/dags/${id('DAG', dagId)}/dagRuns/${id('run', runId)}/taskInstances`);
  }

  getTaskInstance(dagId: string, runId: string, taskId: string, mapIndex = -1): Promise<TaskInstance> {
    return this.#request(
      'GET',
      `/dags/${id('DAG', dagId)}/dagRuns/${id('run', runId)}/taskInstances/${id('task', taskId)}`,
      {
        query: { map_index: mapIndex },
      },
    );
  }

  /** One page of a try's log: from its start, or from where the page of `token` ended. */
  getLogPage(
    dagId: string,
    runId: string,
    taskId: string,
    tryNumber: number,
    mapIndex = -1,
    token?: string,
  ): Promise<TaskLog> {
    return this.#request(
      'GET',
      `/dags/${id('DAG', dagId)}/dagRuns/${id('run', runId)}/taskInstances/${id('task', taskId)}/logs/${tryNumber}`,
      { query: { map_index: mapIndex, token } },
    );
  }

  /**
   * A try's whole log as it is now: every page, following `continuation_token` (at most
   * `LOG_MAX_PAGES`, and never a token twice, so a log that grows as fast as it is read ends).
   */
  async getLog(
    dagId: string,
    runId: string,
    taskId: string,
    tryNumber: number,
    mapIndex = -1,
  ): Promise<TaskLog> {
    const pages: string[] = [];
    const seen = new Set<string>();
    let token: string | undefined;
    do {
      const page = await this.getLogPage(dagId, runId, taskId, tryNumber, mapIndex, token);
      pages.push(page.content);
      token = page.continuation_token;
      if (token !== undefined && seen.has(token)) break;
      if (token !== undefined) seen.add(token);
    } while (token !== undefined && pages.length < LOG_MAX_PAGES);
    return { content: pages.join('') };
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
      `/dags/${id('DAG', dagId)}/dagRuns/${id('run', runId)}/taskInstances/${id('task', taskId)}/xcomEntries/${enc(key)}`,
      { query: { map_index: mapIndex } },
    );
  }

  clearTaskInstances(dagId: string, body: ClearTaskInstancesBody): Promise<TaskInstanceCollection> {
    id('run', body.dag_run_id);
    return this.#request('POST', `/dags/${id('DAG', dagId)}/clearTaskInstances`, { body });
  }

  /** Triggers of deferred task instances, in trigger id order. */
  listTriggers(page: { limit?: number; cursor?: string } = {}): Promise<TriggerCollection> {
    return this.#request('GET', '/triggers', { query: page });
  }

  /** Triggerer jobs, in job id order. */
  listTriggerers(page: { limit?: number; cursor?: string } = {}): Promise<TriggererCollection> {
    return this.#request('GET', '/triggerers', { query: page });
  }

  /** Any public API call: `path` under /api/v2 with its segments already escaped. */
  requestJson<T>(method: string, path: string, query?: Query): Promise<T> {
    return this.#request(method, path, query ? { query } : {});
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

/**
 * An id as a path segment, refused before any request when it breaks the id grammar: an id like
 * `..` would otherwise address another resource once the URL is normalised.
 */
function id(kind: IdKind, value: string): string {
  const reason = invalidIdReason(kind, value);
  if (reason !== undefined) throw new CliUsageError(reason);
  return enc(value);
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

import type * as z from 'zod';
import { claimedCallbacksSchema } from '#contracts/callbacks.ts';
import {
  EXECUTION_API_VERSION_HEADER,
  EXECUTION_API_VERSIONS,
  REFRESHED_TOKEN_HEADER,
} from '#contracts/execution-api.ts';
import type { CallbackWorkload } from '#contracts/messages.ts';
import {
  cleanupSchema,
  heldTriggersSchema,
  type JobHeartbeatBody,
  type LoadTriggersBody,
  loadedTriggersSchema,
  type RegisteredJob,
  type RegisterJobBody,
  registeredJobSchema,
  type TriggerEventBody,
  type TriggerEventOutcome,
  type TriggerEventResult,
  type TriggerEventsBody,
  type TriggerFailureBody,
  type TriggerLogsBody,
  type TriggerWorkload,
  triggerEventOutcomeSchema,
  triggerEventResultsSchema,
  triggerWorkloadsSchema,
} from '#contracts/triggers.ts';
import { HttpClient, type HttpClientOptions, type RetryPolicy } from '#http/client.ts';
import { HttpError } from '#http/errors.ts';
import { NotRegisteredError } from './errors.ts';

export interface CallOptions {
  retry?: Partial<RetryPolicy>;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The job this client speaks for: its id and its current token. */
export interface TriggererJob {
  readonly jobId: string;
  readonly token: string;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
}

/**
 * The triggerer's client of the Execution API: its own credential registers a job, whose token
 * (swapped for every refreshed one an answer carries) authorizes every later call. Answers are
 * validated with the contract schemas; one that breaks them is a non-retryable HttpError, like a
 * 4xx. Failures are HttpError (`status`, `retryable`); retries follow the call's policy.
 */
export class TriggererClient {
  readonly #http: HttpClient;
  readonly #credential: string | null;
  #job: { jobId: string; token: string; heartbeatIntervalMs: number; heartbeatTimeoutMs: number } | undefined;

  /**
   * `credential` is the triggerer's own token (`UPDRAFT_TRIGGERER_TOKEN`); it is sent on the
   * registration only. null: the registration carries none (on AWS the task role's signature
   * stands for it). `fetch` defaults to the global one; on AWS it is the SigV4-signed one.
   */
  constructor(baseUrl: string, credential: string | null, options: Omit<HttpClientOptions, 'baseUrl'> = {}) {
    const version = EXECUTION_API_VERSIONS[EXECUTION_API_VERSIONS.length - 1] as string;
    this.#credential = credential;
    this.#http = new HttpClient({
      baseUrl,
      ...options,
      headers: { [EXECUTION_API_VERSION_HEADER]: version, ...options.headers },
    });
  }

  /** The registered job, undefined before the first registration. */
  get job(): TriggererJob | undefined {
    return this.#job ? { ...this.#job } : undefined;
  }

  /** Registers a new job (replacing any earlier one: its token is not used again). */
  async register(body: RegisterJobBody, options: CallOptions = {}): Promise<RegisteredJob> {
    const job = await this.#call(
      registeredJobSchema,
      'POST',
      '/execution/jobs',
      body,
      options,
      this.#credential,
    );
    this.#job = {
      jobId: job.job_id,
      token: job.token,
      heartbeatIntervalMs: job.heartbeat_interval_ms,
      heartbeatTimeoutMs: job.heartbeat_timeout_ms,
    };
    return job;
  }

  /** 404 / 409 (an HttpError): the job no longer runs on the server; register again. */
  async heartbeat(body: JobHeartbeatBody, options: CallOptions = {}): Promise<void> {
    await this.#call(undefined, 'POST', `/execution/jobs/${this.#jobPath()}/heartbeat`, body, options);
  }

  /** Ends the job: the server releases its triggers for other triggerers. */
  async complete(options: CallOptions = {}): Promise<void> {
    await this.#call(undefined, 'POST', `/execution/jobs/${this.#jobPath()}/complete`, {}, options);
  }

  /** Claims up to `limit` unclaimed or orphaned triggers for this job. */
  async load(body: LoadTriggersBody, options: CallOptions = {}): Promise<string[]> {
    const answer = await this.#call(loadedTriggersSchema, 'POST', '/execution/triggers/load', body, options);
    return answer.trigger_ids;
  }

  /** Claims up to `limit` callbacks that wait for a triggerer; their workloads, to start and run. */
  async claimCallbacks(limit: number, options: CallOptions = {}): Promise<CallbackWorkload[]> {
    const answer = await this.#call(
      claimedCallbacksSchema,
      'POST',
      '/execution/callbacks/claim',
      { limit },
      options,
    );
    return answer.workloads;
  }

  /** The workloads of the asked-for triggers, and the ids to stop instead. */
  async workloads(
    triggerIds: string[],
    options: CallOptions = {},
  ): Promise<{ workloads: TriggerWorkload[]; stop: string[] }> {
    return this.#call(
      triggerWorkloadsSchema,
      'POST',
      '/execution/triggers/workloads',
      { trigger_ids: triggerIds },
      options,
    );
  }

  /** 409 (an HttpError): another triggerer holds the trigger now. */
  async event(
    triggerId: string,
    body: TriggerEventBody,
    options: CallOptions = {},
  ): Promise<TriggerEventOutcome> {
    const path = `/execution/triggers/${encodeURIComponent(triggerId)}/event`;
    return (await this.#call(triggerEventOutcomeSchema, 'POST', path, body, options)).outcome;
  }

  /**
   * Several events in one call (`TRIGGER_EVENTS_PER_CALL` at most, each trigger once): one result
   * per event, an outcome or the status and detail the single route would have answered with.
   */
  async events(
    events: TriggerEventsBody['events'],
    options: CallOptions = {},
  ): Promise<TriggerEventResult[]> {
    return (
      await this.#call(triggerEventResultsSchema, 'POST', '/execution/triggers/events', { events }, options)
    ).results;
  }

  /** Same answers as `event`. */
  async failure(
    triggerId: string,
    body: TriggerFailureBody,
    options: CallOptions = {},
  ): Promise<TriggerEventOutcome> {
    const path = `/execution/triggers/${encodeURIComponent(triggerId)}/failure`;
    return (await this.#call(triggerEventOutcomeSchema, 'POST', path, body, options)).outcome;
  }

  /**
   * Of the triggers this job runs, the ones to stop; with `complete` (the ids are all it runs or
   * waits to run), also the ones it holds without knowing (a lost load answer), to run.
   */
  async cleanup(
    triggerIds: string[],
    options: CallOptions & { complete?: boolean } = {},
  ): Promise<{ stop: string[]; adopt: string[] }> {
    const { complete, ...call } = options;
    const answer = await this.#call(
      cleanupSchema,
      'POST',
      '/execution/triggers/cleanup',
      { trigger_ids: triggerIds, ...(complete ? { complete: true } : {}) },
      call,
    );
    return { stop: answer.stop, adopt: answer.adopt ?? [] };
  }

  /** One page of the ids of the triggers this job holds. */
  async held(
    cursor: string | undefined,
    options: CallOptions = {},
  ): Promise<{ triggerIds: string[]; nextCursor?: string }> {
    const answer = await this.#call(
      heldTriggersSchema,
      'POST',
      '/execution/triggers/held',
      cursor === undefined ? {} : { cursor },
      options,
    );
    return {
      triggerIds: answer.trigger_ids,
      ...(answer.next_cursor === undefined ? {} : { nextCursor: answer.next_cursor }),
    };
  }

  async logs(body: TriggerLogsBody, options: CallOptions = {}): Promise<void> {
    await this.#call(undefined, 'POST', '/execution/triggers/logs', body, options);
  }

  #jobPath(): string {
    if (!this.#job) throw new NotRegisteredError('The triggerer has no job yet: register first');
    return encodeURIComponent(this.#job.jobId);
  }

  async #call<S extends z.ZodType>(
    schema: S | undefined,
    method: string,
    path: string,
    body: unknown,
    options: CallOptions,
    /** The registration's credential (null: none, the transport's signature stands for it); else the job's token. */
    credential?: string | null,
  ): Promise<z.infer<S>> {
    const job = credential === undefined ? this.#job : undefined;
    if (credential === undefined && !job)
      throw new NotRegisteredError(`${method} ${path}: the triggerer has no job yet`);
    const response = await this.#http.request<unknown>({
      method,
      path,
      body,
      token: credential === null ? undefined : (credential ?? job?.token),
      ...options,
    });
    // Only the job that sent the call takes a refreshed token: a late answer to a replaced job's
    // call must not overwrite the new job's token.
    const refreshed = response.headers.get(REFRESHED_TOKEN_HEADER);
    if (refreshed && job && this.#job === job) job.token = refreshed;
    if (!schema) return response.body as z.infer<S>;
    const parsed = schema.safeParse(response.body);
    if (!parsed.success) {
      const problems = parsed.error.issues
        .slice(0, 3)
        .map((issue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`)
        .join('; ');
      throw new HttpError(
        `${method} ${path}`,
        response.status,
        `the answer does not match the contract: ${problems}`,
        false,
      );
    }
    return parsed.data;
  }
}

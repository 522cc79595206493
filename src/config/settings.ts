import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import * as z from 'zod';
import { TRIGGER_EVENTS_PER_CALL, triggerQueueName } from '#contracts/triggers.ts';

/**
 * Every setting and limit of Updraft, with its default. Each can be set by an environment
 * variable (`UPDRAFT_…`, listed in docs/configuration.md) or in `updraft.config.json`;
 * the environment wins. Unknown keys in the file are rejected so a typo is not silently ignored.
 */
/** Room in an Execution API body for everything but the log chunk or XCom it carries. */
export const REQUEST_ENVELOPE_BYTES = 1_024;

export const settingsSchema = z
  .strictObject({
    /** Where standalone keeps its store, logs and API token. */
    home: z.string().default('.updraft'),
    host: z.string().default('127.0.0.1'),
    port: z.coerce.number().int().min(0).max(65535).default(8080),
    /** URL of a running API; derived from host and port when unset. */
    apiUrl: z.string().url().optional(),
    dagsFolder: z.string().default('dags'),
    /** How often standalone parses the DAGs folder again; 0 parses only at start. */
    dagRefreshIntervalMs: z.coerce.number().int().min(0).default(30_000),
    /** Time limit of importing one DAG file; a file over it is an import error of its own. */
    dagFileParseTimeoutMs: z.coerce.number().int().min(100).default(30_000),
    /** Whether a DAG seen for the first time starts paused (Airflow's dags_are_paused_at_creation). */
    dagsArePausedAtCreation: z.union([z.boolean(), z.stringbool()]).default(false),

    /** Concurrent task slots of the standalone worker pool. */
    workerSlots: z.coerce.number().int().min(1).max(256).default(8),
    /**
     * Task runner processes a standalone pool keeps beyond its slots, idle with other DAG versions'
     * code, so interleaved tries of several DAGs reuse a runner instead of booting one each.
     */
    spareTaskRunners: z.coerce.number().int().min(0).max(64).default(2),
    heartbeatIntervalMs: z.coerce.number().int().min(100).default(5_000),
    /** A running TI whose heartbeat is older than this is a zombie: failed or retried. */
    heartbeatTimeoutMs: z.coerce.number().int().min(500).default(60_000),
    /** A TI queued longer than this without starting has its workload sent again. */
    queuedTimeoutMs: z.coerce.number().int().min(500).default(120_000),
    /** Workloads sent for one try (the first and each resend after the queued timeout) before the try fails. */
    maxQueuedSends: z.coerce.number().int().min(1).max(100).default(5),
    /** Period of the scheduler's tick: due schedules and reconciliation. */
    schedulerTickMs: z.coerce.number().int().min(100).default(5_000),
    /** Bound of one scheduler pass, so one huge run cannot starve the others. */
    maxRunsPerPass: z.coerce.number().int().min(1).default(100),
    maxTaskInstancesPerPass: z.coerce.number().int().min(1).default(1_000),
    /**
     * Most scheduling requests the standalone scheduler takes into one batch (one pass per distinct
     * run): it waits for the first, then takes what is already waiting, up to this many.
     */
    schedulerBatchSize: z.coerce.number().int().min(1).max(1_000).default(100),
    /** Time limit of one callback attempt (Airflow's callback execution timeout), unless the callback sets its own. */
    callbackExecutionTimeoutMs: z.coerce.number().int().min(100).max(900_000).default(60_000),
    /** Attempts of a callback after its first, unless the callback sets its own. */
    callbackRetries: z.coerce.number().int().min(0).max(100).default(2),
    /** Delay before a failed callback's next attempt, doubled each time, unless the callback sets its own. */
    callbackRetryDelayMs: z.coerce.number().int().min(0).default(10_000),
    /**
     * Owed callbacks are turned into callback items by the call that owed them; the tick does it
     * for those still owed after this long (the caller died in between).
     */
    callbackOwedGraceMs: z.coerce.number().int().min(100).default(10_000),
    /** Worker slots of the standalone pool that run only callbacks, beside the task slots. */
    callbackSlots: z.coerce.number().int().min(1).max(64).default(2),
    /**
     * Where async callbacks run unless they say (`runOn`): in a triggerer's event loop, or on a
     * worker like sync ones. Without a triggerer (UPDRAFT_TRIGGERER_ENABLED=false) all run on workers.
     */
    asyncCallbacksRunOn: z.enum(['triggerer', 'worker']).default('triggerer'),
    /** Callback attempts one triggerer runs at once, beside its triggers (one claim takes at most 1,000). */
    triggererCallbackCapacity: z.coerce.number().int().min(1).max(1_000).default(100),
    /** A callback placed on a triggerer that none claims within this long runs on a worker instead. */
    callbackTriggererClaimTimeoutMs: z.coerce.number().int().min(1_000).default(300_000),
    /** Pools and their slots; `default_pool` is used by tasks that name none. */
    pools: z.record(z.string(), z.number().int().min(0)).default({ default_pool: 128 }),

    /** Largest XCom value, in bytes of its JSON. */
    xcomMaxBytes: z.coerce
      .number()
      .int()
      .min(1)
      .max(350_000)
      .default(48 * 1024),
    /** Largest conf of a triggered run, in bytes of its JSON. */
    confMaxBytes: z.coerce
      .number()
      .int()
      .min(1)
      .max(350_000)
      .default(64 * 1024),
    /** Largest log kept for one try; later output is dropped with a notice. */
    logMaxBytes: z.coerce
      .number()
      .int()
      .min(1024)
      .default(5 * 1024 * 1024),
    /** Largest piece of log one Execution API call carries, in UTF-8 bytes; must stay below requestMaxBytes. */
    logChunkMaxBytes: z.coerce
      .number()
      .int()
      .min(1024)
      .default(128 * 1024),
    /** Largest request body the API accepts. */
    requestMaxBytes: z.coerce
      .number()
      .int()
      .min(1024)
      .default(1024 * 1024),
    /**
     * Most worker calls one Execution API batch request carries (POST /execution/batch): the API
     * refuses a larger batch, and a Lambda worker puts at most this many into one. 1: a Lambda
     * worker sends every call alone.
     */
    executionBatchMaxCalls: z.coerce.number().int().min(1).max(100).default(10),
    /**
     * How long a Lambda worker holds a start or report to send it with others in one batch, unless
     * every workload of its invocation is already waiting on a call.
     */
    executionBatchWindowMs: z.coerce.number().int().min(0).max(1_000).default(20),
    queueMaxMessageBytes: z.coerce
      .number()
      .int()
      .min(1024)
      .max(1024 * 1024)
      .default(256 * 1024),
    queueVisibilityTimeoutSeconds: z.coerce.number().int().min(1).max(43_200).default(300),
    /** Receives after which a message goes to the queue's dead-letter queue. */
    queueMaxReceives: z.coerce.number().int().min(1).max(1000).default(5),
    /**
     * Lifetime of a task-scoped Execution API token, counted from queueing, then from the start,
     * then renewed by heartbeats once half of it is gone.
     */
    executionTokenTtlSeconds: z.coerce.number().int().min(60).default(600),
    /** Period of the structured metrics log line; 0 turns it off. */
    metricsLogIntervalMs: z.coerce.number().int().min(0).default(60_000),
    /**
     * The most memory (MB) one task try may use, heap and resident memory alike (with the
     * processes the task starts), unless the task sets its own `memoryLimitMb`; 0 turns the limit
     * off. At least 256: a task runner process takes about 110 MB before its task allocates anything.
     */
    taskMemoryLimitMb: z.coerce
      .number()
      .int()
      .refine(
        (mb) => mb === 0 || mb >= 256,
        'must be 0 (no limit) or at least 256 (a task runner process takes about 110 MB before the task allocates anything)',
      )
      .default(1024),
    /**
     * Days a run's items (the run, its TIs, summary, task slots and XComs) are kept after their
     * last write: each write stamps the table's time to live that far ahead, and DynamoDB deletes
     * them once it passes. 0 keeps them for good. The embedded store of standalone never deletes.
     */
    retentionDays: z.coerce.number().min(0).max(36_500).default(0),
    /** Seconds a graceful stop waits for running tasks before handing them back. */
    shutdownGraceSeconds: z.coerce.number().int().min(0).default(30),
    logLevel: z.enum(['debug', 'info', 'warn', 'error']).default('info'),

    /** Whether standalone starts a triggerer child process (deferred tasks need one). */
    triggererEnabled: z.union([z.boolean(), z.stringbool()]).default(true),
    /** Triggers one triggerer runs at once (Airflow's default capacity). */
    triggererCapacity: z.coerce.number().int().min(1).max(1_000_000).default(1_000),
    /**
     * Event and failure reports a triggerer has in flight to the Execution API at once. On AWS each
     * is one Execution API invocation, out of the account's concurrency that the workers share.
     */
    triggererReportsInFlight: z.coerce.number().int().min(1).max(256).default(64),
    /**
     * Trigger events one Execution API call carries at most; 1 sends each event on a call of its
     * own. Up to four such calls are in flight, so events that fire while they are gather into
     * the next: about one store request an event instead of three, and one invocation per call.
     */
    triggererEventsPerCall: z.coerce
      .number()
      .int()
      .min(1)
      .max(TRIGGER_EVENTS_PER_CALL)
      .default(TRIGGER_EVENTS_PER_CALL),
    /** Trigger queues a triggerer serves, comma-separated in the environment. */
    triggerQueues: z
      .union([
        z.array(z.string().min(1)),
        z.string().transform((value) =>
          value
            .split(',')
            .map((q) => q.trim())
            .filter(Boolean),
        ),
      ])
      .pipe(z.array(triggerQueueName).min(1))
      .default(['default']),
    /** How often a triggerer heartbeats its job. */
    triggererHeartbeatIntervalMs: z.coerce.number().int().min(100).default(2_000),
    /** A triggerer job silent longer than this is dead: another triggerer takes its triggers. */
    triggererHeartbeatTimeoutMs: z.coerce.number().int().min(500).default(6_000),
    /** How often a triggerer with free capacity asks for unclaimed triggers. */
    triggererLoadIntervalMs: z.coerce.number().int().min(50).default(1_000),
    /** How often a triggerer asks which of its triggers are no longer waited on. */
    triggerCleanupIntervalMs: z.coerce.number().int().min(100).default(30_000),
    /** A trigger step that holds the triggerer's event loop longer than this is logged and counted. */
    triggerBlockedThresholdMs: z.coerce.number().int().min(10).default(200),
    /** Files (relative to the DAGs folder, or absolute) the triggerer imports to register user triggers. */
    triggerModules: z
      .union([
        z.array(z.string()),
        z.string().transform((value) =>
          value
            .split(',')
            .map((m) => m.trim())
            .filter(Boolean),
        ),
      ])
      .default([]),
    /**
     * Classes a worker or triggerer may rebuild from serde payloads (event payloads, defer and
     * trigger kwargs), as names or `prefix.*` patterns; a payload naming any other class fails.
     */
    allowedDeserializationClasses: z
      .union([
        z.array(z.string()),
        z.string().transform((value) =>
          value
            .split(',')
            .map((c) => c.trim())
            .filter(Boolean),
        ),
      ])
      .default(['updraft.*']),
  })
  .superRefine((settings, context) => {
    // Log chunks and XComs travel as JSON strings: escaping can grow a chunk up to six times
    // (control characters become \u00XX) and an XCom's JSON text up to twice. A heartbeat must
    // carry any chunk, a report any XCom (a worker sends the last chunk on its own when both do not fit).
    for (const [setting, factor] of [
      ['logChunkMaxBytes', 6],
      ['xcomMaxBytes', 2],
    ] as const) {
      const largest = factor * settings[setting] + REQUEST_ENVELOPE_BYTES;
      if (largest > settings.requestMaxBytes) {
        context.addIssue({
          code: 'custom',
          path: [setting],
          message: `${factor} × ${setting} + ${REQUEST_ENVELOPE_BYTES} (${largest}) must not exceed requestMaxBytes (${settings.requestMaxBytes}): a call must be able to carry it once JSON-escaped`,
        });
      }
    }
    // A worker stops its task within half the timeout plus one interval (and one short request)
    // of its last heartbeat; that must stay well inside the zombie threshold.
    if (settings.heartbeatIntervalMs * 5 > settings.heartbeatTimeoutMs) {
      context.addIssue({
        code: 'custom',
        path: ['heartbeatIntervalMs'],
        message: `must be at most a fifth of heartbeatTimeoutMs (${settings.heartbeatTimeoutMs} ms), so a worker that cannot heartbeat stops its task before the try is treated as a zombie`,
      });
    }
    // A batch's window must leave most of a worker's call timeout to the call itself.
    const callTimeoutMs = workerCallTimeoutMs(settings.heartbeatTimeoutMs);
    if (settings.executionBatchWindowMs * 4 > callTimeoutMs) {
      context.addIssue({
        code: 'custom',
        path: ['executionBatchWindowMs'],
        message: `must be at most a quarter of a worker's call timeout (${callTimeoutMs} ms, from heartbeatTimeoutMs (UPDRAFT_HEARTBEAT_TIMEOUT_MS) ${settings.heartbeatTimeoutMs} ÷ 8, between 250 and 10000), so a call held for a batch still has time to be answered. Lower executionBatchWindowMs or raise heartbeatTimeoutMs`,
      });
    }
    if (settings.triggererHeartbeatIntervalMs * 2 > settings.triggererHeartbeatTimeoutMs) {
      context.addIssue({
        code: 'custom',
        path: ['triggererHeartbeatIntervalMs'],
        message: `must be at most half of triggererHeartbeatTimeoutMs (${settings.triggererHeartbeatTimeoutMs} ms), so one late heartbeat does not hand a live triggerer's triggers to another`,
      });
    }
    // A token is renewed on the first heartbeat after half its life; it must then outlast a
    // heartbeat outage as long as the zombie threshold, or a healthy try loses its token first.
    const renewalMarginMs = (settings.executionTokenTtlSeconds * 1000) / 2;
    if (renewalMarginMs <= settings.heartbeatTimeoutMs + settings.heartbeatIntervalMs) {
      context.addIssue({
        code: 'custom',
        path: ['executionTokenTtlSeconds'],
        message: `half of it (${renewalMarginMs} ms) must exceed heartbeatTimeoutMs + heartbeatIntervalMs (${settings.heartbeatTimeoutMs + settings.heartbeatIntervalMs} ms)`,
      });
    }
    // A workload's token is issued when it is queued and is only renewed by its start. The
    // scheduler re-sends (with a fresh token) a workload queued longer than queuedTimeoutMs, so
    // every workload it sends must still carry a valid token when it is re-sent; the half is margin
    // for a late scheduler tick and a queue redelivery.
    const queuedTokenLimitMs = (settings.executionTokenTtlSeconds * 1000) / 2;
    if (settings.queuedTimeoutMs >= queuedTokenLimitMs) {
      context.addIssue({
        code: 'custom',
        path: ['queuedTimeoutMs'],
        message: `must be below half of executionTokenTtlSeconds (UPDRAFT_EXECUTION_TOKEN_TTL_SECONDS: ${settings.executionTokenTtlSeconds} s, half is ${queuedTokenLimitMs} ms): a workload's token is issued when it is queued, and must stay valid for the whole time it may wait before the workload is sent again. Lower queuedTimeoutMs or raise executionTokenTtlSeconds`,
      });
    }
  });

export type Settings = z.infer<typeof settingsSchema>;

/**
 * The timeout of a worker's start or heartbeat call: short enough that a hung call cannot push
 * the worker's stop past the zombie threshold. Also the most the rest of the log may take after
 * the task ended, before the report goes.
 */
export function workerCallTimeoutMs(heartbeatTimeoutMs: number): number {
  return Math.max(250, Math.min(10_000, heartbeatTimeoutMs / 8));
}

/** Environment variable of each setting. */
export const SETTING_ENV_VARS: Readonly<Record<keyof Settings, string>> = {
  home: 'UPDRAFT_HOME',
  host: 'UPDRAFT_HOST',
  port: 'PORT',
  apiUrl: 'UPDRAFT_API_URL',
  dagsFolder: 'UPDRAFT_DAGS_FOLDER',
  dagRefreshIntervalMs: 'UPDRAFT_DAG_REFRESH_INTERVAL_MS',
  dagFileParseTimeoutMs: 'UPDRAFT_DAG_FILE_PARSE_TIMEOUT_MS',
  dagsArePausedAtCreation: 'UPDRAFT_DAGS_ARE_PAUSED_AT_CREATION',
  workerSlots: 'UPDRAFT_WORKER_SLOTS',
  spareTaskRunners: 'UPDRAFT_SPARE_TASK_RUNNERS',
  heartbeatIntervalMs: 'UPDRAFT_HEARTBEAT_INTERVAL_MS',
  heartbeatTimeoutMs: 'UPDRAFT_HEARTBEAT_TIMEOUT_MS',
  queuedTimeoutMs: 'UPDRAFT_QUEUED_TIMEOUT_MS',
  callbackExecutionTimeoutMs: 'UPDRAFT_CALLBACK_EXECUTION_TIMEOUT_MS',
  callbackRetries: 'UPDRAFT_CALLBACK_RETRIES',
  callbackRetryDelayMs: 'UPDRAFT_CALLBACK_RETRY_DELAY_MS',
  callbackOwedGraceMs: 'UPDRAFT_CALLBACK_OWED_GRACE_MS',
  callbackSlots: 'UPDRAFT_CALLBACK_SLOTS',
  asyncCallbacksRunOn: 'UPDRAFT_ASYNC_CALLBACKS_RUN_ON',
  triggererCallbackCapacity: 'UPDRAFT_TRIGGERER_CALLBACK_CAPACITY',
  callbackTriggererClaimTimeoutMs: 'UPDRAFT_CALLBACK_TRIGGERER_CLAIM_TIMEOUT_MS',
  maxQueuedSends: 'UPDRAFT_MAX_QUEUED_SENDS',
  schedulerTickMs: 'UPDRAFT_SCHEDULER_TICK_MS',
  maxRunsPerPass: 'UPDRAFT_MAX_RUNS_PER_PASS',
  maxTaskInstancesPerPass: 'UPDRAFT_MAX_TIS_PER_PASS',
  schedulerBatchSize: 'UPDRAFT_SCHEDULER_BATCH_SIZE',
  pools: 'UPDRAFT_POOLS',
  xcomMaxBytes: 'UPDRAFT_XCOM_MAX_BYTES',
  confMaxBytes: 'UPDRAFT_CONF_MAX_BYTES',
  logMaxBytes: 'UPDRAFT_LOG_MAX_BYTES',
  logChunkMaxBytes: 'UPDRAFT_LOG_CHUNK_MAX_BYTES',
  requestMaxBytes: 'UPDRAFT_REQUEST_MAX_BYTES',
  executionBatchMaxCalls: 'UPDRAFT_EXECUTION_BATCH_MAX_CALLS',
  executionBatchWindowMs: 'UPDRAFT_EXECUTION_BATCH_WINDOW_MS',
  queueMaxMessageBytes: 'UPDRAFT_QUEUE_MAX_MESSAGE_BYTES',
  queueVisibilityTimeoutSeconds: 'UPDRAFT_QUEUE_VISIBILITY_TIMEOUT_SECONDS',
  queueMaxReceives: 'UPDRAFT_QUEUE_MAX_RECEIVES',
  executionTokenTtlSeconds: 'UPDRAFT_EXECUTION_TOKEN_TTL_SECONDS',
  metricsLogIntervalMs: 'UPDRAFT_METRICS_LOG_INTERVAL_MS',
  shutdownGraceSeconds: 'UPDRAFT_SHUTDOWN_GRACE_SECONDS',
  taskMemoryLimitMb: 'UPDRAFT_TASK_MEMORY_LIMIT_MB',
  retentionDays: 'UPDRAFT_RETENTION_DAYS',
  logLevel: 'UPDRAFT_LOG_LEVEL',
  triggererEnabled: 'UPDRAFT_TRIGGERER_ENABLED',
  triggererCapacity: 'UPDRAFT_TRIGGERER_CAPACITY',
  triggererReportsInFlight: 'UPDRAFT_TRIGGERER_REPORTS_IN_FLIGHT',
  triggererEventsPerCall: 'UPDRAFT_TRIGGERER_EVENTS_PER_CALL',
  triggerQueues: 'UPDRAFT_TRIGGER_QUEUES',
  triggererHeartbeatIntervalMs: 'UPDRAFT_TRIGGERER_HEARTBEAT_INTERVAL_MS',
  triggererHeartbeatTimeoutMs: 'UPDRAFT_TRIGGERER_HEARTBEAT_TIMEOUT_MS',
  triggererLoadIntervalMs: 'UPDRAFT_TRIGGERER_LOAD_INTERVAL_MS',
  triggerCleanupIntervalMs: 'UPDRAFT_TRIGGER_CLEANUP_INTERVAL_MS',
  triggerBlockedThresholdMs: 'UPDRAFT_TRIGGER_BLOCKED_THRESHOLD_MS',
  triggerModules: 'UPDRAFT_TRIGGER_MODULES',
  allowedDeserializationClasses: 'UPDRAFT_ALLOWED_DESERIALIZATION_CLASSES',
};

export class SettingsError extends Error {
  override name = 'SettingsError';
}

/** Reads settings from `updraft.config.json` (or `UPDRAFT_CONFIG`) and the environment. */
export function loadSettings(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Settings {
  const raw: Record<string, unknown> = {};
  const configPath = resolve(cwd, env.UPDRAFT_CONFIG ?? 'updraft.config.json');
  if (existsSync(configPath)) {
    try {
      Object.assign(raw, JSON.parse(readFileSync(configPath, 'utf8')));
    } catch (error) {
      throw new SettingsError(`Cannot read ${configPath}: ${(error as Error).message}`, { cause: error });
    }
  } else if (env.UPDRAFT_CONFIG) {
    throw new SettingsError(`UPDRAFT_CONFIG names ${configPath}, which does not exist`);
  }
  for (const [key, variable] of Object.entries(SETTING_ENV_VARS)) {
    const value = env[variable];
    if (value === undefined || value === '') continue;
    raw[key] = key === 'pools' ? parsePools(value) : value;
  }
  const parsed = settingsSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        return `unknown setting${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')} in ${configPath}`;
      }
      const key = issue.path.join('.');
      const variable = SETTING_ENV_VARS[issue.path[0] as keyof Settings];
      return `${key}${variable ? ` (${variable})` : ''}: ${issue.message}`;
    });
    throw new SettingsError(`Invalid settings: ${problems.join('; ')}`);
  }
  const settings = parsed.data;
  if (!('default_pool' in settings.pools)) settings.pools.default_pool = 128;
  settings.home = resolve(cwd, settings.home);
  settings.dagsFolder = resolve(cwd, settings.dagsFolder);
  return settings;
}

/** `UPDRAFT_POOLS` is `name=slots,name=slots` or a JSON object. */
function parsePools(value: string): Record<string, number> {
  if (value.trim().startsWith('{')) return JSON.parse(value) as Record<string, number>;
  const pools: Record<string, number> = {};
  for (const part of value.split(',')) {
    const [name, slots] = part.split('=');
    if (!name || slots === undefined)
      throw new SettingsError(`UPDRAFT_POOLS: expected name=slots, got "${part}"`);
    pools[name.trim()] = Number(slots);
  }
  return pools;
}

export function apiUrlOf(settings: Settings): string {
  return settings.apiUrl ?? `http://${settings.host}:${settings.port}`;
}

/** Chunks one try's log may have: enough for logMaxBytes at full chunks. */
export function logMaxChunksOf(settings: Pick<Settings, 'logMaxBytes' | 'logChunkMaxBytes'>): number {
  return Math.ceil(settings.logMaxBytes / settings.logChunkMaxBytes);
}

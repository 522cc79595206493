import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { join } from 'node:path';
import type { ApiApp } from '#api/app.ts';
import { createApiStack, createFreshEngineApi } from '#api/stack.ts';
import { BundleStore } from '#bundles/store.ts';
import { apiUrlOf, type Settings } from '#config/settings.ts';
import type { DagRunKey } from '#core/models.ts';
import { DagVersionCache } from '#engine/dag-cache.ts';
import { registerDags } from '#engine/dag-registry.ts';
import { handleSchedulingMessages, runSchedulerTick } from '#engine/entrypoints.ts';
import type { Logger } from '#engine/logger.ts';
import type { SchedulingNotifier } from '#engine/notifier.ts';
import type { WakeTimers } from '#engine/ports.ts';
import { type EngineDeps, readinessGauges } from '#engine/scheduler.ts';
import { parseExecutionKeys } from '#engine/tokens.ts';
import { closeServer, listenOn } from '#http/server.ts';
import { FileLogStore } from '#logs/file-store.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import { createInMemoryQueues } from '#queue/memory.ts';
import { MAX_BATCH, type Queue, type Queues } from '#queue/port.ts';
import { DynamoStore } from '#store/dynamodb.ts';
import { toDocumentClient } from '#store/embedded.ts';
import { instrumentClient, type RequestCounter } from '#store/instrument.ts';
import type { Store } from '#store/port.ts';
import { CallbackWorkerPool } from '#worker/callback-pool.ts';
import { ExecutionBatcher } from '#worker/execution-batcher.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import { ProcessTaskExecutor } from '#worker/executor.ts';
import { WorkerPool } from '#worker/pool.ts';
import { DemoHookReceiver, DemoJobService } from './demo-jobs.ts';
import { StandaloneError } from './errors.ts';
import { prepareHome } from './home.ts';
import { DagFileParser, DagParserClosedError } from './parse-dags.ts';
import { startSupervisedStore } from './store-supervisor.ts';
import { TriggererProcess } from './triggerer-process.ts';

export const TABLE_NAME = 'updraft';
/** Standalone issues its triggerer's credential at each start of the child; it only registers a job with it. */
const TRIGGERER_CREDENTIAL_TTL_SECONDS = 7 * 24 * 60 * 60;

export interface StandaloneOptions {
  log: Logger;
  /** Keep the store in memory instead of under `<home>/store` (tests, benchmarks). */
  inMemoryStore?: boolean;
  /** Counts every store request (benchmarks). */
  requestCounter?: RequestCounter;
  /**
   * The Lambda shape (benchmarks, tests): every scheduling batch, tick and API call runs in a fresh
   * engine instance with empty caches, as separate function invocations would, and the task
   * workers send their Execution API calls in batches, as the worker function does.
   */
  freshInstances?: boolean;
  cwd?: string;
  /** Move the old store and logs aside and start empty (`updraft standalone --reset-store`). */
  resetStore?: boolean;
  /** Start the triggerer child process (default: the `triggererEnabled` setting). */
  triggerer?: boolean;
  /** A part that cannot be recovered (the store could not be restarted): the caller stops. */
  onFatal?: (error: StandaloneError) => void;
}

export interface Standalone {
  apiUrl: string;
  apiToken: string;
  store: Store;
  queues: Queues;
  metrics: MetricsRegistry;
  /** What the scheduler entry points run on (tests and benchmarks call them directly). */
  engine: EngineDeps;
  api: ApiApp;
  /** Parses the DAGs folder again and registers what changed. */
  refreshDags(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Everything on one machine: the embedded store, in-process queues, the API on a local HTTP
 * server, the scheduler loop and tick, and the worker pool, which reaches the API over HTTP
 * like a remote worker would.
 */
export async function startStandalone(settings: Settings, options: StandaloneOptions): Promise<Standalone> {
  const { log } = options;
  const cwd = options.cwd ?? process.cwd();
  const releaseHome = await prepareHome(settings, {
    inMemoryStore: options.inMemoryStore ?? false,
    resetStore: options.resetStore ?? false,
    log,
  });
  const apiToken = await readOrCreateSecret(join(settings.home, 'api-token'));
  const executionKeys = parseExecutionKeys(await readOrCreateSecret(join(settings.home, 'execution-secret')));

  const { supervisor: dynamo, client: dynamoClient } = await startSupervisedStore({
    home: settings.home,
    inMemory: options.inMemoryStore ?? false,
    tableName: TABLE_NAME,
    log,
    onGiveUp: options.onFatal ?? ((error) => log.error(error.message)),
    ...(options.requestCounter
      ? { configureClient: (client) => instrumentClient(client, options.requestCounter!) }
      : {}),
  });
  const store = new DynamoStore({
    client: toDocumentClient(dynamoClient),
    tableName: TABLE_NAME,
    retentionDays: settings.retentionDays,
  });

  const metrics = new MetricsRegistry();
  const {
    queues,
    deadLetters,
    close: closeQueues,
  } = createInMemoryQueues(settings, {
    onDeadLetter: (queue, body) => {
      metrics.increment(`queue.${queue}.dead_lettered`);
      log.error(
        "A message went to the dead-letter queue after the queue's receive limit (UPDRAFT_QUEUE_MAX_RECEIVES)",
        {
          queue,
          message: describeMessage(body),
        },
      );
    },
  });
  metrics.addSource(async () => {
    const depths: Record<string, number> = {};
    for (const [name, queue] of Object.entries(deadLetters)) {
      const { visible, inFlight, delayed } = await queue.stats();
      depths[`queue.${name}.dead_letter_depth`] = visible + inFlight + delayed;
    }
    return depths;
  });
  const now = () => Date.now();
  const stackDeps = {
    store,
    queues,
    logs: new FileLogStore(join(settings.home, 'logs')),
    metrics,
    settings,
    apiToken,
    executionKeys,
    log,
    now,
    storeHealth: () => dynamo.health(),
  };
  const { api, dags, notifier, tokens, callbacks } = createApiStack(stackDeps);
  const freshEngineApi = options.freshInstances ? createFreshEngineApi(stackDeps) : undefined;
  const apiFetch: (request: Request) => Response | Promise<Response> = freshEngineApi
    ? (request) => freshEngineApi.fetch(request)
    : (request) => api.fetch(request);
  const demoJobs = new DemoJobService();
  const demoHooks = new DemoHookReceiver();
  const server = await listen(
    async (request) =>
      (await demoJobs.handle(request)) ?? (await demoHooks.handle(request)) ?? apiFetch(request),
    settings,
  );
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : settings.port;
  const apiUrl = settings.apiUrl ?? apiUrlOf({ ...settings, port });

  const timers = new InProcessTimers(notifier);
  const startedAtMs = now();
  let workerId = '';
  const engine: EngineDeps = {
    store,
    queues,
    dags,
    tokens,
    timers,
    metrics,
    settings,
    log: log.child({ component: 'scheduler' }),
    now,
    // The previous process's task runners and in-process queues died with it: its running tries
    // are zombies and its queued workloads are gone, known at once rather than after the timeouts.
    orphans: {
      isOrphanedRunning: (ti) => ti.workerId !== workerId,
      isOrphanedQueued: (ti) => ti.queuedAt !== null && Date.parse(ti.queuedAt) < startedAtMs,
    },
    readiness: new Map(),
    callbacks,
  };
  const bundles = new BundleStore(join(settings.home, 'bundles'));
  const dagParser = new DagFileParser({
    dagsFolder: settings.dagsFolder,
    cwd,
    fileTimeoutMs: settings.dagFileParseTimeoutMs,
    bundles,
  });
  const refreshDags = async () => {
    let parsed: Awaited<ReturnType<DagFileParser['parse']>>;
    try {
      parsed = await dagParser.parse();
    } catch (error) {
      // Stopping: what this refresh parsed so far is dropped, and nothing is registered.
      if (error instanceof DagParserClosedError) return;
      throw error;
    }
    await registerDags(
      {
        store,
        log: log.child({ component: 'dag-processor' }),
        now,
        pausedAtCreation: settings.dagsArePausedAtCreation,
      },
      parsed,
    );
  };
  await refreshDags();

  const sendToApi = (input: string | URL | Request, init?: RequestInit) =>
    Promise.resolve(apiFetch(new Request(input, init)));
  const executionClient = new ExecutionClient(apiUrl, { fetch: sendToApi });
  // In the Lambda shape the task workers' calls travel in batches, as the worker function's do:
  // the starts and reports of the workloads in progress in one `POST /execution/batch`.
  let runningWorkloads = () => 0;
  const batcher = options.freshInstances
    ? new ExecutionBatcher({
        fetch: sendToApi,
        baseUrl: apiUrl,
        maxCalls: settings.executionBatchMaxCalls,
        windowMs: settings.executionBatchWindowMs,
        requestMaxBytes: settings.requestMaxBytes,
        callers: () => runningWorkloads(),
        log,
      })
    : undefined;
  const workers = taskWorkerPool({
    settings,
    queues,
    client: batcher ? new ExecutionClient(apiUrl, { fetch: batcher.fetch }) : executionClient,
    bundlesFolder: bundles.folder,
    metrics,
    log: log.child({ component: 'worker' }),
    cwd,
    ...(batcher ? { onWorkloadEnd: () => batcher.check() } : {}),
  });
  runningWorkloads = () => workers.runningCount;
  workerId = workers.workerId;
  metrics.addSource(async () => {
    const callbacksQueue = await queues.callbacks.stats();
    return {
      'executor.queued_tasks': await queuedTaskCount(queues),
      'executor.queued_callbacks': callbacksQueue.visible + callbacksQueue.delayed,
    };
  });
  metrics.addSource(() => readinessGauges(engine.readiness));
  workers.start();
  // The callback lane: slots and runner processes of its own (docs/callbacks.md).
  const callbackRunners = new ProcessTaskExecutor({
    dagsFolder: settings.dagsFolder,
    bundlesFolder: bundles.folder,
    cwd,
    memoryLimitMb: settings.taskMemoryLimitMb,
    spareRunners: settings.spareTaskRunners,
  });
  const callbackWorkers = new CallbackWorkerPool({
    queue: queues.callbacks,
    client: executionClient,
    executor: callbackRunners,
    slots: settings.callbackSlots,
    workerId: workers.workerId,
    shutdownGraceMs: settings.shutdownGraceSeconds * 1000,
    metrics,
    log: log.child({ component: 'callbacks' }),
  });
  // Started ahead, as the task pool's are: the first callbacks do not wait for a process to boot.
  callbackRunners.warm(settings.callbackSlots);
  callbackWorkers.start();

  // The triggerer reaches the API over HTTP only, like the Fargate triggerer on AWS.
  const triggerer =
    (options.triggerer ?? settings.triggererEnabled)
      ? new TriggererProcess({
          apiUrl,
          credential: () =>
            tokens.issueClaims({ kind: 'triggerer' }, Date.now(), TRIGGERER_CREDENTIAL_TTL_SECONDS),
          cwd,
          log: log.child({ component: 'triggerer' }),
          // Its logs at the server's level, however that was set.
          env: { ...process.env, UPDRAFT_LOG_LEVEL: settings.logLevel },
        })
      : undefined;
  triggerer?.start();

  const stopLoop = new AbortController();
  // A fresh instance has only what a new Lambda invocation would have: empty caches.
  const engineFor = (): EngineDeps =>
    options.freshInstances ? { ...engine, dags: new DagVersionCache(store) } : engine;
  const loop = schedulerLoop(queues.scheduler, engineFor, stopLoop.signal, log, settings.schedulerBatchSize);
  const background = new BackgroundTasks(log);
  const cycle = { queued: 0, running: 0 };
  background.every(settings.schedulerTickMs, async () => {
    const { wrapped, runs } = await runSchedulerTick(engineFor());
    cycle.queued += runs.queued;
    cycle.running += runs.running;
    if (!wrapped) return;
    // Published once the cursor has gone round every active run.
    metrics.gauge('dag_runs.queued', cycle.queued);
    metrics.gauge('dag_runs.running', cycle.running);
    [cycle.queued, cycle.running] = [0, 0];
  });
  if (settings.dagRefreshIntervalMs > 0) background.every(settings.dagRefreshIntervalMs, refreshDags);
  if (settings.metricsLogIntervalMs > 0) {
    background.every(settings.metricsLogIntervalMs, async () =>
      log.info('metrics', await metrics.snapshot()),
    );
  }
  // Runs left active by an earlier process are recovered now, one bounded tick after another
  // until the reconcile cursor has gone round them all, without holding up the start.
  void background.once(recoverActiveRuns(engine), 'Recovering active runs failed');
  void background.once(
    callbacks.recoverOrphans(startedAtMs),
    "Recovering the previous process's callbacks failed",
  );

  return {
    apiUrl,
    apiToken,
    store,
    queues,
    metrics,
    engine,
    api,
    refreshDags,
    async stop() {
      const backgroundDone = background.stop();
      dagParser.close();
      await Promise.all([workers.stop(), callbackWorkers.stop(), triggerer?.stop()]);
      callbackRunners.close();
      await notifier.drain();
      stopLoop.abort();
      await loop;
      // A tick or a reconciliation under way finishes before the store goes away under it.
      await backgroundDone;
      timers.stop();
      closeQueues();
      await closeServer(server);
      dynamoClient.destroy();
      await dynamo.close();
      await releaseHome();
    },
  };
}

async function readOrCreateSecret(path: string): Promise<string> {
  try {
    const existing = (await readFile(path, 'utf8')).trim();
    if (existing.length >= 32) return existing;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const secret = randomBytes(32).toString('base64url');
  await writeFile(path, `${secret}\n`, { mode: 0o600 });
  return secret;
}

async function listen(
  fetch: (request: Request) => Response | Promise<Response>,
  settings: Settings,
): Promise<Server> {
  try {
    return await listenOn(fetch, settings.port, settings.host);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    throw new StandaloneError(
      `Port ${settings.port} on ${settings.host} is in use: stop the other process or set PORT`,
    );
  }
}

/** Standalone's task workers: the three task queues, with the settings' slots and limits. */
export function taskWorkerPool(deps: {
  settings: Settings;
  queues: Queues;
  client: ExecutionClient;
  bundlesFolder: string;
  metrics: MetricsRegistry;
  log: Logger;
  cwd: string;
  onWorkloadEnd?: () => void;
}): WorkerPool {
  const { settings, queues } = deps;
  return new WorkerPool({
    queues: [queues.tasks_high, queues.tasks_default, queues.tasks_low],
    client: deps.client,
    slots: settings.workerSlots,
    dagsFolder: settings.dagsFolder,
    bundlesFolder: deps.bundlesFolder,
    heartbeatIntervalMs: settings.heartbeatIntervalMs,
    heartbeatTimeoutMs: settings.heartbeatTimeoutMs,
    shutdownGraceMs: settings.shutdownGraceSeconds * 1000,
    taskMemoryLimitMb: settings.taskMemoryLimitMb,
    spareRunners: settings.spareTaskRunners,
    allowedDeserializationClasses: settings.allowedDeserializationClasses,
    metrics: deps.metrics,
    log: deps.log,
    cwd: deps.cwd,
    ...(deps.onWorkloadEnd ? { onWorkloadEnd: deps.onWorkloadEnd } : {}),
  });
}

export async function schedulerLoop(
  queue: Queue,
  engineFor: () => EngineDeps,
  signal: AbortSignal,
  log: Logger,
  batchSize: number,
): Promise<void> {
  while (!signal.aborted) {
    try {
      const messages = await queue.receive({
        maxMessages: Math.min(batchSize, MAX_BATCH),
        waitTimeMs: 5_000,
        signal,
      });
      if (messages.length === 0) continue;
      // What is already waiting joins the batch, as an SQS event source's batching window does:
      // under load a pass then serves several requests of its run, idle costs no latency. A
      // receive that was not full found the queue empty: no further (empty) receive is made.
      let last = messages.length;
      while (last === MAX_BATCH && messages.length < batchSize && !signal.aborted) {
        const more = await queue.receive({
          maxMessages: Math.min(batchSize - messages.length, MAX_BATCH),
          waitTimeMs: 0,
          signal,
        });
        last = more.length;
        messages.push(...more);
      }
      const { retry } = await handleSchedulingMessages(engineFor(), messages);
      const done = messages
        .map((message) => message.receiptHandle)
        .filter((receipt) => !retry.includes(receipt));
      await queue.delete(done);
    } catch (error) {
      log.error('Scheduler loop error', { error });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
}

/** Ticks until the reconcile cursor has gone once round every active run (bounded). */
async function recoverActiveRuns(engine: EngineDeps): Promise<void> {
  for (let tick = 0; tick < 1_000; tick += 1) {
    if ((await runSchedulerTick(engine)).wrapped) return;
  }
}

/** What a dead-lettered message was, for the log, without the token a workload carries. */
function describeMessage(body: string): unknown {
  try {
    const { token: _token, ...rest } = JSON.parse(body) as Record<string, unknown>;
    return rest;
  } catch {
    return `${body.slice(0, 200)} (not JSON)`;
  }
}

/** Workloads waiting in the task queues (Airflow's executor.queued_tasks). */
async function queuedTaskCount(queues: Queues): Promise<number> {
  const stats = await Promise.all(
    [queues.tasks_high, queues.tasks_default, queues.tasks_low].map((q) => q.stats()),
  );
  return stats.reduce((total, { visible, delayed }) => total + visible + delayed, 0);
}

/** setTimeout's largest delay (about 24.8 days); a longer wait is re-armed in steps. */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/** Wake-ups one run keeps at most (its retries, its run timeout and its deadlines); the tick covers any more. */
const MAX_WAKES_PER_RUN = 64;

/**
 * Wake-up timers of the standalone process (retries, run timeouts, deadlines): a run is scheduled
 * again at each time asked for. A run keeps every time asked for (an earlier one does not replace
 * a later one), one timer armed at the earliest; a timer that fires before its time (Node's timers
 * may, by a millisecond) is armed again. They live as long as the process; after a restart the
 * tick finds what is due.
 */
export class InProcessTimers implements WakeTimers {
  readonly #notifier: SchedulingNotifier;
  readonly #timers = new Map<
    string,
    { run: DagRunKey; times: number[]; at: number; handle: NodeJS.Timeout }
  >();

  constructor(notifier: SchedulingNotifier) {
    this.#notifier = notifier;
  }

  async wakeAt(run: DagRunKey, atMs: number): Promise<void> {
    const id = `${run.dagId}\u0000${run.runId}`;
    const existing = this.#timers.get(id);
    if (!existing) {
      this.#arm(id, { run: { dagId: run.dagId, runId: run.runId }, times: [atMs] });
      return;
    }
    if (existing.times.includes(atMs)) return;
    existing.times = [...existing.times, atMs].sort((a, b) => a - b).slice(0, MAX_WAKES_PER_RUN);
    if (atMs < existing.at) {
      clearTimeout(existing.handle);
      this.#arm(id, existing);
    }
  }

  #arm(id: string, entry: { run: DagRunKey; times: number[] }): void {
    const at = entry.times[0] as number;
    const delay = Math.max(0, at - Date.now());
    const handle = setTimeout(() => this.#fire(id), Math.min(delay, MAX_TIMER_DELAY_MS));
    handle.unref();
    this.#timers.set(id, { ...entry, at, handle });
  }

  #fire(id: string): void {
    const entry = this.#timers.get(id);
    if (!entry) return;
    const now = Date.now();
    // Early (a long wait in steps, or a timer a millisecond ahead of the clock): armed again.
    if (now < entry.at) {
      this.#arm(id, entry);
      return;
    }
    const later = entry.times.filter((time) => time > now);
    if (later.length > 0) this.#arm(id, { run: entry.run, times: later });
    else this.#timers.delete(id);
    void this.#notifier.notify(entry.run);
  }

  stop(): void {
    for (const { handle } of this.#timers.values()) clearTimeout(handle);
    this.#timers.clear();
  }
}

/** Periodic jobs that never overlap themselves and log instead of throwing; the stop awaits them. */
export class BackgroundTasks {
  readonly #log: Logger;
  readonly #handles: NodeJS.Timeout[] = [];
  readonly #running = new Set<Promise<void>>();

  constructor(log: Logger) {
    this.#log = log;
  }

  every(intervalMs: number, job: () => Promise<void>): void {
    let running = false;
    const handle = setInterval(() => {
      if (running) return;
      running = true;
      void this.once(job(), 'Background job failed').finally(() => {
        running = false;
      });
    }, intervalMs);
    this.#handles.push(handle);
  }

  /** Tracks one job already started, logging its failure as `failure`. */
  once(job: Promise<unknown>, failure: string): Promise<void> {
    const tracked = job.then(
      () => undefined,
      (error: unknown) => this.#log.error(failure, { error }),
    );
    this.#running.add(tracked);
    void tracked.finally(() => this.#running.delete(tracked));
    return tracked;
  }

  /** Starts no more jobs; settles once those under way have. */
  async stop(): Promise<void> {
    for (const handle of this.#handles) clearInterval(handle);
    await Promise.all(this.#running);
  }
}

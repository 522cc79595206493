import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import type { ApiApp } from '#api/app.ts';
import { createApiStack } from '#api/stack.ts';
import { apiUrlOf, type Settings } from '#config/settings.ts';
import type { DagRunKey } from '#core/models.ts';
import { registerDags } from '#engine/dag-registry.ts';
import type { Logger } from '#engine/logger.ts';
import { schedulingRequestSchema } from '#engine/messages.ts';
import type { SchedulingNotifier } from '#engine/notifier.ts';
import { Scheduler, type WakeTimers } from '#engine/scheduler.ts';
import { FileLogStore } from '#logs/file-store.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import { createInMemoryQueues } from '#queue/memory.ts';
import type { Queue, Queues } from '#queue/port.ts';
import { DynamoStore } from '#store/dynamodb.ts';
import {
  createDynamoClient,
  ensureTable,
  startEmbeddedDynamoProcess,
  toDocumentClient,
} from '#store/embedded.ts';
import { instrumentClient, type RequestCounter } from '#store/instrument.ts';
import type { Store } from '#store/port.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import { WorkerPool } from '#worker/pool.ts';
import { StandaloneError } from './errors.ts';
import { parseDagsFolder } from './parse-dags.ts';

export const TABLE_NAME = 'updraft';

export interface StandaloneOptions {
  log: Logger;
  /** Keep the store in memory instead of under `<home>/store` (tests, benchmarks). */
  inMemoryStore?: boolean;
  /** Counts every store request (benchmarks). */
  requestCounter?: RequestCounter;
  cwd?: string;
}

export interface Standalone {
  apiUrl: string;
  apiToken: string;
  store: Store;
  queues: Queues;
  metrics: MetricsRegistry;
  scheduler: Scheduler;
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
  await mkdir(settings.home, { recursive: true });
  const releaseHome = await lockHome(settings.home);
  const apiToken = await readOrCreateSecret(join(settings.home, 'api-token'));
  const executionSecret = await readOrCreateSecret(join(settings.home, 'execution-secret'));

  const dynamo = await startEmbeddedDynamoProcess(
    options.inMemoryStore ? {} : { path: join(settings.home, 'store') },
  );
  const dynamoClient = createDynamoClient({ endpoint: dynamo.endpoint, embedded: true });
  if (options.requestCounter) instrumentClient(dynamoClient, options.requestCounter);
  await ensureTable(dynamoClient, TABLE_NAME);
  const store = new DynamoStore({ client: toDocumentClient(dynamoClient), tableName: TABLE_NAME });

  const { queues, close: closeQueues } = createInMemoryQueues(settings);
  const metrics = new MetricsRegistry();
  const now = () => Date.now();
  const { api, dags, notifier, tokens } = createApiStack({
    store,
    queues,
    logs: new FileLogStore(join(settings.home, 'logs'), settings.logMaxBytes),
    metrics,
    settings,
    apiToken,
    executionSecret,
    log,
    now,
  });
  const server = await listen(api, settings);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : settings.port;
  const apiUrl = settings.apiUrl ?? apiUrlOf({ ...settings, port });

  const timers = new InProcessTimers(notifier);
  const scheduler = new Scheduler({
    store,
    queues,
    dags,
    tokens,
    timers,
    metrics,
    settings,
    log: log.child({ component: 'scheduler' }),
    now,
  });
  const refreshDags = async () => {
    const parsed = await parseDagsFolder(settings.dagsFolder, { cwd });
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
  // In-process queues start empty: queued work of an earlier process is sent again and its
  // running tries, whose worker died with it, are failed or retried at once.
  await scheduler.start({ recoverOrphans: true });

  const workers = new WorkerPool({
    queues: [queues.tasks_high, queues.tasks_default, queues.tasks_low],
    client: new ExecutionClient(apiUrl, {
      fetch: (input, init) => Promise.resolve(api.fetch(new Request(input, init))),
    }),
    slots: settings.workerSlots,
    dagsFolder: settings.dagsFolder,
    heartbeatIntervalMs: settings.heartbeatIntervalMs,
    shutdownGraceMs: settings.shutdownGraceSeconds * 1000,
    metrics,
    log: log.child({ component: 'worker' }),
    cwd,
  });
  metrics.addSource(async () => ({ 'executor.queued_tasks': await queuedTaskCount(queues) }));
  workers.start();

  const stopLoop = new AbortController();
  const loop = schedulerLoop(queues.scheduler, scheduler, stopLoop.signal, log, settings.schedulerBatchSize);
  const background = new BackgroundTasks(log);
  background.every(settings.schedulerTickMs, () => scheduler.tick());
  if (settings.dagRefreshIntervalMs > 0) background.every(settings.dagRefreshIntervalMs, refreshDags);
  if (settings.metricsLogIntervalMs > 0) {
    background.every(settings.metricsLogIntervalMs, async () =>
      log.info('metrics', await metrics.snapshot()),
    );
  }
  // A first tick now: due scheduled runs and runs left active by an earlier process.
  scheduler.tick().catch((error: unknown) => log.error('First scheduler tick failed', { error }));

  return {
    apiUrl,
    apiToken,
    store,
    queues,
    metrics,
    scheduler,
    api,
    refreshDags,
    async stop() {
      background.stop();
      await workers.stop();
      await notifier.drain();
      stopLoop.abort();
      await loop;
      timers.stop();
      closeQueues();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      dynamoClient.destroy();
      await dynamo.close();
      await releaseHome();
    },
  };
}

/**
 * One standalone process per home: its store is a LevelDB database that only one process may
 * open. The lock file holds the owner's pid; a lock left by a process that is gone (kill -9) is
 * taken over.
 */
async function lockHome(home: string): Promise<() => Promise<void>> {
  const path = join(home, 'standalone.pid');
  try {
    const owner = Number((await readFile(path, 'utf8')).trim());
    if (Number.isInteger(owner) && owner !== process.pid && isAlive(owner)) {
      throw new StandaloneError(
        `Another Updraft standalone process (pid ${owner}) is using ${home}: stop it, or set UPDRAFT_HOME to another folder`,
      );
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await writeFile(path, `${process.pid}\n`);
  return async () => {
    await rm(path, { force: true });
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
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

async function listen(api: ApiApp, settings: Settings): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: api.fetch, port: settings.port, hostname: settings.host }, () =>
      resolve(server as Server),
    ) as Server;
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'EADDRINUSE'
          ? new StandaloneError(
              `Port ${settings.port} on ${settings.host} is in use: stop the other process or set PORT`,
            )
          : error,
      );
    });
  });
}

async function schedulerLoop(
  queue: Queue,
  scheduler: Scheduler,
  signal: AbortSignal,
  log: Logger,
  batchSize: number,
): Promise<void> {
  while (!signal.aborted) {
    try {
      const messages = await queue.receive({ maxMessages: batchSize, waitTimeMs: 5_000, signal });
      if (messages.length === 0) continue;
      const runs: DagRunKey[] = [];
      for (const message of messages) {
        const parsed = schedulingRequestSchema.safeParse(JSON.parse(message.body));
        if (parsed.success) runs.push({ dagId: parsed.data.dag_id, runId: parsed.data.run_id });
        else log.error('Dropping a malformed scheduling request', { body: message.body });
      }
      await scheduler.handleRequests(runs);
      await queue.delete(messages.map((message) => message.receiptHandle));
    } catch (error) {
      log.error('Scheduler loop error', { error });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
}

/** Workloads waiting in the task queues (Airflow's executor.queued_tasks). */
async function queuedTaskCount(queues: Queues): Promise<number> {
  const stats = await Promise.all(
    [queues.tasks_high, queues.tasks_default, queues.tasks_low].map((q) => q.stats()),
  );
  return stats.reduce((total, { visible, delayed }) => total + visible + delayed, 0);
}

/** Retry timers of the standalone process: a run is scheduled again when its earliest retry is due. */
class InProcessTimers implements WakeTimers {
  readonly #notifier: SchedulingNotifier;
  readonly #timers = new Map<string, { at: number; handle: NodeJS.Timeout }>();

  constructor(notifier: SchedulingNotifier) {
    this.#notifier = notifier;
  }

  wakeAt(run: DagRunKey, atMs: number): void {
    const id = `${run.dagId}\u0000${run.runId}`;
    const existing = this.#timers.get(id);
    if (existing && existing.at <= atMs) return;
    if (existing) clearTimeout(existing.handle);
    const handle = setTimeout(
      () => {
        this.#timers.delete(id);
        this.#notifier.notify(run);
      },
      Math.max(0, atMs - Date.now()),
    );
    handle.unref();
    this.#timers.set(id, { at: atMs, handle });
  }

  stop(): void {
    for (const { handle } of this.#timers.values()) clearTimeout(handle);
    this.#timers.clear();
  }
}

/** Periodic jobs that never overlap themselves and log instead of throwing. */
class BackgroundTasks {
  readonly #log: Logger;
  readonly #handles: NodeJS.Timeout[] = [];

  constructor(log: Logger) {
    this.#log = log;
  }

  every(intervalMs: number, job: () => Promise<void>): void {
    let running = false;
    const handle = setInterval(() => {
      if (running) return;
      running = true;
      job()
        .catch((error: unknown) => this.#log.error('Background job failed', { error }))
        .finally(() => {
          running = false;
        });
    }, intervalMs);
    this.#handles.push(handle);
  }

  stop(): void {
    for (const handle of this.#handles) clearInterval(handle);
  }
}

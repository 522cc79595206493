import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createApiStack } from '#api/stack.ts';
import { BundleStore } from '#bundles/store.ts';
import { type Settings, settingsSchema } from '#config/settings.ts';
import { mapConcurrently } from '#core/concurrency.ts';
import {
  type DagRun,
  newTaskInstance,
  type TaskInstance,
  type TaskInstanceKey,
  type Trigger,
} from '#core/models.ts';
import { type ParsedDagsFolder, registerDags } from '#engine/dag-registry.ts';
import { runSchedulerTick } from '#engine/entrypoints.ts';
import { createLogger } from '#engine/logger.ts';
import type { EngineDeps } from '#engine/scheduler.ts';
import { DEFAULT_TRIGGER_QUEUE, triggerIdOf } from '#engine/triggers.ts';
import { closeServer, listenOn, localUrlOf } from '#http/server.ts';
import { FileLogStore } from '#logs/file-store.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import { createInMemoryQueues } from '#queue/memory.ts';
import { DagFileParser } from '#standalone/parse-dags.ts';
import { BackgroundTasks, InProcessTimers, schedulerLoop, taskWorkerPool } from '#standalone/services.ts';
import { batchWriteAll } from '#store/batch.ts';
import { DynamoStore } from '#store/dynamodb.ts';
import {
  createDynamoClient,
  ensureTable,
  startEmbeddedDynamoProcess,
  toDocumentClient,
} from '#store/embedded.ts';
import { ConditionFailedError } from '#store/errors.ts';
import { instrumentClient, RequestCounter, type RequestCounts } from '#store/instrument.ts';
import { taskInstanceToItem } from '#store/items.ts';
import { triggerToItem } from '#store/trigger-store.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import { processCpuMs } from './triggers-process.ts';

/**
 * The triggerer benchmark's API side: the API wired as `createApiStack` wires it (as
 * test/integration/api-harness.ts does), on the embedded in-memory DynamoDB in its own process (as
 * standalone runs it), served over real HTTP on 127.0.0.1; on `startRunning`, also a scheduler and
 * a worker pool wired as standalone wires them, which run each resumed TI to its end (the DAG is
 * bench/dags-triggers/bench_deferred.ts, parsed and bundled as standalone does). Deferred work is
 * written straight to the store, as the items TaskLifecycle's deferral leaves (`putTrigger`, then
 * running → deferred): each TI in `deferred` at try 1, deferral 1, and its trigger. Both with
 * BatchWriteItem (25 items a call) for the setup's speed, and the TIs first: the moments of the
 * triggers are fixed from the time the TIs took, so the window starts a little after the setup
 * ends. Nothing reads the store during the setup, so the order is not seen.
 */

const TRIGGER_NAME = 'updraft.DateTimeTrigger';
const DAG_ID = 'bench_deferred';
const DAGS_FOLDER = resolve('bench/dags-triggers');
/** Tasks per run (the DAG's): 100 runs for 10,000 deferred TIs. */
export const TASKS_PER_RUN = 100;
/** Runs written at once while seeding. */
const SEED_CONCURRENCY = 4;
/** getTaskInstances reads 100 keys a call; this many calls at once when reading results. */
const READ_CONCURRENCY = 2;

/** One deferred TI and the id of its trigger. */
export interface SeededTaskInstance {
  key: TaskInstanceKey;
  triggerId: string;
}

/** One deferred TI and the moment its trigger fires. */
export interface SeededTrigger extends SeededTaskInstance {
  momentMs: number;
}

/** When the API claimed what for whom: the store's `claimTrigger`, watched. */
export interface ClaimLog {
  /** The first `listUnclaimedTriggers` (a triggerer's first load that reached the store). */
  firstLoadAt: number | undefined;
  /** Trigger id → the job holding it and when it was claimed (the last claim wins). */
  holder: Map<string, { jobId: string; at: number }>;
  /** Claims refused because another claim got there first (two load calls racing for one list). */
  refused: number;
}

export interface TriggerStack {
  apiUrl: string;
  store: DynamoStore;
  claims: ClaimLog;
  /** The API's warnings and errors so far, counted by message (cut at 160 characters). */
  apiWarnings(): Record<string, number>;
  /** Store requests sent since the last `resetRequests` (the bench's own reads included). */
  requests(): RequestCounts;
  /** Execution API calls since the last `resetRequests`, by route (ids cut out) and status. */
  apiCalls(): Record<string, number>;
  /** Load calls answered since the last `resetRequests`: when each arrived, how long it took. */
  loadCalls(): { at: number; ms: number }[];
  /** Trigger id → when its first event call reached the API. */
  eventArrivals: ReadonlyMap<string, number>;
  /** Ids a triggerer asked the workloads of: the claims it knows of (and runs). */
  fetched: ReadonlySet<string>;
  resetRequests(): void;
  /** Writes `count` runs' worth of deferred TIs (TASKS_PER_RUN a run), each naming its trigger. */
  seedTaskInstances(runPrefix: string, count: number): Promise<SeededTaskInstance[]>;
  /** Writes the trigger of each seeded TI, firing at `moments[i]`. */
  seedTriggers(seeded: readonly SeededTaskInstance[], moments: readonly number[]): Promise<SeededTrigger[]>;
  /** Reads the TIs in batches of 100 keys. */
  readTaskInstances(keys: readonly TaskInstanceKey[]): Promise<TaskInstance[]>;
  /** Events applied so far (the API's `triggers.events_applied`). */
  eventsApplied(): Promise<number>;
  /** Starts a scheduler and a worker pool, which run the resumed TIs to their end. */
  startRunning(): void;
  /** Runs that ended in success so far (after `startRunning`): each holds TASKS_PER_RUN TIs. */
  runsSucceeded(): Promise<number>;
  triggererCredential(): Promise<string>;
  /** CPU milliseconds the store's process has used so far. */
  storeCpuMs(): Promise<number | undefined>;
  close(): Promise<void>;
}

export async function startTriggerStack(): Promise<TriggerStack> {
  const home = await mkdtemp(join(tmpdir(), 'updraft-bench-triggers-'));
  // Defaults throughout (heartbeat interval and timeout, load interval, limits).
  const settings = settingsSchema.parse({ home, port: 0, dagsFolder: DAGS_FOLDER });
  const dynamo = await startEmbeddedDynamoProcess();
  const dynamoClient = createDynamoClient({ endpoint: dynamo.endpoint, embedded: true });
  await ensureTable(dynamoClient, 'updraft');
  const documentClient = toDocumentClient(dynamoClient);
  const counter = new RequestCounter();
  instrumentClient(documentClient, counter);
  const store = new DynamoStore({ client: documentClient, tableName: 'updraft' });
  const claims = watchClaims(store);
  const { queues, close: closeQueues } = createInMemoryQueues(settings);
  const metrics = new MetricsRegistry();
  const now = () => Date.now();
  // Collected, not printed: they would land in the middle of the benchmark's table.
  const apiWarnings: Record<string, number> = {};
  const log = createLogger({
    level: 'warn',
    write: (line) => {
      let message = line.slice(0, 160);
      try {
        const parsed = JSON.parse(line) as { level?: string; message?: string };
        message = `${parsed.level}: ${String(parsed.message).slice(0, 160)}`;
      } catch {
        // Counted as it came.
      }
      apiWarnings[message] = (apiWarnings[message] ?? 0) + 1;
    },
    pretty: false,
  });
  const apiStack = createApiStack({
    store,
    queues,
    logs: new FileLogStore(join(home, 'logs')),
    metrics,
    settings,
    apiToken: 'bench-api-token-0123456789abcdef',
    executionKeys: { k1: 'bench-execution-secret-0123456789abcdef' },
    log,
    now,
  });
  const { api, tokens, notifier } = apiStack;
  // Requests in flight: the store is closed only once none is (a killed triggerer's calls go on).
  // Calls by route, the load calls' durations, which claims the triggerer fetched, and when each
  // trigger's event call first arrived.
  let inFlight = 0;
  let calls: Record<string, number> = {};
  let loadCalls: { at: number; ms: number }[] = [];
  const eventArrivals = new Map<string, number>();
  const fetched = new Set<string>();
  const fetchCounted = async (...args: Parameters<typeof api.fetch>) => {
    inFlight += 1;
    const arrivedAt = Date.now();
    const { route, triggerId } = routeOf(args[0]);
    const arrived = (id: string) => {
      if (!eventArrivals.has(id)) eventArrivals.set(id, arrivedAt);
    };
    if (route === EVENT_ROUTE && triggerId !== undefined) arrived(triggerId);
    try {
      if (route === EVENTS_ROUTE) {
        const body = (await args[0]
          .clone()
          .json()
          .catch(() => ({}))) as { events?: { trigger_id: string }[] };
        for (const event of body.events ?? []) arrived(event.trigger_id);
      }
      if (route === WORKLOADS_ROUTE) {
        const body = (await args[0]
          .clone()
          .json()
          .catch(() => ({}))) as { trigger_ids?: string[] };
        for (const id of body.trigger_ids ?? []) fetched.add(id);
      }
      const response = await api.fetch(...args);
      const name = `${route} ${response.status}`;
      calls[name] = (calls[name] ?? 0) + 1;
      if (route === LOAD_ROUTE) loadCalls.push({ at: arrivedAt, ms: Date.now() - arrivedAt });
      return response;
    } finally {
      inFlight -= 1;
    }
  };
  const server = await listenOn(fetchCounted, 0, '127.0.0.1');
  const apiUrl = localUrlOf(server);
  const bundles = new BundleStore(join(home, 'bundles'));
  const parser = new DagFileParser({
    dagsFolder: DAGS_FOLDER,
    cwd: process.cwd(),
    fileTimeoutMs: settings.dagFileParseTimeoutMs,
    bundles,
  });
  let versioned: ParsedDagsFolder['dags'][number];
  try {
    const parsed = await parser.parse();
    const found = parsed.dags.find((entry) => entry.dag.dagId === DAG_ID);
    if (!found) throw new Error(`${DAG_ID} did not parse: ${JSON.stringify(parsed.errors)}`);
    versioned = found;
    await registerDags({ store, log, now, pausedAtCreation: false }, parsed);
  } catch (error) {
    // Nothing is left running: the store's process, the server, the queues.
    closeQueues();
    await closeServer(server);
    dynamoClient.destroy();
    await dynamo.close();
    await rm(home, { recursive: true, force: true });
    throw error;
  } finally {
    parser.close();
  }
  let running: { stop(): Promise<void> } | undefined;

  async function seedTaskInstances(runPrefix: string, count: number): Promise<SeededTaskInstance[]> {
    const runs = Math.ceil(count / TASKS_PER_RUN);
    const perRun = await mapConcurrently(
      Array.from({ length: runs }, (_, run) => run),
      SEED_CONCURRENCY,
      async (runIndex) => {
        const runId = `${runPrefix}_${String(runIndex).padStart(5, '0')}`;
        const nowIso = new Date().toISOString();
        const run: DagRun = {
          dagId: DAG_ID,
          runId,
          runType: 'manual',
          state: 'running',
          logicalDate: nowIso,
          dataIntervalStart: null,
          dataIntervalEnd: null,
          conf: {},
          dagVersion: versioned.versionHash,
          queuedAt: nowIso,
          startDate: nowIso,
          endDate: null,
          clearCount: 0,
          revision: 0,
        };
        const seeded: SeededTaskInstance[] = [];
        const taskInstances: TaskInstance[] = [];
        for (const task of versioned.dag.tasks.slice(0, count - runIndex * TASKS_PER_RUN)) {
          const key = { dagId: DAG_ID, runId, taskId: task.taskId, mapIndex: -1 };
          // As TaskLifecycle records a first deferral of try 1 (its `#record`, case 'deferred').
          const triggerId = triggerIdOf(key, 1, 1);
          taskInstances.push({
            ...newTaskInstance(key, task),
            state: 'deferred',
            tryNumber: 1,
            queuedAt: nowIso,
            startDate: nowIso,
            reportId: `bench-${runId}-${task.taskId}`,
            deferralSeq: 1,
            nextMethod: 'executeComplete',
            nextKwargs: '{}',
            nextEvent: null,
            triggerId,
            triggerTimeoutAt: null,
            tryStartedAt: nowIso,
          });
          seeded.push({ key, triggerId });
        }
        await store.createDagRun(run, []);
        await batchWriteAll(
          documentClient,
          'updraft',
          taskInstances.map((ti) => ({ PutRequest: { Item: taskInstanceToItem(ti) } })),
        );
        return seeded;
      },
    );
    return perRun.flat();
  }

  async function seedTriggers(
    seeded: readonly SeededTaskInstance[],
    moments: readonly number[],
  ): Promise<SeededTrigger[]> {
    const startedMs = Date.now();
    const triggers = seeded.map(({ key, triggerId }, index): Trigger => {
      const momentMs = moments[index] as number;
      return {
        triggerId,
        name: TRIGGER_NAME,
        kwargs: JSON.stringify({ moment: new Date(momentMs).toISOString() }),
        queue: DEFAULT_TRIGGER_QUEUE,
        ti: key,
        tryNumber: 1,
        deferralSeq: 1,
        // In the past and in the order of the moments: a load claims the oldest first.
        createdAt: new Date(startedMs - seeded.length + index).toISOString(),
        timeoutAt: null,
        jobId: null,
        claimedAt: null,
        revision: 0,
      };
    });
    const runs: Trigger[][] = [];
    for (let start = 0; start < triggers.length; start += TASKS_PER_RUN)
      runs.push(triggers.slice(start, start + TASKS_PER_RUN));
    await mapConcurrently(runs, SEED_CONCURRENCY, (batch) =>
      batchWriteAll(
        documentClient,
        'updraft',
        batch.map((trigger) => ({ PutRequest: { Item: triggerToItem(trigger) } })),
      ),
    );
    return seeded.map((entry, index) => ({ ...entry, momentMs: moments[index] as number }));
  }

  async function readTaskInstances(keys: readonly TaskInstanceKey[]): Promise<TaskInstance[]> {
    const batches: TaskInstanceKey[][] = [];
    for (let start = 0; start < keys.length; start += 100) batches.push(keys.slice(start, start + 100));
    return (
      await mapConcurrently(batches, READ_CONCURRENCY, (batch) => store.getTaskInstances(batch))
    ).flat();
  }

  return {
    apiUrl,
    store,
    claims,
    apiWarnings: () => ({ ...apiWarnings }),
    requests: () => counter.snapshot(),
    apiCalls: () => ({ ...calls }),
    loadCalls: () => [...loadCalls],
    eventArrivals,
    fetched,
    resetRequests: () => {
      counter.reset();
      calls = {};
      loadCalls = [];
    },
    seedTaskInstances,
    seedTriggers,
    readTaskInstances,
    eventsApplied: async () => (await metrics.snapshot()).counters['triggers.events_applied'] ?? 0,
    startRunning: () => {
      running ??= startRunning(apiStack, { settings, store, queues, metrics, log, now, apiUrl, bundles });
    },
    runsSucceeded: async () => (await metrics.snapshot()).counters['dag_runs.success'] ?? 0,
    triggererCredential: () => tokens.issueClaims({ kind: 'triggerer' }, Date.now()),
    storeCpuMs: () => processCpuMs(dynamo.pid),
    async close() {
      await running?.stop();
      for (let waited = 0; inFlight > 0 && waited < 30_000; waited += 50)
        await new Promise((resolve) => setTimeout(resolve, 50));
      await notifier.drain();
      closeQueues();
      await closeServer(server);
      dynamoClient.destroy();
      await dynamo.close();
      await rm(home, { recursive: true, force: true });
    },
  };
}

/**
 * A scheduler (scheduling requests and the periodic tick) and a worker pool over real HTTP, as
 * standalone wires them: they queue and run the TIs the triggers' events resume.
 */
function startRunning(
  stack: ReturnType<typeof createApiStack>,
  deps: Pick<EngineDeps, 'store' | 'queues' | 'log' | 'now'> & {
    settings: Settings;
    metrics: MetricsRegistry;
    apiUrl: string;
    bundles: BundleStore;
  },
): { stop(): Promise<void> } {
  const { settings, queues, log } = deps;
  const timers = new InProcessTimers(stack.notifier);
  const engine: EngineDeps = {
    ...deps,
    dags: stack.dags,
    tokens: stack.tokens,
    timers,
    readiness: new Map(),
    callbacks: stack.callbacks,
  };
  const stopLoop = new AbortController();
  const loop = schedulerLoop(
    queues.scheduler,
    () => engine,
    stopLoop.signal,
    log,
    settings.schedulerBatchSize,
  );
  const background = new BackgroundTasks(log);
  background.every(settings.schedulerTickMs, async () => {
    await runSchedulerTick(engine);
  });
  const workers = taskWorkerPool({
    settings,
    queues,
    client: new ExecutionClient(deps.apiUrl),
    bundlesFolder: deps.bundles.folder,
    metrics: deps.metrics,
    log,
    cwd: process.cwd(),
  });
  workers.start();
  return {
    async stop() {
      await workers.stop();
      await background.stop();
      stopLoop.abort();
      await loop;
      timers.stop();
    },
  };
}

/** Wraps the store's claim and load reads (the API calls them on the store instance) to log claims. */
function watchClaims(store: DynamoStore): ClaimLog {
  const log: ClaimLog = { firstLoadAt: undefined, holder: new Map(), refused: 0 };
  const listUnclaimed = store.listUnclaimedTriggers.bind(store);
  store.listUnclaimedTriggers = async (...args: Parameters<DynamoStore['listUnclaimedTriggers']>) => {
    log.firstLoadAt ??= Date.now();
    return listUnclaimed(...args);
  };
  const claim = store.claimTrigger.bind(store);
  store.claimTrigger = async (...args: Parameters<DynamoStore['claimTrigger']>) => {
    const [triggerId, , jobId] = args;
    try {
      const claimed = await claim(...args);
      log.holder.set(triggerId, { jobId, at: Date.now() });
      return claimed;
    } catch (error) {
      if (error instanceof ConditionFailedError) log.refused += 1;
      throw error;
    }
  };
  return log;
}

const EVENT_ROUTE = 'POST /execution/triggers/:id/event';
const EVENTS_ROUTE = 'POST /execution/triggers/events';
const LOAD_ROUTE = 'POST /execution/triggers/load';
const WORKLOADS_ROUTE = 'POST /execution/triggers/workloads';
const NAMED_TRIGGER_ROUTES = new Set(['load', 'workloads', 'cleanup', 'logs', 'events', 'held']);

/** A request's route with its ids cut out (`POST /execution/triggers/:id/event`), and the trigger id. */
function routeOf(request: Request): { route: string; triggerId?: string } {
  const [, first, second, id, ...rest] = new URL(request.url).pathname.split('/');
  if (first === 'execution' && second === 'triggers' && id !== undefined && !NAMED_TRIGGER_ROUTES.has(id))
    return { route: `${request.method} /execution/triggers/:id/${rest.join('/')}`, triggerId: id };
  if (first === 'execution' && second === 'task-instances' && id !== undefined)
    return { route: `${request.method} /execution/task-instances/:id/${rest.join('/')}` };
  if (first === 'execution' && second === 'jobs' && id !== undefined)
    return { route: `${request.method} /execution/jobs/:id${rest.length > 0 ? `/${rest.join('/')}` : ''}` };
  return { route: `${request.method} ${new URL(request.url).pathname}` };
}

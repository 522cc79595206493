import { randomUUID } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { type Settings, settingsSchema } from '#config/settings.ts';
import { type TaskWorkload, taskWorkloadSchema } from '#contracts/messages.ts';
import type { DagRun, DagRunKey, TaskInstance, TaskInstanceKey } from '#core/models.ts';
import type { VersionedDag } from '#core/serialized-dag.ts';
import { DagVersionCache } from '#engine/dag-cache.ts';
import { registerDags } from '#engine/dag-registry.ts';
import { handleSchedulingMessages, runSchedulerTick } from '#engine/entrypoints.ts';
import { silentLogger } from '#engine/logger.ts';
import { SchedulingNotifier, schedulingRequestsFor } from '#engine/notifier.ts';
import type { OrphanPolicy, WakeTimers } from '#engine/ports.ts';
import { createDagRun } from '#engine/runs.ts';
import { type EngineDeps, readinessGauges } from '#engine/scheduler.ts';
import { TaskLifecycle, type TaskReport } from '#engine/task-lifecycle.ts';
import { TaskTokenSigner } from '#engine/tokens.ts';
import type { LogStore } from '#logs/port.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import { createInMemoryQueues, type InMemoryQueues } from '#queue/memory.ts';
import type { Queue, Queues, ReceivedMessage } from '#queue/port.ts';
import type { Dag } from '#sdk/index.ts';
import { versionDag } from '#sdk/serialize.ts';
import { DynamoStore } from '#store/dynamodb.ts';
import { createDynamoClient, ensureTable, startEmbeddedDynamo, toDocumentClient } from '#store/embedded.ts';
import { taskInstanceKey } from '#store/keys.ts';

/** The fake clock starts here; tokens are issued at this time, so it must lie in the past. */
export const START_MS = Date.parse('2026-01-05T12:00:00.000Z');
const TABLE_NAME = 'updraft';
/** Tokens signed at the fake time must still verify at the real time. */
const TOKEN_TTL_SECONDS = 10 * 365 * 24 * 3600;
const TASK_QUEUES = ['tasks_high', 'tasks_default', 'tasks_low'] as const;

/** Task logs kept in memory, by TI, try and chunk id. */
export class MemoryLogStore implements LogStore {
  readonly #chunks = new Map<string, Map<string, string>>();

  async appendChunk(key: TaskInstanceKey, tryNumber: number, chunkId: string, text: string): Promise<void> {
    const id = `${idOf(key)}\u0000${tryNumber}`;
    const chunks = this.#chunks.get(id) ?? new Map<string, string>();
    chunks.set(chunkId, text);
    this.#chunks.set(id, chunks);
  }

  async read(key: TaskInstanceKey, tryNumber: number): Promise<string | undefined> {
    const chunks = this.#chunks.get(`${idOf(key)}\u0000${tryNumber}`);
    if (!chunks) return undefined;
    return [...chunks.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, text]) => text)
      .join('');
  }
}

/** A `WakeTimers` that only records what the scheduler asked for. */
export class RecordingWakeTimers implements WakeTimers {
  readonly calls: { run: DagRunKey; atMs: number }[] = [];

  async wakeAt(run: DagRunKey, atMs: number): Promise<void> {
    this.calls.push({ run: { dagId: run.dagId, runId: run.runId }, atMs });
  }
}

/**
 * The scheduler as tests drive it: each call runs the engine's entry points in a fresh engine
 * instance (new caches, nothing remembered from earlier calls), as a Lambda invocation would.
 */
export interface SchedulerCalls {
  /** A batch of scheduling requests for these runs. */
  handleRequests(runs: readonly DagRunKey[]): Promise<void>;
  /** A batch of received scheduling messages; returns the receipts not to delete. */
  handleMessages(messages: readonly ReceivedMessage[]): Promise<{ retry: string[] }>;
  tick(): Promise<{ wrapped: boolean }>;
}

export interface ReceivedWorkload {
  queue: Queue;
  receiptHandle: string;
  workload: TaskWorkload;
}

export interface HarnessOptions {
  settings?: Partial<Settings>;
}

/**
 * A scheduler wired like `startStandalone` wires it (in-memory dynalite, in-process queues, the
 * real store, cache, signer and metrics) with a controllable clock and recorded wake timers. A
 * `TaskLifecycle` on the same clock plays the worker, taking the workloads from the task queues.
 */
export class SchedulerHarness {
  readonly clock = { now: START_MS };
  readonly now = (): number => this.clock.now;
  readonly settings: Settings;
  readonly store: DynamoStore;
  readonly documentClient: DynamoDBDocumentClient;
  readonly dags: DagVersionCache;
  readonly tokens = new TaskTokenSigner('harness-secret-harness-secret-1234', TOKEN_TTL_SECONDS);
  readonly metrics = new MetricsRegistry();
  readonly timers = new RecordingWakeTimers();
  readonly logs = new MemoryLogStore();
  readonly lifecycle: TaskLifecycle;
  readonly notifier: SchedulingNotifier;
  queues: InMemoryQueues;
  scheduler: SchedulerCalls;
  /** Per-run readiness of the last passes, for the executable/starving gauges (a metrics cache). */
  readonly readiness = new Map<string, { ready: number; starving: number }>();
  /** Workloads taken from the task queues and not yet started, oldest first. */
  readonly inbox: ReceivedWorkload[] = [];
  readonly #started = new Map<string, number>();
  /** TIs reported since the last `handleRequests`, by run: the API's requests name them. */
  readonly #reported = new Map<string, TaskInstanceKey[]>();
  readonly #client: DynamoDBClient;
  readonly #closeServer: () => Promise<void>;

  constructor(parts: {
    settings: Settings;
    client: DynamoDBClient;
    store: DynamoStore;
    closeServer: () => Promise<void>;
  }) {
    this.settings = parts.settings;
    this.#client = parts.client;
    this.documentClient = toDocumentClient(parts.client);
    this.store = parts.store;
    this.#closeServer = parts.closeServer;
    this.dags = new DagVersionCache(this.store);
    this.queues = createInMemoryQueues(this.settings);
    const reported = this.#reported;
    // Records the TIs the API's requests name, so `handleRequests` names them as those requests do.
    this.notifier = new (class extends SchedulingNotifier {
      override notify(run: DagRunKey | TaskInstanceKey): Promise<void> {
        if ('taskId' in run) {
          const id = idOf({ ...run, taskId: '', mapIndex: -1 });
          reported.set(id, [...(reported.get(id) ?? []), run]);
        }
        return super.notify(run);
      }
    })(this.queues.queues.scheduler, () => {});
    this.lifecycle = new TaskLifecycle({
      store: this.store,
      dags: this.dags,
      notifier: this.notifier,
      logs: this.logs,
      settings: this.settings,
      now: this.now,
    });
    this.scheduler = this.newScheduler();
    this.metrics.addSource(() => readinessGauges(this.readiness));
  }

  /** Another scheduler on the same store and clock; on the harness's queues unless given others. */
  newScheduler(queues: Queues = this.queues.queues, orphans?: OrphanPolicy): SchedulerCalls {
    const deps = (): EngineDeps => ({
      store: this.store,
      queues,
      dags: new DagVersionCache(this.store),
      tokens: this.tokens,
      timers: this.timers,
      metrics: this.metrics,
      settings: this.settings,
      log: silentLogger,
      now: this.now,
      readiness: this.readiness,
      ...(orphans ? { orphans } : {}),
    });
    return {
      handleRequests: async (runs) => {
        const messages = runs.map((run, index): ReceivedMessage => {
          const reported = this.#reported.get(idOf({ ...run, taskId: '', mapIndex: -1 })) ?? [];
          this.#reported.delete(idOf({ ...run, taskId: '', mapIndex: -1 }));
          const [body] = schedulingRequestsFor(run, reported);
          return {
            messageId: `m${index}`,
            receiptHandle: `r${index}`,
            receiveCount: 1,
            body: JSON.stringify(body),
          };
        });
        await handleSchedulingMessages(deps(), messages);
      },
      handleMessages: (messages) => handleSchedulingMessages(deps(), messages),
      tick: () => runSchedulerTick(deps()),
    };
  }

  /**
   * Handles the scheduling requests waiting in the scheduler queue (those the passes sent, such as
   * nudges for runs waiting on a pool) in fresh instances, until none is left; returns how many.
   */
  async handleQueuedRequests(maxRounds = 20): Promise<number> {
    let handled = 0;
    for (let round = 0; round < maxRounds; round += 1) {
      const messages = await this.queues.queues.scheduler.receive({ maxMessages: 10, waitTimeMs: 0 });
      if (messages.length === 0) break;
      handled += messages.length;
      const { retry } = await this.scheduler.handleMessages(messages);
      const done = messages.map((message) => message.receiptHandle).filter((r) => !retry.includes(r));
      await this.queues.queues.scheduler.delete(done);
    }
    return handled;
  }

  /**
   * A standalone restart: the in-process queues and their messages are gone, and the new process
   * knows the previous one's queued workloads and running tries are orphaned.
   */
  restart(): SchedulerCalls {
    this.queues.close();
    this.queues = createInMemoryQueues(this.settings);
    this.inbox.length = 0;
    this.#started.clear();
    const restartedAt = this.now();
    this.scheduler = this.newScheduler(this.queues.queues, {
      isOrphanedRunning: (ti) => ti.workerId !== 'restarted-worker',
      isOrphanedQueued: (ti) => ti.queuedAt !== null && Date.parse(ti.queuedAt) < restartedAt,
    });
    return this.scheduler;
  }

  advance(ms: number): void {
    this.clock.now += ms;
  }

  iso(offsetMs = 0): string {
    return new Date(this.clock.now + offsetMs).toISOString();
  }

  async register(dags: Dag | Dag[], options: { paused?: boolean } = {}): Promise<VersionedDag[]> {
    const versioned = [dags].flat().map((dag) => versionDag(dag, `${dag.dagId}.ts`));
    await registerDags(
      { store: this.store, log: silentLogger, now: this.now, pausedAtCreation: options.paused ?? false },
      { dags: versioned, errors: [] },
    );
    return versioned;
  }

  async createRun(versioned: VersionedDag, options: { logicalDate?: string; runId?: string } = {}) {
    const logicalDate = options.logicalDate ?? this.iso();
    return createDagRun(this.store, {
      dag: versioned.dag,
      versionHash: versioned.versionHash,
      runType: 'manual',
      logicalDate,
      ...(options.runId === undefined ? {} : { runId: options.runId }),
      now: this.iso(),
      confMaxBytes: this.settings.confMaxBytes,
    });
  }

  async run(key: DagRunKey): Promise<DagRun> {
    const run = await this.store.getDagRun(key);
    if (!run) throw new Error(`run ${key.dagId}/${key.runId} not found`);
    return run;
  }

  async ti(run: DagRunKey, taskId: string): Promise<TaskInstance> {
    const ti = await this.store.getTaskInstance(tiKey(run, taskId));
    if (!ti) throw new Error(`task instance ${run.runId}/${taskId} not found`);
    return ti;
  }

  /** taskId → state of every TI of the run. */
  async states(run: DagRunKey): Promise<Record<string, string>> {
    const snapshot = await this.store.getRunSnapshot(run);
    return Object.fromEntries((snapshot?.taskInstances ?? []).map((ti) => [ti.taskId, ti.state]));
  }

  /** Task ids of the run's TIs in state `queued`, sorted. */
  async queuedTaskIds(run: DagRunKey): Promise<string[]> {
    const snapshot = await this.store.getRunSnapshot(run);
    return (snapshot?.taskInstances ?? [])
      .filter((ti) => ti.state === 'queued')
      .map((ti) => ti.taskId)
      .sort();
  }

  /**
   * Receives every visible message of the task queues (all of them, or one), checks each is an
   * `execute_task` workload, keeps them in `inbox` for `startTi` and returns the new ones.
   */
  async drainWorkloads(queueName?: (typeof TASK_QUEUES)[number]): Promise<TaskWorkload[]> {
    const received: TaskWorkload[] = [];
    for (const name of queueName ? [queueName] : TASK_QUEUES) {
      const queue = this.queues.queues[name];
      for (;;) {
        const messages = await queue.receive({ maxMessages: 10, waitTimeMs: 0 });
        if (messages.length === 0) break;
        for (const message of messages) {
          const workload = taskWorkloadSchema.parse(JSON.parse(message.body));
          received.push(workload);
          this.inbox.push({ queue, receiptHandle: message.receiptHandle, workload });
        }
      }
    }
    return received;
  }

  /** queued → running through the lifecycle, with the try of the newest workload sent for the TI. */
  async startTi(key: TaskInstanceKey): Promise<TaskInstance> {
    await this.drainWorkloads();
    const matching = this.inbox.filter(({ workload }) => sameTi(workload, key));
    const newest = matching.sort((a, b) => b.workload.try_number - a.workload.try_number)[0];
    if (!newest) throw new Error(`no workload was sent for ${key.runId}/${key.taskId}`);
    const { ti } = await this.lifecycle.start(key, newest.workload.try_number, {
      hostname: 'harness',
      workerId: 'worker-1',
    });
    for (const received of matching) this.inbox.splice(this.inbox.indexOf(received), 1);
    // A worker deletes the message right after starting, as the real one does.
    await newest.queue.delete(matching.map((received) => received.receiptHandle));
    this.#started.set(idOf(key), ti.tryNumber);
    return ti;
  }

  async succeed(key: TaskInstanceKey, xcom?: string, followTaskIds?: string[]): Promise<TaskInstance> {
    const tryNumber = await this.#runningTry(key);
    const report = {
      state: 'success' as const,
      ...(xcom === undefined ? {} : { xcom }),
      ...(followTaskIds === undefined ? {} : { followTaskIds }),
    };
    return this.#report(key, tryNumber, report);
  }

  async #report(key: TaskInstanceKey, tryNumber: number, report: TaskReport): Promise<TaskInstance> {
    return (await this.lifecycle.finish(key, tryNumber, report, { reportId: randomUUID() })).ti;
  }

  async failTi(key: TaskInstanceKey, retryable: boolean): Promise<TaskInstance> {
    const tryNumber = await this.#runningTry(key);
    const report = { state: 'failed' as const, errorMessage: 'boom', retryable };
    return this.#report(key, tryNumber, report);
  }

  /** Starts the TI first when the test did not. */
  async #runningTry(key: TaskInstanceKey): Promise<number> {
    const started = this.#started.get(idOf(key));
    if (started !== undefined) {
      this.#started.delete(idOf(key));
      return started;
    }
    return (await this.startTi(key)).tryNumber;
  }

  /** Removes a TI item behind the store's back, as a crash in the middle of `createDagRun` would. */
  async deleteTaskInstanceItem(key: TaskInstanceKey): Promise<void> {
    await this.documentClient.send(new DeleteCommand({ TableName: TABLE_NAME, Key: taskInstanceKey(key) }));
  }

  async counters(): Promise<Record<string, number>> {
    return (await this.metrics.snapshot()).counters;
  }

  async gauges(): Promise<Record<string, number>> {
    return (await this.metrics.snapshot()).gauges;
  }

  async close(): Promise<void> {
    await this.notifier.drain();
    this.queues.close();
    this.#client.destroy();
    await this.#closeServer();
  }
}

export async function startSchedulerHarness(options: HarnessOptions = {}): Promise<SchedulerHarness> {
  const settings = settingsSchema.parse({
    heartbeatTimeoutMs: 30_000,
    queuedTimeoutMs: 60_000,
    ...options.settings,
  });
  const server = await startEmbeddedDynamo();
  const client = createDynamoClient({ endpoint: server.endpoint });
  await ensureTable(client, TABLE_NAME);
  // The store stamps times (a clear's start) with the harness clock, as the engine does.
  const clock: { now?: () => number } = {};
  const store = new DynamoStore({
    client: toDocumentClient(client),
    tableName: TABLE_NAME,
    now: () => clock.now?.() ?? Date.now(),
  });
  const harness = new SchedulerHarness({ settings, client, store, closeServer: () => server.close() });
  clock.now = harness.now;
  return harness;
}

export function tiKey(run: DagRunKey, taskId: string, mapIndex = -1): TaskInstanceKey {
  return { dagId: run.dagId, runId: run.runId, taskId, mapIndex };
}

function sameTi(workload: TaskWorkload, key: TaskInstanceKey): boolean {
  const { ti } = workload;
  return (
    ti.dag_id === key.dagId &&
    ti.run_id === key.runId &&
    ti.task_id === key.taskId &&
    ti.map_index === key.mapIndex
  );
}

function idOf(key: TaskInstanceKey): string {
  return `${key.dagId}\u0000${key.runId}\u0000${key.taskId}\u0000${key.mapIndex}`;
}

/**
 * The ONE adapter between the simulation and the engine. Everything the sim drives goes through
 * these functions, each of which builds a fresh engine instance (no memory between calls, as on
 * Lambda): `handleSchedulingMessages` and `runSchedulerTick` (src/engine/entrypoints.ts), the API
 * router of `createApiStack` (one stack per call, no socket), and `runWorkload`
 * (src/worker/run-workload.ts) with the sim clock and the sim's TaskExecutor.
 */

import { createApiStack } from '#api/stack.ts';
import type { Settings } from '#config/settings.ts';
import type { TaskWorkload } from '#contracts/messages.ts';
import type { TaskInstanceKey } from '#core/models.ts';
import type { VersionedDag } from '#core/serialized-dag.ts';
import { DagVersionCache } from '#engine/dag-cache.ts';
import { registerDags } from '#engine/dag-registry.ts';
import * as entrypoints from '#engine/entrypoints.ts';
import { silentLogger } from '#engine/logger.ts';
import type { WakeTimers } from '#engine/ports.ts';
import type { EngineDeps } from '#engine/scheduler.ts';
import { TaskTokenSigner } from '#engine/tokens.ts';
import type { LogStore } from '#logs/port.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import type { Queues, ReceivedMessage } from '#queue/port.ts';
import type { Dag } from '#sdk/index.ts';
import { versionDag } from '#sdk/serialize.ts';
import type { Store } from '#store/port.ts';
import { ExecutionClient } from '#worker/execution-client.ts';
import type { TaskExecutor } from '#worker/executor.ts';
import { runWorkload as runEngineWorkload } from '#worker/run-workload.ts';

export const API_TOKEN = 'sim-api-token';
export const EXECUTION_SECRET = 'sim-execution-secret-sim-execution-secret';

/** What the world hands every engine call: the gated store, the sim queues and clock. */
export interface EngineWorld {
  store: Store;
  queues: Queues;
  settings: Settings;
  /** Sim clock. */
  now: () => number;
  /** Wake-ups asked for by a pass: the world turns them into delayed scheduling messages. */
  timers: WakeTimers;
  logs: LogStore;
}

/** What a worker needs besides the world: the API as the worker reaches it, a clock, an executor. */
export interface WorkerDeps {
  fetch: (request: Request) => Promise<Response>;
  /** Sim clock; `sleep` resolves early (never rejects) when `signal` aborts. */
  clock: { now(): number; sleep(ms: number, signal?: AbortSignal): Promise<void> };
  /** The PRNG, for the HTTP client's jitter. */
  random: () => number;
  executor: SimTaskExecutor;
  workerId: string;
}

/** The worker's TaskExecutor port, as the sim implements it. */
export type SimTaskExecutor = TaskExecutor;

export async function register(world: EngineWorld, dags: Dag[]): Promise<VersionedDag[]> {
  const versioned = dags.map((dag) => versionDag(dag, `${dag.dagId}.ts`));
  await registerDags(
    { store: world.store, log: silentLogger, now: world.now, pausedAtCreation: false },
    { dags: versioned, errors: [] },
  );
  return versioned;
}

/** One scheduling batch; returns the receipt handles that must NOT be deleted. */
export function handleSchedulingMessages(
  world: EngineWorld,
  messages: ReceivedMessage[],
): Promise<{ retry: string[] }> {
  return entrypoints.handleSchedulingMessages(engineDeps(world), messages);
}

export async function runSchedulerTick(world: EngineWorld): Promise<void> {
  await entrypoints.runSchedulerTick(engineDeps(world));
}

/** One API call, served by a fresh stack without a socket. */
export async function handleApiRequest(world: EngineWorld, request: Request): Promise<Response> {
  const { api } = createApiStack({
    store: world.store,
    queues: world.queues,
    logs: world.logs,
    metrics: new MetricsRegistry(),
    settings: world.settings,
    apiToken: API_TOKEN,
    executionKeys: EXECUTION_SECRET,
    log: silentLogger,
    now: world.now,
  });
  return api.fetch(request);
}

/**
 * Runs one task workload to its end. `onStarted` is called once the try started (the worker then
 * deletes the queue message); the result says whether the message should be deleted otherwise.
 */
export async function runWorkload(
  deps: WorkerDeps & { settings: Settings },
  workload: TaskWorkload,
  options: { onStarted(): void },
): Promise<{ deleteMessage: boolean; started: boolean; reported: boolean }> {
  const client = new ExecutionClient('http://sim', {
    fetch: ((input: string | URL | Request, init?: RequestInit) =>
      deps.fetch(new Request(input, init))) as typeof fetch,
    sleep: (ms) => deps.clock.sleep(ms),
    now: deps.clock.now,
    random: deps.random,
    timeoutSignal: (ms) => {
      const controller = new AbortController();
      void deps.clock
        .sleep(ms)
        .then(() => controller.abort(new Error(`timed out after ${ms} ms (sim clock)`)));
      return controller.signal;
    },
  });
  return runEngineWorkload(
    {
      client,
      executor: deps.executor,
      clock: deps.clock,
      settings: deps.settings,
      log: silentLogger,
      worker: { hostname: 'sim', workerId: deps.workerId, pid: 1 },
    },
    workload,
    { onStarted: options.onStarted },
  );
}

function engineDeps(world: EngineWorld): EngineDeps {
  return {
    store: world.store,
    queues: world.queues,
    dags: new DagVersionCache(world.store),
    tokens: new TaskTokenSigner(EXECUTION_SECRET, world.settings.executionTokenTtlSeconds),
    timers: world.timers,
    metrics: new MetricsRegistry(),
    settings: world.settings,
    log: silentLogger,
    now: world.now,
  };
}

/** Task logs in memory, readable from every instance; chunk ids sort in read order. */
export class MemoryLogStore implements LogStore {
  readonly #logs = new Map<string, Map<string, string>>();

  async appendChunk(key: TaskInstanceKey, tryNumber: number, chunkId: string, text: string): Promise<void> {
    const chunks = this.#logs.get(id(key, tryNumber)) ?? new Map<string, string>();
    chunks.set(chunkId, text);
    this.#logs.set(id(key, tryNumber), chunks);
  }

  async read(key: TaskInstanceKey, tryNumber: number): Promise<string | undefined> {
    const chunks = this.#logs.get(id(key, tryNumber));
    if (!chunks) return undefined;
    return [...chunks.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, text]) => text)
      .join('');
  }
}

function id(key: TaskInstanceKey, tryNumber: number): string {
  return `${key.dagId}/${key.runId}/${key.taskId}/${key.mapIndex}/${tryNumber}`;
}

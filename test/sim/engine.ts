/**
 * The ONE adapter between the simulation and the engine. Everything the sim drives goes through
 * these functions, each of which builds a fresh engine instance (no memory between calls, as on
 * Lambda): `handleSchedulingMessages` and `runSchedulerTick` (src/engine/entrypoints.ts), the API
 * as `createFreshEngineApi` serves it (a fresh engine instance per call, no socket), `runWorkload`
 * (src/worker/run-workload.ts) with the sim clock and the sim's TaskExecutor, and the real
 * `Triggerer` (src/triggerer/triggerer.ts), long-lived like the process it is, on the sim clock
 * and the sim's timers, reaching the API through the sim.
 */

import { createFreshEngineApi } from '#api/stack.ts';
import type { Settings } from '#config/settings.ts';
import type { CallbackWorkload, TaskWorkload } from '#contracts/messages.ts';
import type { TaskInstanceKey, TriggererJob } from '#core/models.ts';
import type { VersionedDag } from '#core/serialized-dag.ts';
import { CallbackService } from '#engine/callbacks.ts';
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
import { TriggererClient } from '#triggerer/client.ts';
import { type TimerHost, TriggerTimers } from '#triggerer/timers.ts';
import { Triggerer } from '#triggerer/triggerer.ts';
import { type CallbackExecutor, runCallbackWorkload } from '#worker/callback-pool.ts';
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
  /** Ids of the triggerer jobs the API registers, from the seed (see `withSimJobIds`). */
  newJobId: () => string;
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

/** Each world's API: one route table, a fresh engine instance per call. */
const apis = new WeakMap<EngineWorld, ReturnType<typeof createFreshEngineApi>>();

/** One API call, served by a fresh engine instance without a socket. */
export async function handleApiRequest(world: EngineWorld, request: Request): Promise<Response> {
  let api = apis.get(world);
  if (!api) {
    api = createFreshEngineApi({
      store: withSimJobIds(world.store, world.newJobId),
      queues: world.queues,
      logs: world.logs,
      metrics: new MetricsRegistry(),
      settings: world.settings,
      apiToken: API_TOKEN,
      executionKeys: EXECUTION_SECRET,
      log: silentLogger,
      now: world.now,
    });
    apis.set(world, api);
  }
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
  const client = new ExecutionClient('http://sim', httpOptions(deps));
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

/** What a triggerer needs: the API as it reaches it, the sim clock and timers, its credential. */
export interface TriggererDeps {
  fetch: (request: Request) => Promise<Response>;
  /** Sim clock; `sleep` resolves early (never rejects) when `signal` aborts. */
  clock: WorkerDeps['clock'];
  /** `setTimeout` on the sim clock, for the one timer of the triggerer's trigger timers. */
  timerHost: TimerHost;
  random: () => number;
  settings: Settings;
  hostname: string;
  /** The triggerer's own token (`triggererCredential`). */
  credential: string;
  /** Runs the callbacks placed on triggerers (the sim's executor, as the workers' lane has). */
  callbackExecutor: CallbackExecutor;
}

/** Lag checks run on a real interval: this long, they never run within a simulation. */
const NO_LAG_CHECK_MS = 3_600_000;

/**
 * The real triggerer, wired to the sim: its calls go through `deps.fetch`, its waits and its
 * triggers' sleeps are on the sim clock. Its step timing reads a clock that never moves, so no
 * trigger is ever reported as blocking (that would depend on real time and break the replay).
 */
export function createTriggerer(deps: TriggererDeps): Triggerer {
  const client = new TriggererClient('http://sim', deps.credential, httpOptions(deps));
  return new Triggerer({
    client,
    settings: deps.settings,
    log: silentLogger,
    hostname: deps.hostname,
    clock: deps.clock,
    random: deps.random,
    callbacks: {
      execution: new ExecutionClient('http://sim', httpOptions(deps)),
      executor: deps.callbackExecutor,
    },
    runner: {
      timers: new TriggerTimers({ now: deps.clock.now, host: deps.timerHost }),
      monotonic: () => 0,
      lagCheckIntervalMs: NO_LAG_CHECK_MS,
    },
  });
}

/** A triggerer credential (`kind: triggerer`) signed with the sim's keyring, valid for a day. */
export function triggererCredential(nowMs: number): Promise<string> {
  return new TaskTokenSigner(EXECUTION_SECRET, 24 * 60 * 60).issueClaims({ kind: 'triggerer' }, nowMs);
}

/** The HTTP client options of a worker or triggerer: the sim's fetch, clock, jitter and timeouts. */
function httpOptions(deps: Pick<WorkerDeps, 'fetch' | 'clock' | 'random'>) {
  return {
    fetch: ((input: string | URL | Request, init?: RequestInit) =>
      deps.fetch(new Request(input, init))) as typeof fetch,
    sleep: (ms: number) => deps.clock.sleep(ms),
    now: deps.clock.now,
    random: deps.random,
    timeoutSignal: (ms: number) => {
      const controller = new AbortController();
      void deps.clock
        .sleep(ms)
        .then(() => controller.abort(new Error(`timed out after ${ms} ms (sim clock)`)));
      return controller.signal;
    },
  };
}

/**
 * The API draws a triggerer job's id from `crypto.randomBytes`, and ids order the jobs the API
 * lists (which dead job's triggers are claimed first) and name them in the trace: a replay would
 * differ. Nothing injects that id, so the API's store hands the job it is given to `putJob` an id
 * from the seed first; `registerJob` uses that same object for its answer and its token.
 */
function withSimJobIds(store: Store, newJobId: () => string): Store {
  return new Proxy(store, {
    get(target, property) {
      if (property === 'putJob')
        return (job: TriggererJob) => {
          (job as { jobId: string }).jobId = newJobId();
          return target.putJob(job);
        };
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

function engineDeps(world: EngineWorld): EngineDeps {
  const dags = new DagVersionCache(world.store);
  const tokens = new TaskTokenSigner(EXECUTION_SECRET, world.settings.executionTokenTtlSeconds);
  return {
    store: world.store,
    queues: world.queues,
    dags,
    tokens,
    timers: world.timers,
    metrics: new MetricsRegistry(),
    settings: world.settings,
    log: silentLogger,
    now: world.now,
    callbacks: new CallbackService({
      store: world.store,
      dags,
      queues: world.queues,
      tokens,
      settings: world.settings,
      now: world.now,
    }),
  };
}

/**
 * Runs one callback workload to its end (`runCallbackWorkload` of the worker's callback lane) with
 * the sim clock and the sim's callback executor. Resolves false when the start was not answered
 * (the message comes back), true otherwise (the worker deletes it).
 */
export async function runCallback(
  deps: Omit<WorkerDeps, 'executor'> & { executor: CallbackExecutor },
  workload: CallbackWorkload,
): Promise<boolean> {
  const client = new ExecutionClient('http://sim', httpOptions(deps));
  try {
    await runCallbackWorkload(workload, {
      client,
      executor: deps.executor,
      workerId: deps.workerId,
      log: silentLogger,
      clock: deps.clock,
    });
    return true;
  } catch {
    return false;
  }
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

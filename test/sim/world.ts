import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { type Settings, settingsSchema } from '#config/settings.ts';
import { callbackWorkloadSchema, taskWorkloadSchema } from '#contracts/messages.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import type { QueueName } from '#queue/port.ts';
import { DynamoStore } from '#store/dynamodb.ts';
import { createDynamoClient, ensureTable, startEmbeddedDynamo, toDocumentClient } from '#store/embedded.ts';
import { ExecutionBatcher } from '#worker/execution-batcher.ts';
import { answeredCalls } from '../support/execution-calls.ts';
import {
  CallbackLedger,
  checkCallbacksDrained,
  checkCallbacksOwed,
  checkDeadlines,
  SimCallbackExecutor,
} from './callbacks.ts';
import {
  API_TOKEN,
  type EngineWorld,
  handleApiRequest,
  handleSchedulingMessages,
  MemoryLogStore,
  register,
  runCallback,
  runSchedulerTick,
  runWorkload,
} from './engine.ts';
import { drawFaults, type FaultProfile, NO_FAULTS } from './faults.ts';
import {
  checkAgainstReference,
  checkDeferralTimeouts,
  checkLimits,
  checkMessages,
  checkOutcomesKept,
  checkSuccessesKept,
  checkSummaries,
  checkTriggerAnswer,
  checkTriggerEvents,
  checkTriggersKept,
  describeRun,
  successesLostToFaults,
  unfinishedRuns,
} from './invariants.ts';
import { type Actor, Kernel, SimFailure } from './kernel.ts';
import { Ledger, phaseKey, SimExecutor } from './ledger.ts';
import { planPhase } from './plans.ts';
import { Prng } from './prng.ts';
import { createSimQueues, type Invocation, invocations, type SimQueue } from './sim-queue.ts';
import { gateDocumentClient, StoreMirror } from './store-gate.ts';
import { SimTriggerers } from './triggerers.ts';
import { generateWorkload, type Workload } from './workload.ts';

/** Sim time starts here; the API checks token lifetimes against the sim clock. */
export const START_MS = Date.parse('2026-06-01T00:00:00.000Z');
const TABLE = 'updraft';
const FAULT_PHASE_MS = 60_000;
const HEAL_BUDGET_MS = 600_000;
const MAX_STEPS = 300_000;
const TASK_QUEUES: QueueName[] = ['tasks_high', 'tasks_default', 'tasks_low'];
const MAX_WORKERS = 4;
const MAX_BATCHES = 3;
const MAX_CALLBACK_WORKERS = 2;
/** A callback attempt's report (a worker's or a triggerer's). */
const CALLBACK_REPORT = /^\/execution\/callbacks\/([^/]+)\/state$/;

export interface SimOptions {
  seed: number;
  verbose?: boolean;
  /** Go on after a failure, to list every invariant a seed breaks (each once). */
  keepGoing?: boolean;
  /** Add a wide DAG to the workload (see `addWideDag`). */
  wide?: boolean;
}

export interface SimResult {
  seed: number;
  failures: SimFailure[];
  steps: number;
  simMs: number;
  realMs: number;
  trace: string[];
  stats: Record<string, unknown>;
}

export async function runSimulation(options: SimOptions): Promise<SimResult> {
  const began = performance.now();
  const server = await startEmbeddedDynamo();
  const client = createDynamoClient({ endpoint: server.endpoint });
  try {
    await ensureTable(client, TABLE);
    const world = new World(options, client);
    await world.run();
    return { ...world.result(), realMs: performance.now() - began };
  } finally {
    client.destroy();
    await server.close();
  }
}

class World {
  readonly #options: SimOptions;
  readonly #kernel: Kernel;
  readonly #prng: Prng;
  readonly #profile: FaultProfile;
  #faults: FaultProfile;
  readonly #workload: Workload;
  readonly #settings: Settings;
  readonly #queues: ReturnType<typeof createSimQueues>;
  readonly #mirror = new StoreMirror();
  readonly #ledger: Ledger;
  readonly #engine: EngineWorld;
  readonly #checkStore: DynamoStore;
  readonly #executor: SimExecutor;
  readonly #dags = new Map<string, SerializedDag>();
  readonly #triggered = new Set<string>();
  readonly #cleared = new Set<string>();
  readonly #busy = new Set<Actor>();
  readonly #triggerers: SimTriggerers;
  readonly #callbackLedger: CallbackLedger;
  readonly #callbackExecutor: SimCallbackExecutor;
  readonly #callbackWorkers = new Set<Actor>();
  /** Triggerers running at first (1–2). */
  readonly #triggererCount: number;
  #phase: 'setup' | 'faults' | 'heal' = 'setup';
  #unpaused = false;
  /**
   * For half the seeds, the task workers' start, heartbeat and report calls go through one shared
   * ExecutionBatcher (as a Lambda worker's records do): batches of them meet the API's faults.
   */
  readonly #batcher: ExecutionBatcher | undefined;
  /** Who hears the answer of a call a worker made, by the call (see #callKey). */
  readonly #callObservers = new Map<
    string,
    (status: number, requestText: string, responseText: string) => void
  >();

  constructor(options: SimOptions, client: DynamoDBClient) {
    this.#options = options;
    const root = new Prng(options.seed);
    this.#prng = root.fork('choices');
    this.#kernel = new Kernel(START_MS, { verbose: options.verbose ?? false });
    this.#mirror.clock = () => this.#kernel.now;
    this.#profile = drawFaults(root.fork('faults'), root.fork('triggerer-faults'));
    const triggererSetup = root.fork('triggerers');
    this.#triggererCount = triggererSetup.range(1, 2);
    this.#faults = NO_FAULTS;
    this.#workload = generateWorkload(root.fork('workload'), {
      triggerWindowMs: FAULT_PHASE_MS * 0.6,
      wide: options.wide ?? false,
    });
    this.#settings = settingsSchema.parse({
      heartbeatIntervalMs: 1_000,
      heartbeatTimeoutMs: 10_000,
      queuedTimeoutMs: 15_000,
      schedulerTickMs: 2_000,
      maxRunsPerPass: root.fork('settings').range(2, 6),
      pools: this.#workload.pools,
      // The shortest lifetime allowed: workload tokens expire in the queue and running tries live on
      // refreshed tokens, so expiry and refresh are exercised too.
      executionTokenTtlSeconds: 60,
      queueVisibilityTimeoutSeconds: 20,
      queueMaxReceives: 5,
      // One receive, as an SQS event source's batch of 10 on AWS.
      schedulerBatchSize: 10,
      // Triggerers: heartbeat 2 s, found dead after 6 s (the defaults); a small capacity now and then;
      // claims every 1–3 s (each load reads every job and the triggers of the dead ones).
      triggererCapacity: triggererSetup.chance(0.3) ? triggererSetup.range(1, 3) : 1_000,
      triggererLoadIntervalMs: triggererSetup.pick([1_000, 2_000, 3_000]),
      triggerCleanupIntervalMs: 5_000,
      callbackRetries: 1,
      callbackRetryDelayMs: 1_000,
      callbackExecutionTimeoutMs: 5_000,
      callbackOwedGraceMs: 5_000,
    });
    this.#queues = createSimQueues({
      kernel: this.#kernel,
      prng: this.#prng,
      faults: () => this.#faults.messages,
      visibilityMs: this.#settings.queueVisibilityTimeoutSeconds * 1000,
      maxReceives: this.#settings.queueMaxReceives,
    });
    this.#ledger = new Ledger((failure) => this.#kernel.fail(failure));
    const documentClient = toDocumentClient(client);
    gateDocumentClient(documentClient, this.#kernel, this.#mirror, {
      delayFor: (operation) => this.#delayFor(operation),
    });
    this.#checkStore = new DynamoStore({ client: toDocumentClient(client), tableName: TABLE });
    const scheduler = this.#queues.scheduler;
    this.#engine = {
      store: new DynamoStore({ client: documentClient, tableName: TABLE, now: () => this.#kernel.now }),
      queues: this.#queues,
      settings: this.#settings,
      now: () => this.#kernel.now,
      logs: new MemoryLogStore(),
      newJobId: (() => {
        const ids = root.fork('job-ids');
        const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
        return () => Array.from({ length: 16 }, () => alphabet[ids.int(64)]).join('');
      })(),
      timers: {
        // A durable timer as on AWS: a delayed scheduling message (SQS allows up to 15 minutes).
        wakeAt: async (run, atMs) => {
          const delaySeconds = Math.min(900, Math.max(0, Math.ceil((atMs - this.#kernel.now) / 1000)));
          const body = JSON.stringify({ type: 'schedule_run', dag_id: run.dagId, run_id: run.runId });
          const { failed } = await scheduler.send([{ body, delaySeconds }]);
          if (failed.length > 0) throw new Error('sim: the wake-up message was refused');
        },
      },
    };
    const deferrable = this.#workload.deferrable;
    this.#executor = new SimExecutor({
      kernel: this.#kernel,
      ledger: this.#ledger,
      prng: this.#prng,
      plan: (ti, tryNumber, phase) => {
        const [dagId, , taskId] = ti.split('/');
        return planPhase(options.seed, ti, tryNumber, phase, deferrable.has(`${dagId}/${taskId}`));
      },
      faults: () => this.#faults,
    });
    this.#callbackLedger = new CallbackLedger((failure) => this.#kernel.fail(failure));
    this.#callbackExecutor = new SimCallbackExecutor({
      kernel: this.#kernel,
      ledger: this.#callbackLedger,
      prng: this.#prng,
      seed: options.seed,
      faults: () => this.#faults,
      onKilled: (actor) => this.#triggerers.killed(actor),
    });
    this.#batcher = root.fork('batching').chance(0.5)
      ? new ExecutionBatcher({
          baseUrl: 'http://sim',
          maxCalls: this.#settings.executionBatchMaxCalls,
          windowMs: this.#settings.executionBatchWindowMs,
          requestMaxBytes: this.#settings.requestMaxBytes,
          now: () => this.#kernel.now,
          // The task workers at work: when each waits on a call, the batch leaves at once.
          callers: () => [...this.#busy].filter((actor) => actor.alive && !actor.done).length,
          setTimer: (ms, fire) => {
            let cancelled = false;
            this.#kernel.spawn('batch-window', async () => {
              await this.#kernel.sleep(ms);
              if (!cancelled) fire();
            });
            return () => {
              cancelled = true;
            };
          },
          // Each request in an actor of its own: a worker that dies does not take others' answers along.
          fetch: (async (input: string | URL | Request, init?: RequestInit) => {
            const { result } = this.#kernel.spawn('batch-call', async () => {
              try {
                const request = new Request(input, init);
                return {
                  response: await this.#fetch(request, (status, requestText, responseText) =>
                    this.#observeCalls(request, status, requestText, responseText),
                  ),
                };
              } catch (error) {
                return { error };
              }
            });
            const outcome = await result;
            if (!outcome) throw new Error('sim: the batch call actor died');
            if ('error' in outcome) throw outcome.error;
            return outcome.response;
          }) as typeof fetch,
        })
      : undefined;
    this.#triggerers = new SimTriggerers({
      kernel: this.#kernel,
      callbackExecutor: this.#callbackExecutor,
      prng: this.#prng,
      ledger: this.#ledger,
      settings: this.#settings,
      fetch: (request, observe) => this.#fetch(request, observe),
      faults: () => this.#faults.triggerers,
      onAnswer: (answer) => {
        const failure = checkTriggerAnswer(answer, this.#ledger, this.#mirror);
        if (failure) this.#kernel.fail(failure);
      },
    });
  }

  async run(): Promise<void> {
    try {
      await this.#run();
    } finally {
      this.#triggerers.stopAll();
    }
  }

  async #run(): Promise<void> {
    const kernel = this.#kernel;
    kernel.spawn('setup', async () => {
      const versioned = await register(this.#engine, this.#workload.dags);
      for (const { dag } of versioned) this.#dags.set(dag.dagId, dag);
      this.#phase = 'faults';
      this.#faults = this.#profile;
      kernel.log(`setup done; faults ${JSON.stringify(this.#profile)}`);
      this.#startDrivers();
    });
    let checkedVersion = -1;
    for (;;) {
      await kernel.quiesce();
      if (this.#mirror.version !== checkedVersion) {
        checkedVersion = this.#mirror.version;
        const failure =
          checkLimits(this.#mirror, { pools: this.#settings.pools, dags: this.#dags }) ??
          checkSuccessesKept(this.#mirror, this.#ledger, this.#cleared) ??
          checkOutcomesKept(this.#ledger) ??
          checkSummaries(this.#mirror) ??
          checkTriggersKept(this.#mirror);
        if (failure) kernel.fail(failure);
      }
      if (kernel.failures.length > 0 && !this.#options.keepGoing) return;
      if (this.#phase === 'faults' && kernel.now >= START_MS + FAULT_PHASE_MS) this.#heal();
      if (this.#phase === 'heal' && this.#settled()) break;
      if (kernel.now > START_MS + FAULT_PHASE_MS + HEAL_BUDGET_MS || kernel.step > MAX_STEPS) {
        const unfinished = unfinishedRuns(this.#mirror, this.#expectedRuns());
        kernel.fail(
          new SimFailure(
            '4-liveness',
            `not settled ${HEAL_BUDGET_MS / 1000}s into the heal phase: ${unfinished.map((r) => describeRun(this.#mirror, r)).join('; ') || 'all runs final'}; queues ${JSON.stringify(this.#openMessages())}; owed callback sets ${this.#mirror.owed.size}; callbacks not final ${
              [...this.#mirror.callbacks.values()]
                .filter((c) => c.state !== 'success' && c.state !== 'failed')
                .map((c) => `${c.callbackId} ${c.state} attempt ${c.attempt}`)
                .join(', ') || 'none'
            }`,
          ),
        );
        return;
      }
      this.#next();
    }
    await this.#finalChecks();
  }

  result(): Omit<SimResult, 'realMs'> {
    const accounts = Object.fromEntries(Object.entries(this.#queues).map(([name, q]) => [name, q.account()]));
    return {
      seed: this.#options.seed,
      failures: this.#kernel.failures,
      steps: this.#kernel.step,
      simMs: this.#kernel.now - START_MS,
      trace: this.#kernel.traceTail(),
      stats: {
        executions: this.#ledger.executions.length,
        batching: this.#batcher !== undefined,
        successesLostToFaults: successesLostToFaults(this.#ledger),
        runs: this.#workload.runs.length,
        cleared: this.#cleared.size,
        engineErrors: this.#kernel.errors.map((e) => `${e.actor}: ${(e.error as Error).message}`),
        deferrals: this.#ledger.deferrals.size,
        callbacks: countBy([...this.#mirror.callbacks.values()].map((c) => `${c.kind}:${c.state}`)),
        callbackAttempts: this.#callbackLedger.attempts.length,
        callbacksOnTriggerers: this.#callbackLedger.attempts.filter((a) => a.actor.startsWith('triggerer'))
          .length,
        deadlines: countBy([...this.#mirror.deadlines.values()].map((d) => d.state)),
        resumed: this.#ledger.executions.filter((e) => e.phase > 0).length,
        triggerAnswers: countBy(
          this.#ledger.triggerAnswers.map((a) => `${a.route}:${a.type ?? '-'}:${a.outcome}`),
        ),
        triggerers: {
          started: this.#triggerers.started,
          stopped: this.#triggerers.stops,
          heartbeatsLost: this.#triggerers.heartbeatsLost,
          eventsDelayed: this.#triggerers.eventsDelayed,
          eventsDuplicated: this.#triggerers.eventsDuplicated,
          refusals: this.#triggerers.refusals,
        },
        queues: accounts,
      },
    };
  }

  /** One step: let one store call through, or move the clock. */
  #next(): void {
    const kernel = this.#kernel;
    const eligible = kernel.eligibleGates();
    if (eligible.length > 0) {
      kernel.release(this.#prng.pick(eligible));
      return;
    }
    const due = kernel.nextDueAt();
    if (due === undefined)
      throw new SimFailure('harness', 'nothing left to run and the world is not settled');
    const jump = this.#prng.chance(this.#faults.clockJump)
      ? this.#prng.range(1, this.#faults.clockJumpMaxMs)
      : 0;
    if (jump > 0) kernel.log(`clock jump +${jump}ms`);
    kernel.advanceTo(Math.max(due, kernel.now + jump));
  }

  #delayFor(operation: string): number {
    const faults = this.#faults;
    const rate =
      operation === 'BatchWrite'
        ? faults.slowBatchWrite
        : /Put|Update|Delete/.test(operation)
          ? faults.slowWrite
          : 0;
    return this.#prng.chance(rate) ? this.#prng.range(1, faults.slowMaxMs) : 0;
  }

  #startDrivers(): void {
    const kernel = this.#kernel;
    for (let i = 0; i < this.#triggererCount; i++) this.#triggerers.start();
    kernel.spawn('driver', async () => {
      for (;;) {
        await kernel.sleep(this.#settings.schedulerTickMs);
        // `true` once it returned: a tick that threw or was killed resolves undefined.
        const tick = this.#spawnInvocation('tick', () => runSchedulerTick(this.#engine).then(() => true));
        void tick.result.then((done) => {
          if (done !== undefined) this.#mirror.ticksDone.set(tick.actor.name, this.#kernel.now);
        });
      }
    });
    kernel.spawn('driver', async () => {
      for (;;) {
        await kernel.sleep(this.#prng.range(50, 300));
        let batches = 0;
        while (batches++ < MAX_BATCHES && this.#queues.scheduler.hasVisible()) this.#spawnBatch();
      }
    });
    kernel.spawn('driver', async () => {
      for (;;) {
        await kernel.sleep(this.#prng.range(50, 300));
        for (const actor of this.#busy) if (!actor.alive || actor.done) this.#busy.delete(actor);
        while (this.#busy.size < MAX_WORKERS && TASK_QUEUES.some((name) => this.#queues[name].hasVisible()))
          this.#spawnWorker();
      }
    });
    kernel.spawn('driver', async () => {
      for (;;) {
        await kernel.sleep(this.#prng.range(50, 300));
        for (const actor of this.#callbackWorkers)
          if (!actor.alive || actor.done) this.#callbackWorkers.delete(actor);
        while (this.#callbackWorkers.size < MAX_CALLBACK_WORKERS && this.#queues.callbacks.hasVisible())
          this.#spawnCallbackWorker();
      }
    });
    kernel.spawn('driver', async () => {
      let at = 0;
      for (const planned of this.#workload.runs) {
        await kernel.sleep(planned.atMs - at);
        at = planned.atMs;
        kernel.spawn('trigger', () => this.#trigger(planned.dagId, planned.runId, START_MS + planned.atMs));
      }
    });
    const chaos = this.#profile.clears + this.#profile.pauses;
    for (let i = 0; i < chaos; i++) {
      const atMs = this.#prng.range(5_000, FAULT_PHASE_MS - 5_000);
      const clear = i < this.#profile.clears;
      kernel.spawn('driver', async () => {
        await kernel.sleep(atMs);
        kernel.spawn(clear ? 'clear' : 'pause', () => (clear ? this.#clear() : this.#pause()));
      });
    }
    for (let i = 0; i < this.#profile.triggerers.kills; i++) {
      const atMs = this.#prng.range(5_000, FAULT_PHASE_MS - 5_000);
      kernel.spawn('driver', async () => {
        await kernel.sleep(atMs);
        kernel.spawn('stop-triggerer', () => this.#triggerers.stopOne());
      });
    }
  }

  /** A scheduler invocation (a Lambda call): its un-awaited sends may be lost once it returns. */
  #spawnInvocation<T>(
    kind: string,
    work: () => Promise<T>,
  ): { actor: Actor; result: Promise<T | undefined> } {
    const freezes = this.#prng.chance(this.#faults.freezeAfterReturn);
    return this.#kernel.spawn(kind, async (actor) => {
      const invocation: Invocation = { name: actor.name, open: true, freezes };
      try {
        return await invocations.run(invocation, work);
      } finally {
        invocation.open = false;
      }
    });
  }

  #spawnBatch(): void {
    const scheduler = this.#queues.scheduler;
    this.#kernel.spawn('batch', async () => {
      const messages = await scheduler.receive({
        maxMessages: this.#settings.schedulerBatchSize,
        waitTimeMs: 0,
      });
      if (messages.length === 0) return;
      const handled = await this.#spawnInvocation('scheduling', () =>
        handleSchedulingMessages(this.#engine, messages),
      ).result;
      if (!handled) return; // it threw: the messages come back after the visibility timeout
      const retry = new Set(handled.retry);
      await scheduler.delete(messages.map((m) => m.receiptHandle).filter((handle) => !retry.has(handle)));
    });
  }

  /** A worker's callback lane: one callback workload, run to its end (`runCallbackWorkload`). */
  #spawnCallbackWorker(): void {
    const { actor } = this.#kernel.spawn('callback-worker', async (self) => {
      const queue = this.#queues.callbacks;
      const [message] = await queue.receive({ maxMessages: 1, waitTimeMs: 0 });
      if (!message) return;
      const workload = callbackWorkloadSchema.parse(JSON.parse(message.body));
      const done = await runCallback(
        {
          fetch: (request) => this.#fetch(request, () => undefined),
          clock: {
            now: () => this.#kernel.now,
            sleep: (ms, signal) => this.#kernel.sleep(ms, signal).catch(() => undefined),
          },
          random: () => this.#prng.next(),
          executor: this.#callbackExecutor,
          workerId: self.name,
        },
        workload,
      );
      if (done) await queue.delete([message.receiptHandle]);
    });
    this.#callbackWorkers.add(actor);
  }

  #spawnWorker(): void {
    const { actor, result } = this.#kernel.spawn('worker', async (self) => {
      let received: { queue: SimQueue; receiptHandle: string; body: string } | undefined;
      for (const name of TASK_QUEUES) {
        const [message] = await this.#queues[name].receive({ maxMessages: 1, waitTimeMs: 0 });
        if (message) {
          received = { queue: this.#queues[name], receiptHandle: message.receiptHandle, body: message.body };
          break;
        }
      }
      if (!received) return;
      const { queue, receiptHandle } = received;
      const workload = taskWorkloadSchema.parse(JSON.parse(received.body));
      const ti = `${workload.ti.dag_id}/${workload.ti.run_id}/${workload.ti.task_id}/${workload.ti.map_index}`;
      let deleted = false;
      // The phase of the try this worker runs: 0, or the deferral its start answer resumes.
      let phase = 0;
      // What left the router for one of this worker's calls (sent alone or in a batch).
      const observe = (path: string, status: number, requestText: string, responseText: string) => {
        if (status !== 200) return;
        if (path.endsWith('/run')) {
          const started = JSON.parse(responseText) as { resume?: { deferral_seq: number } | null };
          phase = started.resume?.deferral_seq ?? 0;
          this.#ledger.started.add(phaseKey(ti, workload.try_number, phase));
        } else if (path.endsWith('/state')) {
          const state = (JSON.parse(requestText) as { state: string }).state;
          this.#ledger.accepted.set(phaseKey(ti, workload.try_number, phase), state);
        }
      };
      const outcome = await runWorkload(
        {
          fetch: (request) =>
            this.#batcher
              ? this.#batchedFetch(this.#batcher, request, observe)
              : this.#fetch(request, (status, requestText, responseText) =>
                  observe(new URL(request.url).pathname, status, requestText, responseText),
                ),
          clock: {
            now: () => this.#kernel.now,
            sleep: (ms, signal) => this.#kernel.sleep(ms, signal).catch(() => undefined),
          },
          random: () => this.#prng.next(),
          executor: this.#executor,
          workerId: self.name,
          settings: this.#settings,
        },
        workload,
        {
          onStarted: () => {
            deleted = true;
            void queue.delete([receiptHandle]);
          },
        },
      );
      if (outcome.started)
        this.#ledger.reported.set(phaseKey(ti, workload.try_number, phase), outcome.reported);
      if (outcome.deleteMessage && !deleted) await queue.delete([receiptHandle]);
    });
    this.#busy.add(actor);
    // Once this worker is done, the others' calls may be all that is left to wait for.
    void result.then(() => this.#batcher?.check());
  }

  /** A worker's call through the shared batcher; `observe` hears its answer however it travels. */
  async #batchedFetch(
    batcher: ExecutionBatcher,
    request: Request,
    observe: (path: string, status: number, requestText: string, responseText: string) => void,
  ): Promise<Response> {
    const text = request.body ? await request.clone().text() : '';
    const path = new URL(request.url).pathname;
    this.#callObservers.set(callKey(request.method, path, text), (status, requestText, responseText) =>
      observe(path, status, requestText, responseText),
    );
    return batcher.fetch(request.url, {
      method: request.method,
      headers: request.headers,
      ...(text ? { body: text } : {}),
      signal: request.signal,
    });
  }

  /** Hands each call a request to the API carried (one, or a batch's) to the worker that made it. */
  #observeCalls(request: Request, status: number, requestText: string, responseText: string): void {
    const path = new URL(request.url).pathname;
    for (const call of answeredCalls(request.method, path, requestText, status, responseText)) {
      const body = JSON.stringify(call.body);
      this.#callObservers.get(callKey(call.method, call.path, body))?.(
        call.status,
        body,
        JSON.stringify(call.answer),
      );
    }
  }

  /**
   * An API call as a separate actor (the API's own invocation), with faults: a 503 before the
   * router, or the connection dropped after it (the store changed, the caller sees an error).
   */
  async #fetch(
    request: Request,
    observe?: (status: number, requestText: string, responseText: string, apiActor: string) => void,
  ) {
    const kernel = this.#kernel;
    const path = new URL(request.url).pathname;
    if (this.#prng.chance(this.#faults.api503)) {
      kernel.log(`${request.method} ${path} → 503 (sim, before the router)`);
      return new Response(JSON.stringify({ detail: 'sim: service unavailable', status: 503 }), {
        status: 503,
      });
    }
    const drop = this.#prng.chance(this.#faults.apiDrop);
    const requestText = request.body ? await request.clone().text() : '';
    const invocation = this.#spawnInvocation('api', async () => {
      const response = await handleApiRequest(this.#engine, request);
      // Headers travel too: a refreshed token (`Updraft-Refreshed-Token`) is how callers keep theirs.
      return { status: response.status, text: await response.text(), headers: [...response.headers] };
    });
    const answer = await invocation.result;
    if (answer) {
      kernel.log(`${request.method} ${path} → ${answer.status}${drop ? ' (connection dropped)' : ''}`);
      // The answer left the router (the store changed) even if its caller died meanwhile.
      observe?.(answer.status, requestText, answer.text, invocation.actor.name);
      const callbackReport = CALLBACK_REPORT.exec(path);
      if (callbackReport?.[1] && answer.status === 200)
        this.#callbackLedger.reportAccepted(callbackReport[1]);
    }
    await kernel.whileAlive(Promise.resolve()); // a dead caller never hears the answer
    if (!answer)
      return new Response('{"detail":"sim: the API invocation threw","status":500}', { status: 500 });
    if (drop) throw new TypeError('sim: connection dropped after the API handled the call');
    return new Response(answer.text, { status: answer.status, headers: answer.headers });
  }

  async #publicApi(method: string, path: string, body: unknown): Promise<{ status: number; text: string }> {
    let seen = { status: 0, text: '' };
    try {
      const response = await this.#fetch(
        new Request(`http://sim${path}`, {
          method,
          headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        }),
        (status, _request, text) => {
          seen = { status, text };
        },
      );
      return { status: response.status, text: await response.text() };
    } catch {
      return { status: -seen.status, text: seen.text };
    }
  }

  /** Triggers until the run exists (201, or 409 after a lost answer). */
  async #trigger(dagId: string, runId: string, logicalMs: number): Promise<void> {
    for (;;) {
      const { status } = await this.#publicApi('POST', `/api/v2/dags/${dagId}/dagRuns`, {
        dag_run_id: runId,
        logical_date: new Date(logicalMs).toISOString(),
      });
      if (status === 201 || status === 409 || status === -201) {
        this.#triggered.add(`${dagId}/${runId}`);
        return;
      }
      await this.#kernel.sleep(500);
    }
  }

  async #clear(): Promise<void> {
    const runs = [...this.#triggered].sort();
    if (runs.length === 0) return;
    const runKey = this.#prng.pick(runs);
    const [dagId, runId] = runKey.split('/') as [string, string];
    // Marked before the call: its writes land before its answer, and the checks must know.
    this.#cleared.add(runKey);
    await this.#publicApi('POST', `/api/v2/dags/${dagId}/dagRuns/${runId}/clear`, {});
  }

  async #pause(): Promise<void> {
    const dagId = this.#prng.pick([...this.#dags.keys()].sort());
    await this.#publicApi('PATCH', `/api/v2/dags/${dagId}`, { is_paused: true });
    await this.#kernel.sleep(this.#prng.range(1_000, 8_000));
    await this.#publicApi('PATCH', `/api/v2/dags/${dagId}`, { is_paused: false });
  }

  /** Faults stop; every DAG is unpaused (until it sticks); the world must now settle. */
  #heal(): void {
    this.#phase = 'heal';
    this.#faults = NO_FAULTS;
    this.#kernel.log('heal phase: faults off');
    this.#triggerers.heal();
    this.#kernel.spawn('unpause', async () => {
      for (const dagId of [...this.#dags.keys()].sort()) {
        while ((await this.#publicApi('PATCH', `/api/v2/dags/${dagId}`, { is_paused: false })).status !== 200)
          await this.#kernel.sleep(500);
      }
      this.#unpaused = true;
    });
  }

  #expectedRuns(): string[] {
    return this.#workload.runs.map((run) => `${run.dagId}/${run.runId}`);
  }

  #openMessages(): Record<string, number> {
    return Object.fromEntries(
      Object.entries(this.#queues)
        .map(([name, queue]) => [name, queue.account().open] as const)
        .filter(([, open]) => open > 0),
    );
  }

  #settled(): boolean {
    if (!this.#unpaused || this.#triggered.size < this.#workload.runs.length) return false;
    if (unfinishedRuns(this.#mirror, this.#expectedRuns()).length > 0) return false;
    if (Object.keys(this.#openMessages()).length > 0) return false;
    // Callbacks owed or not final yet: the tick's sweep has work left (materializing, resending, retrying).
    if (this.#mirror.owed.size > 0) return false;
    for (const callback of this.#mirror.callbacks.values())
      if (callback.state !== 'success' && callback.state !== 'failed') return false;
    // Drivers and triggerers run for good; everything else must have ended.
    return !this.#kernel.hasLiveActors((actor) => actor.kind !== 'driver' && actor.kind !== 'triggerer');
  }

  async #finalChecks(): Promise<void> {
    const kernel = this.#kernel;
    // The mirror must agree with the table, or the per-step checks judged the wrong state.
    for (const runKey of this.#expectedRuns()) {
      const [dagId, runId] = runKey.split('/') as [string, string];
      const snapshot = await this.#checkStore.getRunSnapshot({ dagId, runId });
      for (const ti of snapshot?.taskInstances ?? []) {
        const mirrored = this.#mirror.taskInstances.get(`${runKey}/${ti.taskId}/${ti.mapIndex}`);
        if (mirrored?.state !== ti.state || mirrored.tryNumber !== ti.tryNumber)
          kernel.fail(
            new SimFailure(
              'harness',
              `mirror of ${runKey}/${ti.taskId} is stale: ${JSON.stringify(mirrored)}`,
            ),
          );
      }
    }
    const kept =
      checkSuccessesKept(this.#mirror, this.#ledger, this.#cleared) ?? checkOutcomesKept(this.#ledger);
    if (kept) kernel.fail(kept);
    for (const runKey of this.#expectedRuns()) {
      if (this.#cleared.has(runKey)) continue;
      const dag = this.#dags.get(runKey.split('/')[0] as string);
      const failure = dag && checkAgainstReference(dag, runKey, this.#mirror, this.#ledger);
      if (failure) kernel.fail(failure);
    }
    const events =
      checkTriggerEvents(this.#ledger, this.#mirror, this.#cleared) ?? checkDeferralTimeouts(this.#mirror);
    if (events) kernel.fail(events);
    const messages = checkMessages(
      Object.fromEntries(Object.entries(this.#queues).map(([n, q]) => [n, q.account()])),
    );
    if (messages) kernel.fail(messages);
    const callbacks =
      checkCallbacksOwed(this.#mirror, this.#dags) ??
      checkCallbacksDrained(this.#mirror, this.#callbackLedger) ??
      checkDeadlines(this.#mirror);
    if (callbacks) kernel.fail(callbacks);
  }
}

function countBy(keys: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const key of [...keys].sort()) counts[key] = (counts[key] ?? 0) + 1;
  return counts;
}

/** A worker's call, as its answer names it: method, path and body (a start names its worker, a report its id). */
function callKey(method: string, path: string, bodyText: string): string {
  return `${method} ${path} ${bodyText}`;
}

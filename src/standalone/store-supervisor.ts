import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DescribeTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { Logger } from '#engine/logger.ts';
import type { StoreHealth } from '#store/availability.ts';
import {
  createDynamoClient,
  type EmbeddedDynamoProcess,
  ensureTable,
  startEmbeddedDynamoProcess,
} from '#store/embedded.ts';
import { StoreError } from '#store/errors.ts';
import { StandaloneError } from './errors.ts';

/** Waits before each restart attempt; their count is the number of attempts before giving up. */
export const STORE_RESTART_DELAYS_MS: readonly number[] = [250, 500, 1_000, 2_000, 4_000];
/** A store that stayed up this long counts as recovered: a later death gets every attempt again. */
const STABLE_AFTER_MS = 60_000;
/** How often a running store is asked whether it answers, and how long it has to answer. */
export const STORE_PROBE_INTERVAL_MS = 5_000;
export const STORE_PROBE_TIMEOUT_MS = 3_000;
/** Probes in a row without an answer before the store counts as not answering (one may be a busy moment). */
const PROBES_MISSED_BEFORE_DOWN = 2;

export interface StoreSupervisorOptions {
  /** Starts the store process; `port` is the one to listen on again after a death. */
  start(port: number | undefined): Promise<EmbeddedDynamoProcess>;
  /** Runs after every (re)start, before the store counts as up (e.g. the table exists). */
  ready(store: EmbeddedDynamoProcess): Promise<void>;
  log: Logger;
  restartDelaysMs?: readonly number[];
  /** Called once when the store died and every restart attempt failed; standalone stops then. */
  onGiveUp(error: StandaloneError): void;
  /** Where the data lives, for the messages. */
  description: string;
  /**
   * Asks the running store something it must answer (e.g. describe the table); rejects, or is
   * aborted through `signal`, when it does not. Without it, only a death is noticed.
   */
  probe?(store: EmbeddedDynamoProcess, signal: AbortSignal): Promise<void>;
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
  /** Called by `close` once the store is stopped (e.g. to destroy the probe's client). */
  onClose?(): void;
}

/**
 * Keeps the embedded store process running for standalone: when it dies it is restarted on the
 * same port (so every client keeps its endpoint), after a short backoff, with a log line for the
 * death and one for the recovery. While it is down `health()` says so, and the API answers 503.
 * When every attempt fails, `onGiveUp` is called once. See docs/architecture.md.
 *
 * A store that is alive but does not answer (a stopped process, a stalled disk) is noticed by
 * `probe`: after `PROBES_MISSED_BEFORE_DOWN` unanswered probes in a row `health()` says it does
 * not answer (the API answers 503 at once instead of waiting on it) until a probe is answered.
 * It is not restarted: it may be only slow, and a restart would not fix a stalled disk.
 */
export class StoreSupervisor {
  readonly #options: StoreSupervisorOptions;
  readonly #delays: readonly number[];
  #current: EmbeddedDynamoProcess;
  #upSince: number;
  #failures = 0;
  #down: { since: number; reason: string } | undefined;
  #stopping = false;
  #restarting: Promise<void> | undefined;
  /** Unanswered probes in a row of the current store, and since when it counts as not answering. */
  #missedProbes = 0;
  #unanswering: { since: number; pid: number } | undefined;
  #probeTimer: NodeJS.Timeout | undefined;
  #probing: Promise<void> | undefined;

  private constructor(options: StoreSupervisorOptions, first: EmbeddedDynamoProcess) {
    this.#options = options;
    this.#delays = options.restartDelaysMs ?? STORE_RESTART_DELAYS_MS;
    this.#current = first;
    this.#upSince = Date.now();
    this.#watch(first);
    if (options.probe) {
      this.#probeTimer = setInterval(() => {
        this.#probing ??= this.#probeOnce().finally(() => {
          this.#probing = undefined;
        });
      }, options.probeIntervalMs ?? STORE_PROBE_INTERVAL_MS);
      this.#probeTimer.unref();
    }
  }

  /** Starts the store; a failure of this first start is thrown, not retried. */
  static async start(options: StoreSupervisorOptions): Promise<StoreSupervisor> {
    const first = await options.start(undefined);
    try {
      await options.ready(first);
    } catch (error) {
      await first.close();
      throw error;
    }
    return new StoreSupervisor(options, first);
  }

  get endpoint(): string {
    return this.#current.endpoint;
  }

  get pid(): number {
    return this.#current.pid;
  }

  health(): StoreHealth {
    if (this.#down) {
      const seconds = Math.round((Date.now() - this.#down.since) / 1000);
      return {
        status: 'unhealthy',
        detail: `The embedded store process ${this.#down.reason} ${seconds}s ago and is being restarted`,
      };
    }
    if (this.#unanswering) {
      const seconds = Math.round((Date.now() - this.#unanswering.since) / 1000);
      return {
        status: 'unhealthy',
        detail: `The embedded store process (pid ${this.#unanswering.pid}) is running but does not answer (for ${seconds}s)`,
      };
    }
    return { status: 'healthy' };
  }

  /** Stops the store for good (no restart); waits for a restart in progress first. */
  async close(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#probeTimer);
    await this.#probing;
    await this.#restarting;
    await this.#current.close();
    this.#options.onClose?.();
  }

  /** One probe of the current store, unless it is known to be down (being restarted). */
  async #probeOnce(): Promise<void> {
    const { probe, log } = this.#options;
    const store = this.#current;
    if (!probe || this.#stopping || this.#down) return;
    const timeoutMs = this.#options.probeTimeoutMs ?? STORE_PROBE_TIMEOUT_MS;
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(new StoreError(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
    });
    let failure: unknown;
    try {
      await Promise.race([probe(store, controller.signal), deadline]);
    } catch (error) {
      failure = error;
    } finally {
      clearTimeout(timer);
    }
    // A death or a restart while probing is the death watcher's to tell.
    if (this.#stopping || this.#down || store !== this.#current) return;
    if (failure === undefined) {
      this.#missedProbes = 0;
      if (this.#unanswering) {
        log.info(
          `The embedded store (pid ${store.pid}) answers again, ${Date.now() - this.#unanswering.since} ms after it stopped answering`,
        );
        this.#unanswering = undefined;
      }
      return;
    }
    this.#missedProbes += 1;
    if (this.#missedProbes >= PROBES_MISSED_BEFORE_DOWN && !this.#unanswering) {
      this.#unanswering = { since: Date.now(), pid: store.pid };
      log.error(
        `The embedded store process (pid ${store.pid}) is running but does not answer (${this.#missedProbes} probes in a row); API calls answer 503 until it does`,
        { store: this.#options.description, error: failure },
      );
    }
  }

  #watch(store: EmbeddedDynamoProcess): void {
    void store.exited.then(({ code, signal }) => {
      if (this.#stopping || store !== this.#current) return;
      const reason = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      if (Date.now() - this.#upSince >= STABLE_AFTER_MS) this.#failures = 0;
      this.#down = { since: Date.now(), reason };
      this.#unanswering = undefined;
      this.#missedProbes = 0;
      this.#options.log.error(
        `The embedded store process (pid ${store.pid}) ${reason}; restarting it. API calls answer 503 until it is back`,
        { store: this.#options.description },
      );
      this.#restarting = this.#restart(store.port).finally(() => {
        this.#restarting = undefined;
      });
    });
  }

  async #restart(port: number): Promise<void> {
    const { log } = this.#options;
    let lastError: unknown;
    while (!this.#stopping) {
      const delay = this.#delays[this.#failures];
      if (delay === undefined) return this.#giveUp(lastError);
      this.#failures += 1;
      await sleep(delay);
      if (this.#stopping) return;
      try {
        const store = await this.#options.start(port);
        try {
          await this.#options.ready(store);
        } catch (error) {
          await store.close();
          throw error;
        }
        const downMs = Date.now() - (this.#down?.since ?? Date.now());
        this.#current = store;
        this.#upSince = Date.now();
        this.#down = undefined;
        this.#watch(store);
        log.info(`The embedded store is running again (pid ${store.pid}), ${downMs} ms after it stopped`, {
          attempt: this.#failures,
        });
        return;
      } catch (error) {
        lastError = error;
        log.error(
          `Restarting the embedded store failed (attempt ${this.#failures} of ${this.#delays.length})`,
          { error },
        );
      }
    }
  }

  #giveUp(lastError: unknown): void {
    if (this.#delays.length === 0) {
      this.#options.onGiveUp(
        new StandaloneError(
          `The embedded store (${this.#options.description}) stopped, and a store kept in memory cannot be restarted: Updraft stops`,
        ),
      );
      return;
    }
    const detail = lastError instanceof Error ? lastError.message : String(lastError ?? 'no attempt');
    this.#options.onGiveUp(
      new StandaloneError(
        `The embedded store (${this.#options.description}) stopped and could not be restarted after ${this.#delays.length} attempts (last error: ${detail}): Updraft stops. Check the folder and the log above, then start again`,
      ),
    );
  }
}

/**
 * Standalone's store: the embedded server in its own process under `<home>/store` (or in
 * memory), supervised, with the table in place, and a client of it. A first start that fails is
 * a StandaloneError naming the folder.
 */
export async function startSupervisedStore(options: {
  home: string;
  inMemory: boolean;
  tableName: string;
  log: Logger;
  onGiveUp(error: StandaloneError): void;
  /** Called once on the client before its first request (e.g. to count requests). */
  configureClient?(client: DynamoDBClient): void;
}): Promise<{ supervisor: StoreSupervisor; client: DynamoDBClient }> {
  const path = join(options.home, 'store');
  let client: DynamoDBClient | undefined;
  /** Probes on a client of their own: one attempt each, and not counted with the store's requests. */
  let probeClient: DynamoDBClient | undefined;
  try {
    const supervisor = await StoreSupervisor.start({
      start: (port) =>
        startEmbeddedDynamoProcess({
          ...(options.inMemory ? {} : { path }),
          ...(port === undefined ? {} : { port }),
        }),
      ready: async (store) => {
        if (!client) {
          client = createDynamoClient({ endpoint: store.endpoint, embedded: true });
          options.configureClient?.(client);
        }
        await ensureTable(client, options.tableName);
      },
      log: options.log.child({ component: 'store' }),
      // Data in memory dies with the process: a restart would bring back an empty store.
      ...(options.inMemory ? { restartDelaysMs: [] } : {}),
      onGiveUp: options.onGiveUp,
      description: options.inMemory ? 'in memory' : path,
      probe: async (store, signal) => {
        probeClient ??= createDynamoClient({
          endpoint: store.endpoint,
          embedded: true,
          maxAttempts: 1,
          requestTimeoutMs: STORE_PROBE_TIMEOUT_MS,
        });
        await probeClient.send(new DescribeTableCommand({ TableName: options.tableName }), {
          abortSignal: signal,
        });
      },
      onClose: () => probeClient?.destroy(),
    });
    return { supervisor, client: client as unknown as DynamoDBClient };
  } catch (error) {
    client?.destroy();
    probeClient?.destroy();
    if (!(error instanceof StoreError)) throw error;
    throw new StandaloneError(
      `The embedded store in ${options.inMemory ? 'memory' : path} could not be opened (${error.message}). If its files are damaged, \`npx updraft standalone --reset-store\` moves them aside and starts with an empty store`,
      { cause: error },
    );
  }
}

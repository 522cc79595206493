import { loadSettings, type Settings } from '#config/settings.ts';
import type { ParsedDagsFolder } from '#engine/dag-registry.ts';
import type { WakeTimers } from '#engine/ports.ts';
import type { ExecutionKeys } from '#engine/tokens.ts';
import type { LogStore } from '#logs/port.ts';
import type { Queues } from '#queue/port.ts';
import type { Store } from '#store/port.ts';
import type { CallbackExecutor } from '#worker/callback-pool.ts';
import { systemClock, type WorkerClock } from '#worker/clock.ts';
import type { TaskExecutor } from '#worker/executor.ts';
import { AWS_ENV } from './environment.ts';
import { HandlerError } from './handler-errors.ts';
import type { Observability } from './handler-observability.ts';
import { type DagModuleLoader, InProcessTaskExecutor } from './lambda-executor.ts';

/**
 * Everything the Lambda handlers run on. Each handler asks only for what it uses, when it first
 * uses it, so the worker never builds a DynamoDB client and the API never reads the DAG modules.
 * In a deployment the AWS-backed ones come from the `handler-defaults-*.ts` modules (the AWS
 * adapters, configured by the variables of `environment.ts`) and the others from
 * `LOCAL_DEFAULTS`; a test passes its own as `Partial<HandlerDeps>` (the embedded store,
 * in-memory queues) and no AWS defaults module is loaded.
 */
export interface HandlerDeps {
  /** `loadSettings(process.env)`: the standalone `UPDRAFT_*` variables. */
  settings: Settings;
  now: () => number;
  store: Store;
  /** The queues bound to this function; using one that is not bound throws, naming its variable. */
  queues: Queues;
  timers: WakeTimers;
  logs: LogStore;
  /** The public API's bearer token, read from Secrets Manager and cached per instance. */
  apiToken: () => Promise<string>;
  /**
   * The execution-token keyring, read from Secrets Manager and cached per instance. `refresh`:
   * read it now, whatever its age (a token names a key id the keyring held does not have).
   */
  executionKeys: (options?: { refresh?: boolean }) => Promise<ExecutionKeys>;
  /** Where workers reach the Execution API (its function URL). */
  executionApiUrl: string;
  /** How workers call it: SigV4-signed for the function URL's IAM auth. */
  executionFetch: typeof fetch;
  /** The DAG modules bundled with the worker. */
  loadDagModule: DagModuleLoader;
  /** Runs tries, and callbacks when it can (`CallbackExecutor`; the in-process executor does). */
  executor: TaskExecutor & Partial<CallbackExecutor>;
  clock: WorkerClock;
  /** What the deploy registers (the register-dags custom resource). */
  serializedDags: () => Promise<ParsedDagsFolder>;
  /** Transport of the custom resource's answer to CloudFormation's pre-signed URL. */
  responseFetch: typeof fetch;
  /**
   * The IAM role id (`AROA…`) of the triggerer's task role (`UPDRAFT_TRIGGERER_ROLE_ID`), or null:
   * the Execution API gives a triggerer credential to a job registration signed by that role.
   */
  triggererRoleId: string | null;
}

/** The deps whose defaults are AWS clients and adapters (the `handler-defaults-*.ts` modules). */
export type AwsDep =
  | 'store'
  | 'queues'
  | 'timers'
  | 'logs'
  | 'apiToken'
  | 'executionKeys'
  | 'executionApiUrl'
  | 'executionFetch';

/** How one AWS default is made: from the others (asked lazily) and the function's Powertools utilities. */
export type DepFactories = {
  [K in AwsDep]: (deps: LazyDeps, observability: Observability) => HandlerDeps[K] | Promise<HandlerDeps[K]>;
};

/**
 * Where a function finds the AWS defaults it may need: per dep, an import of the module that
 * makes it. Each function lists only its own, as literal imports, so esbuild bundles only the
 * SDK clients that function uses (the worker carries no DynamoDB, SQS or S3 client) and a
 * test that gives those deps never loads the modules at all.
 */
export type AwsDefaults = { [K in AwsDep]?: () => Promise<{ factories: Partial<DepFactories> }> };

/**
 * Defaults that need no AWS: made here, so a test that gives the AWS-backed deps loads no AWS
 * defaults module. The DAG sources are given by the entries that bundle them.
 */
const LOCAL_DEFAULTS = {
  settings: () => loadSettings(process.env),
  now: () => Date.now,
  clock: () => systemClock,
  executor: async (deps: LazyDeps) =>
    new InProcessTaskExecutor({
      loadModule: await deps.get('loadDagModule'),
      allowedDeserializationClasses: (await deps.get('settings')).allowedDeserializationClasses,
    }),
  loadDagModule: () => {
    throw new HandlerError(
      'No DAG modules are bundled: the worker entry (functions/worker.ts) passes loadDagModule',
    );
  },
  serializedDags: () => {
    throw new HandlerError(
      'No serialized DAGs: the register-dags entry (functions/register-dags.ts) passes them',
    );
  },
  responseFetch: () => fetch,
  triggererRoleId: () => process.env[AWS_ENV.triggererRoleId]?.trim() || null,
} satisfies {
  [K in Exclude<keyof HandlerDeps, AwsDep>]: (deps: LazyDeps) => HandlerDeps[K] | Promise<HandlerDeps[K]>;
};

/**
 * The deps of one function instance: given ones as they are, the rest made once from the
 * defaults on first use (outside any one invocation, so a warm instance reuses its clients).
 * A default that failed to build is not kept: the next invocation tries again.
 */
export class LazyDeps {
  readonly #given: Partial<HandlerDeps>;
  readonly #observability: Observability;
  readonly #awsDefaults: AwsDefaults;
  readonly #made = new Map<keyof HandlerDeps, Promise<unknown>>();

  constructor(given: Partial<HandlerDeps>, observability: Observability, awsDefaults: AwsDefaults = {}) {
    this.#given = given;
    this.#observability = observability;
    this.#awsDefaults = awsDefaults;
  }

  get<K extends keyof HandlerDeps>(key: K): Promise<HandlerDeps[K]> {
    const given = this.#given[key];
    if (given !== undefined) return Promise.resolve(given as HandlerDeps[K]);
    let made = this.#made.get(key) as Promise<HandlerDeps[K]> | undefined;
    if (!made) {
      made = Promise.resolve().then(() => this.#make(key));
      this.#made.set(key, made);
      made.catch(() => {
        if (this.#made.get(key) === made) this.#made.delete(key);
      });
    }
    return made;
  }

  async #make<K extends keyof HandlerDeps>(key: K): Promise<HandlerDeps[K]> {
    if (isLocal(key)) return (await LOCAL_DEFAULTS[key](this)) as HandlerDeps[K];
    const load = this.#awsDefaults[key as AwsDep];
    if (!load)
      throw new HandlerError(`This function has no default for ${key}: it is not one of its resources`);
    awsModulesLoaded += 1;
    const { factories } = await load();
    const factory = factories[key as AwsDep];
    if (!factory) throw new HandlerError(`The defaults module for ${key} does not make it`);
    return (await factory(this, this.#observability)) as HandlerDeps[K];
  }
}

function isLocal(key: keyof HandlerDeps): key is Exclude<keyof HandlerDeps, AwsDep> {
  return Object.hasOwn(LOCAL_DEFAULTS, key);
}

let awsModulesLoaded = 0;

/** Whether this process has asked for an AWS default (a test checks that it did not need one). */
export function awsDefaultsLoaded(): boolean {
  return awsModulesLoaded > 0;
}

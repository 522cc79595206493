import { join, resolve } from 'node:path';
import type { Duration } from 'aws-cdk-lib';
import type { NodejsFunction, NodejsFunctionProps } from 'aws-cdk-lib/aws-lambda-nodejs';
import { Construct } from 'constructs';
import type { QueueName } from '#queue/port.ts';
import type { UpdraftExecutionApi } from './execution-api.ts';
import { createUpdraftFunction, FUNCTION_ENTRIES, type FunctionDefaults } from './functions.ts';
import type { UpdraftQueues } from './queues.ts';

/** The queues a worker consumes: callbacks and the task queues by priority class. */
export const WORKER_QUEUES = [
  'callbacks',
  'tasks_high',
  'tasks_default',
  'tasks_low',
] as const satisfies readonly QueueName[];
export type WorkerQueueName = (typeof WORKER_QUEUES)[number];

/**
 * Worker invocations each queue may hold at once. Each queue has a ceiling of its own, so a
 * backlog in one never takes the others' share: callbacks and high-priority tasks get through
 * while the default and low queues are full.
 */
export const DEFAULT_WORKER_CONCURRENCY: Readonly<Record<WorkerQueueName, number>> = {
  callbacks: 5,
  tasks_high: 10,
  tasks_default: 10,
  tasks_low: 2,
};

/**
 * Workloads per invocation: an event source's batch from a standard queue without a batching
 * window holds at most 10, and a larger batch would need a window (latency on every task).
 */
export const DEFAULT_WORKER_BATCH_SIZE = 10;
export const MAX_WORKER_BATCH_SIZE = 10;

/** The folder the default worker entry (`functions/worker.ts`) bundles, relative to the project root. */
export const DEFAULT_WORKER_DAGS_FOLDER = 'dags';

export interface UpdraftWorkersProps {
  readonly defaults: FunctionDefaults;
  readonly queues: UpdraftQueues;
  readonly executionApi: UpdraftExecutionApi;
  readonly timeout: Duration;
  readonly memorySize: number;
  readonly maxConcurrency: Readonly<Record<WorkerQueueName, number>>;
  /** Workloads one invocation takes from a queue and runs side by side (1 to 10). */
  readonly batchSize: number;
  /** The DAGs folder the deploy registers: the worker's bundle must hold the same DAGs. */
  readonly dagsDir: string;
  /**
   * A worker entry of the user's own, bundling another DAGs folder: `functions/worker.ts` with
   * its import template pointing at that folder. Default: `functions/worker.ts`, which bundles
   * the project's `dags/`.
   */
  readonly entry?: string;
  readonly functionProps?: Partial<NodejsFunctionProps>;
  readonly environment?: Record<string, string>;
}

export class WorkerConfigurationError extends Error {
  override name = 'WorkerConfigurationError';
}

/**
 * Refuses a DAGs folder the worker would not run: the default entry (`functions/worker.ts`)
 * bundles the project's `dags/`, so registering another folder's DAGs needs an entry of one's own.
 * Stub code (`functionCode`) bundles nothing and is not checked.
 */
export function checkWorkerBundlesDags(options: {
  projectRoot: string;
  dagsDir: string;
  entry?: string | undefined;
  functionCode?: unknown;
}): void {
  if (options.functionCode !== undefined || options.entry !== undefined) return;
  const bundledFolder = join(options.projectRoot, DEFAULT_WORKER_DAGS_FOLDER);
  const dagsDir = resolve(options.dagsDir);
  if (dagsDir === bundledFolder) return;
  throw new WorkerConfigurationError(
    `The DAGs folder ${dagsDir} is not the one the default worker entry (${FUNCTION_ENTRIES.worker}) bundles, ${bundledFolder}: the worker would run other DAGs than those registered. Give workers.entry a worker entry that imports from ${dagsDir}.`,
  );
}

/**
 * The workers: one Lambda function consuming the callback queue and the three task queues, an
 * event source per queue with its own concurrency ceiling and partial batch responses. An
 * invocation runs its batch's workloads side by side (up to `batchSize`, default 10), sharing the
 * function's memory and timeout: one receive, one delete and one invocation serve up to ten
 * tasks. A batch size of 1 gives each task an execution environment and the whole timeout to
 * itself, and makes the concurrency ceilings count running tasks. The DAG code is bundled into
 * this function and no other. It reaches the store only through the Execution API: no table,
 * bucket or secret.
 */
export class UpdraftWorkers extends Construct {
  readonly function: NodejsFunction;

  constructor(scope: Construct, id: string, props: UpdraftWorkersProps) {
    super(scope, id);
    checkWorkerBundlesDags({ ...props.defaults, dagsDir: props.dagsDir, entry: props.entry });
    if (
      !Number.isInteger(props.batchSize) ||
      props.batchSize < 1 ||
      props.batchSize > MAX_WORKER_BATCH_SIZE
    ) {
      throw new WorkerConfigurationError(
        `workers.batchSize ${JSON.stringify(props.batchSize)} is not a whole number from 1 to ${MAX_WORKER_BATCH_SIZE} (an SQS event source without a batching window delivers at most ${MAX_WORKER_BATCH_SIZE} messages an invocation)`,
      );
    }
    this.function = createUpdraftFunction(this, 'Function', props.defaults, {
      name: 'worker',
      description: 'Updraft worker: runs task and callback workloads from the queues',
      timeout: props.timeout,
      memorySize: props.memorySize,
      ...(props.entry === undefined ? {} : { entry: resolve(props.entry) }),
      ...(props.environment ? { environment: props.environment } : {}),
      ...(props.functionProps ? { overrides: props.functionProps } : {}),
    });
    for (const queue of WORKER_QUEUES) {
      props.queues.bindConsumer(this.function, queue, {
        functionTimeout: props.timeout,
        batchSize: props.batchSize,
        maxConcurrency: props.maxConcurrency[queue],
      });
    }
    props.executionApi.bindClient({
      grantee: this.function,
      addEnvironment: (name, value) => this.function.addEnvironment(name, value),
    });
  }
}

import { App, Stack } from 'aws-cdk-lib';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { CfnEventSourceMapping, type CfnFunction, Code } from 'aws-cdk-lib/aws-lambda';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { QueueName } from '#queue/port.ts';
import { QUEUE_NAMES } from '#queue/port.ts';
import type { UpdraftFunctionName } from '../lib/functions.ts';
import { removeTempFiles } from '../lib/temp-files.ts';
import { Updraft } from '../lib/updraft.ts';

/** How the event source mapping of one queue invokes its function, as the construct configures it. */
export interface EventSourceConfig {
  function: UpdraftFunctionName;
  batchSize: number;
  maxBatchingWindowSeconds: number;
  maxConcurrency: number;
}

/** What the bench takes from the construct's defaults rather than restating them. */
export interface DeploymentDefaults {
  memoryMb: Record<UpdraftFunctionName, number>;
  /** The plain `UPDRAFT_*` settings each function gets (tokens such as queue URLs left out). */
  settingsEnvironment: Record<UpdraftFunctionName, Record<string, string>>;
  eventSources: Partial<Record<QueueName, EventSourceConfig>>;
}

/**
 * Builds `new Updraft(…)` with the construct's defaults (stub code and a registry image, so
 * nothing is bundled) and reads each function's memory size, its settings variables and the
 * queues' event source mappings from the resulting L1 resources. Nothing is synthesized.
 */
export function readDeploymentDefaults(dagsDir = 'dags'): DeploymentDefaults {
  const app = new App();
  const stack = new Stack(app, 'BenchAws');
  const updraft = new Updraft(stack, 'Orchestrator', {
    dagsDir,
    functionCode: () => Code.fromInline('export const handler = async () => undefined;'),
    triggerer: { image: ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:24-slim') },
  });
  try {
    const functions: Record<UpdraftFunctionName, NodejsFunction> = {
      api: updraft.api.function,
      executionApi: updraft.executionApi.function,
      scheduler: updraft.scheduler.function,
      worker: updraft.workers.function,
      registerDags: updraft.dagRegistration.function,
    };
    const memoryMb = {} as Record<UpdraftFunctionName, number>;
    const settingsEnvironment = {} as Record<UpdraftFunctionName, Record<string, string>>;
    const queueOfArn = new Map(
      QUEUE_NAMES.map((name) => [
        JSON.stringify(stack.resolve(updraft.queues.queues[name].queue.queueArn)),
        name,
      ]),
    );
    const eventSources: Partial<Record<QueueName, EventSourceConfig>> = {};
    for (const [name, fn] of Object.entries(functions) as [UpdraftFunctionName, NodejsFunction][]) {
      const resource = fn.node.defaultChild as CfnFunction;
      memoryMb[name] = Number(resource.memorySize ?? 128);
      const environment = stack.resolve(resource.environment) as
        | { variables?: Record<string, unknown> }
        | undefined;
      settingsEnvironment[name] = Object.fromEntries(
        Object.entries(environment?.variables ?? {}).filter(
          (entry): entry is [string, string] =>
            entry[0].startsWith('UPDRAFT_') && typeof entry[1] === 'string',
        ),
      );
      for (const child of fn.node.findAll()) {
        if (!(child instanceof CfnEventSourceMapping)) continue;
        const queue = queueOfArn.get(JSON.stringify(stack.resolve(child.eventSourceArn)));
        if (!queue) continue;
        const scaling = stack.resolve(child.scalingConfig) as { maximumConcurrency?: number } | undefined;
        eventSources[queue] = {
          function: name,
          batchSize: Number(child.batchSize ?? 10),
          maxBatchingWindowSeconds: Number(child.maximumBatchingWindowInSeconds ?? 0),
          maxConcurrency: Number(scaling?.maximumConcurrency ?? 1000),
        };
      }
    }
    return { memoryMb, settingsEnvironment, eventSources };
  } finally {
    removeTempFiles();
  }
}

import { SQSClient } from '@aws-sdk/client-sqs';
import { QUEUE_NAMES, type Queue, type QueueName, type Queues } from '#queue/port.ts';
import { queueUrlEnvVar, requireEnv } from './environment.ts';
import type { DepFactories } from './handler-deps.ts';
import { HandlerError } from './handler-errors.ts';
import { sdkClientLogger } from './handler-observability.ts';
import { SqsQueue } from './sqs-queue.ts';

/** The queues bound to this function (`UPDRAFT_QUEUE_URL_<NAME>`) on SQS. */
export const factories: Pick<DepFactories, 'queues'> = {
  queues: async (deps, { tracer, logger }) => {
    const settings = await deps.get('settings');
    const client = tracer.captureAWSv3Client(new SQSClient({ logger: sdkClientLogger(logger) }));
    const queues = {} as Record<QueueName, Queue>;
    for (const name of QUEUE_NAMES) {
      const queueUrl = process.env[queueUrlEnvVar(name)];
      queues[name] = queueUrl
        ? new SqsQueue({ client, queueUrl, name, maxMessageBytes: settings.queueMaxMessageBytes })
        : unboundQueue(name);
    }
    return queues as Queues;
  },
};

/** A queue this function's construct did not bind: any use names the missing variable. */
function unboundQueue(name: QueueName): Queue {
  const fail = async (): Promise<never> => {
    requireEnv(process.env, queueUrlEnvVar(name));
    throw new HandlerError(`The ${name} queue is not bound to this function`);
  };
  return { name, send: fail, receive: fail, delete: fail, changeVisibility: fail, stats: fail };
}

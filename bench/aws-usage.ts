import type { UpdraftFunctionName } from '../lib/functions.ts';
import { gbSeconds, type LambdaUsage, type MeasuredUsage, type PriceList, round } from './aws-cost.ts';
import type { DeploymentDefaults } from './aws-deployment.ts';
import type { HandlerRunResult, PhaseCounts } from './aws-run.ts';

/** The tick's meter name: its usage is a fixed cost per period, not a cost per task. */
const TICK = 'tick';
/** Lambda gives a function one vCPU at 1,769 MB, and CPU in proportion below that. */
const MB_PER_VCPU = 1769;
const SQS_OPERATIONS: Record<string, string> = {
  SendMessageBatch: 'send',
  SendMessage: 'send',
  ReceiveMessage: 'receive (event source)',
  DeleteMessageBatch: 'delete (event source)',
  ChangeMessageVisibility: 'other',
  GetQueueAttributes: 'other',
};

type Memory = Record<UpdraftFunctionName, number>;

const memoryOf = (memoryMb: Memory, fn: string) =>
  memoryMb[(fn === TICK ? 'scheduler' : fn) as UpdraftFunctionName] ?? 1024;

function lambdaUsage(durations: readonly number[], memoryMb: number, cpuScaled: boolean): LambdaUsage {
  const stretch = cpuScaled ? Math.max(1, MB_PER_VCPU / memoryMb) : 1;
  return {
    invocations: durations.length,
    billedMs: durations.reduce((total, ms) => total + Math.ceil(ms * stretch), 0),
    memoryMb,
  };
}

function callsOf(phase: PhaseCounts, operation: string): number {
  return Object.entries(phase.aws.calls)
    .filter(([key]) => key.split(' ')[0] === operation)
    .reduce((total, [, count]) => total + count, 0);
}

/**
 * The metered runs as the cost model's input, the tick's share left out. `cpuScaled` stretches
 * every measured millisecond by the function's CPU share (an upper bound: as if all were CPU).
 */
export function usageOf(
  run: HandlerRunResult,
  memoryMb: Memory,
  options: { cpuScaled?: boolean } = {},
): MeasuredUsage {
  const phase = run.runs;
  const owners = Object.entries(phase.dynamodb).filter(([owner]) => owner !== TICK);
  const lambda = Object.fromEntries(
    Object.entries(phase.durationsMs)
      .filter(([fn]) => fn !== TICK)
      .map(([fn, durations]) => [
        fn,
        lambdaUsage(durations, memoryOf(memoryMb, fn), options.cpuScaled ?? false),
      ]),
  );
  const sqs: Record<string, number> = {};
  for (const [operation, billed] of Object.entries(phase.aws.billed)) {
    const kind = SQS_OPERATIONS[operation];
    if (kind) sqs[kind] = (sqs[kind] ?? 0) + billed;
  }
  return {
    tasks: run.tasks,
    lambda,
    dynamodb: {
      readRequestUnits: owners.reduce((total, [, tally]) => total + tally.readUnits, 0),
      writeRequestUnits: owners.reduce(
        (total, [, tally]) => total + tally.tableWriteUnits + tally.indexWriteUnits,
        0,
      ),
    },
    sqs,
    s3: {
      puts: callsOf(phase, 'PutObject'),
      gets: callsOf(phase, 'GetObject'),
      lists: callsOf(phase, 'ListObjectsV2'),
    },
    httpApiRequests: lambda.api?.invocations ?? 0,
    functionUrlRequests: lambda.executionApi?.invocations ?? 0,
    schedulerInvocations: callsOf(phase, 'ScheduleInvocation'),
  };
}

function percentileOf(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return (
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN
  );
}

function perTask(
  counts: Record<string, number>,
  tasks: number,
  top = Number.POSITIVE_INFINITY,
): Record<string, number> {
  return Object.fromEntries(
    Object.entries(counts)
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, count]) => [key, round(count / tasks, 3)]),
  );
}

function unitsPerRequest(
  units: Record<string, number>,
  requests: Record<string, number>,
): Record<string, number> {
  return Object.fromEntries(
    Object.entries(units)
      .filter(([key]) => (requests[key] ?? 0) > 0)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 10)
      .map(([key, total]) => [key, round(total / (requests[key] ?? 1), 2)]),
  );
}

/** The handler-level run, per task where it scales with tasks. */
export function handlerRunSummary(run: HandlerRunResult, memoryMb: Memory) {
  const { tasks } = run;
  const phase = run.runs;
  const merged = (pick: (tally: PhaseCounts['dynamodb'][string]) => Record<string, number>) => {
    const counts: Record<string, number> = {};
    for (const [owner, tally] of Object.entries(phase.dynamodb)) {
      if (owner === TICK) continue;
      for (const [key, value] of Object.entries(pick(tally))) counts[key] = (counts[key] ?? 0) + value;
    }
    return counts;
  };
  const idleTick = run.tick.dynamodb[TICK];
  return {
    dag_id: run.options.dagId,
    runs: run.options.runs,
    task_instances: tasks,
    seconds: round(phase.seconds, 2),
    concurrency: { workers: run.options.workerConcurrency, schedulers: run.options.schedulerConcurrency },
    event_sources: run.eventSources,
    tick_interval_ms: run.options.tickIntervalMs,
    lambda: Object.fromEntries(
      Object.entries(phase.durationsMs).map(([fn, durations]) => [
        fn,
        {
          invocations: durations.length,
          per_task: round(durations.length / tasks, 3),
          mean_ms: round(durations.reduce((a, b) => a + b, 0) / Math.max(1, durations.length), 1),
          p50_ms: round(percentileOf(durations, 50), 1),
          p95_ms: round(percentileOf(durations, 95), 1),
          memory_mb: memoryOf(memoryMb, fn),
          gb_seconds_per_task: round(
            gbSeconds(lambdaUsage(durations, memoryOf(memoryMb, fn), false)) / tasks,
            5,
          ),
        },
      ]),
    ),
    dynamodb: {
      by_function: Object.fromEntries(
        Object.entries(phase.dynamodb).map(([owner, tally]) => [
          owner,
          {
            requests_per_task: perTask(tally.requests, tasks),
            read_units_per_task: round(tally.readUnits / tasks, 3),
            table_write_units_per_task: round(tally.tableWriteUnits / tasks, 3),
            index_write_units_per_task: round(tally.indexWriteUnits / tasks, 3),
            conditional_failures: tally.conditionalFailures,
            conditional_failure_units: tally.conditionalFailureUnits,
          },
        ]),
      ),
      write_units_by_item_per_task: perTask(
        merged((tally) => tally.writeUnitsByItem),
        tasks,
        10,
      ),
      read_units_by_item_per_task: perTask(
        merged((tally) => tally.readUnitsByItem),
        tasks,
        10,
      ),
      /** Mean units of one request by item kind: how large the items a request touches are. */
      units_per_request_by_item: unitsPerRequest(
        merged((tally) => ({ ...tally.readUnitsByItem, ...tally.writeUnitsByItem })),
        merged((tally) => tally.requestsByItem),
      ),
      requests_without_capacity: Object.values(phase.dynamodb).reduce(
        (total, tally) => total + tally.withoutCapacity,
        0,
      ),
    },
    aws_requests_per_task: perTask(phase.aws.calls, tasks),
    sqs_payload_bytes_per_task: perTask(phase.aws.payloadBytes, tasks),
    emf_bytes_per_task: round(phase.emfBytes / tasks, 1),
    idle_tick: {
      duration_ms: round(run.tick.durationsMs[TICK]?.[0] ?? Number.NaN, 1),
      read_units: idleTick?.readUnits ?? 0,
      write_units: (idleTick?.tableWriteUnits ?? 0) + (idleTick?.indexWriteUnits ?? 0),
      requests: idleTick?.requests ?? {},
    },
    runs_finished_by_tick: run.runsFinishedByTick,
    batch_item_failures: run.batchItemFailures,
    warnings: run.warnings,
  };
}

/**
 * What a deployment costs per month whatever it runs: the periodic tick (measured idle, at the
 * deployment's period) and the event source mappings' empty long-polls (an assumption, stated).
 */
export function fixedMonthlyCosts(
  run: HandlerRunResult,
  defaults: DeploymentDefaults,
  tickMs: number,
  prices: PriceList,
) {
  const perMonth = (30 * 24 * 3600 * 1000) / tickMs;
  const idle = run.tick.dynamodb[TICK];
  const tickLambda = lambdaUsage(run.tick.durationsMs[TICK] ?? [], defaults.memoryMb.scheduler, false);
  const unit = (price: PriceList[keyof PriceList]) =>
    typeof price === 'string' ? 0 : price.dollars / price.per;
  const tick =
    perMonth *
    (unit(prices.lambdaRequest) +
      unit(prices.lambdaGbSecond) * gbSeconds(tickLambda) +
      unit(prices.dynamoReadRequestUnit) * (idle?.readUnits ?? 0) +
      unit(prices.dynamoWriteRequestUnit) * ((idle?.tableWriteUnits ?? 0) + (idle?.indexWriteUnits ?? 0)));
  const mappings = Object.keys(defaults.eventSources).length;
  const pollersPerMapping = 5;
  const pollRequests = mappings * pollersPerMapping * 3 * 60 * 24 * 30;
  return {
    tick: {
      ticks_per_month: perMonth,
      dollars: round(tick, 4),
      basis:
        'one idle tick measured (duration, request units) × ticks per month; the EventBridge rule itself is free',
    },
    event_source_polling: {
      requests_per_month: pollRequests,
      dollars: round(pollRequests * unit(prices.sqsRequest), 4),
      basis: `assumption: ${mappings} SQS event source mappings × ${pollersPerMapping} pollers × one 20 s long poll each (3 per minute) while idle`,
    },
    triggerer: {
      dollars: 0,
      basis:
        'scales to zero while no trigger waits; one task (0.25 vCPU, 0.5 GB, arm64) while any does is about $7.21/month of Fargate plus $3.65/month for its public IPv4 address',
    },
  };
}

/** What the cost leaves out, with what the run measured of it where it could. */
export function notModelled(run: HandlerRunResult): string[] {
  const invocations = Object.entries(run.runs.durationsMs)
    .filter(([fn]) => fn !== TICK)
    .reduce((total, [, list]) => total + list.length, 0);
  return [
    `CloudWatch Logs and EMF metrics: not priced. The functions published ${round(run.runs.emfBytes / run.tasks, 1)} bytes of EMF per task (ingestion is $0.50/GB, so about $${round(((run.runs.emfBytes / run.tasks) * 1e6 * 0.5) / 1024 ** 3, 3)} per million tasks for EMF alone); log lines and Lambda's platform lines come on top and were not measured.`,
    `X-Ray (tracing is active on every function): not priced. At $5.00 per million traces and the default 5% sampling beyond 1 request/s, ${round(invocations / run.tasks, 2)} invocations per task would add about $${round((invocations / run.tasks) * 0.05 * 5, 2)} per million tasks.`,
    'Secrets Manager reads (once per cold start per function instance) and $0.40 per secret-month; KMS (queues use SQS-managed keys: free); data transfer; DynamoDB, S3 and CloudWatch storage; point-in-time recovery.',
    'Public API calls beyond the trigger (a CLI --wait polls the run: one HTTP API request and one api invocation per poll).',
  ];
}

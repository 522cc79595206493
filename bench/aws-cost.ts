/**
 * The modelled AWS bill of a number of task runs: measured request counts times list prices,
 * scaled to one million task runs. Pure: no I/O, no clock; `bench/aws-run.ts` measures the counts.
 */

/** One list price: dollars per `per` units of `unit`, and where it comes from. */
export interface Price {
  readonly dollars: number;
  readonly per: number;
  readonly unit: string;
}

export interface PriceList {
  readonly region: string;
  readonly note: string;
  readonly lambdaGbSecond: Price;
  readonly lambdaRequest: Price;
  readonly dynamoWriteRequestUnit: Price;
  readonly dynamoReadRequestUnit: Price;
  readonly sqsRequest: Price;
  readonly s3Put: Price;
  readonly s3Get: Price;
  readonly httpApiRequest: Price;
  readonly functionUrlRequest: Price;
  readonly schedulerInvocation: Price;
}

/**
 * us-east-1 list prices, on-demand, free tiers ignored (the first tier of each price). DynamoDB
 * on-demand is the price since the November 2024 cut (Standard table class). S3 LIST requests
 * are billed as PUTs. EventBridge Scheduler bills each schedule that fires.
 */
export const US_EAST_1_PRICES: PriceList = {
  region: 'us-east-1',
  note: 'list prices, on-demand, first pricing tier, free tiers ignored',
  lambdaGbSecond: { dollars: 0.0000133334, per: 1, unit: 'GB-second (arm64)' },
  lambdaRequest: { dollars: 0.2, per: 1_000_000, unit: 'request' },
  dynamoWriteRequestUnit: { dollars: 0.625, per: 1_000_000, unit: 'write request unit (on-demand)' },
  dynamoReadRequestUnit: { dollars: 0.125, per: 1_000_000, unit: 'read request unit (on-demand)' },
  sqsRequest: { dollars: 0.4, per: 1_000_000, unit: 'request (standard queue, per 64 KB chunk)' },
  s3Put: { dollars: 0.005, per: 1_000, unit: 'PUT/COPY/POST/LIST request (S3 Standard)' },
  s3Get: { dollars: 0.0004, per: 1_000, unit: 'GET request (S3 Standard)' },
  httpApiRequest: { dollars: 1, per: 1_000_000, unit: 'request (API Gateway HTTP API)' },
  functionUrlRequest: {
    dollars: 0,
    per: 1_000_000,
    unit: 'request (Lambda function URL: only the invocation)',
  },
  schedulerInvocation: { dollars: 1, per: 1_000_000, unit: 'invocation (EventBridge Scheduler)' },
};

/** For scale: what one Step Functions Standard state transition costs. */
export const STEP_FUNCTIONS_STANDARD_PER_MILLION_TRANSITIONS = 25;

/** One function's invocations in the measured run. */
export interface LambdaUsage {
  readonly invocations: number;
  /** Sum over invocations of the duration rounded up to the next millisecond, as Lambda bills. */
  readonly billedMs: number;
  readonly memoryMb: number;
}

/** What the measured run used, over `tasks` task runs. */
export interface MeasuredUsage {
  readonly tasks: number;
  readonly lambda: Readonly<Record<string, LambdaUsage>>;
  readonly dynamodb: { readonly readRequestUnits: number; readonly writeRequestUnits: number };
  /** Billed SQS requests (each 64 KB chunk of a request's payload is one) by kind of call. */
  readonly sqs: Readonly<Record<string, number>>;
  readonly s3: { readonly puts: number; readonly gets: number; readonly lists: number };
  readonly httpApiRequests: number;
  readonly functionUrlRequests: number;
  /** EventBridge Scheduler one-time schedules that fire (long wake timers). */
  readonly schedulerInvocations: number;
}

export interface CostItem {
  readonly item: string;
  /** Units per `per` task runs. */
  readonly quantity: number;
  readonly unit: string;
  /** Dollars per unit. */
  readonly unitPrice: number;
  /** Dollars per `per` task runs. */
  readonly dollars: number;
  readonly detail?: string;
}

export interface CostModel {
  readonly per: number;
  readonly tasks: number;
  /** Every item, largest first (zero-cost ones included, so the output says they were counted). */
  readonly items: readonly CostItem[];
  readonly total: number;
  readonly largest: readonly CostItem[];
}

const unitPrice = (price: Price) => price.dollars / price.per;

/**
 * Dollars per `per` task runs (one million unless told), item by item: DynamoDB read and write
 * request units, SQS requests, Lambda requests, Lambda compute per function (GB-seconds at the
 * function's memory, 1 GB = 1024 MB), HTTP API and function URL requests, S3 requests and
 * EventBridge Scheduler invocations.
 */
export function modelCost(
  usage: MeasuredUsage,
  prices: PriceList = US_EAST_1_PRICES,
  per = 1_000_000,
): CostModel {
  if (!(usage.tasks > 0)) throw new RangeError(`modelCost: tasks must be positive, got ${usage.tasks}`);
  const scale = per / usage.tasks;
  const item = (name: string, count: number, price: Price, detail?: string): CostItem => ({
    item: name,
    quantity: count * scale,
    unit: price.unit,
    unitPrice: unitPrice(price),
    dollars: count * scale * unitPrice(price),
    ...(detail ? { detail } : {}),
  });
  const perTask = (count: number) => round(count / usage.tasks, 3);
  const breakdown = (counts: Readonly<Record<string, number>>) =>
    Object.entries(counts)
      .filter(([, count]) => count > 0)
      .map(([name, count]) => `${name} ${perTask(count)}`)
      .join(', ');

  const functions = Object.entries(usage.lambda);
  const invocations = Object.fromEntries(functions.map(([name, fn]) => [name, fn.invocations]));
  const items: CostItem[] = [
    item('DynamoDB write request units', usage.dynamodb.writeRequestUnits, prices.dynamoWriteRequestUnit),
    item('DynamoDB read request units', usage.dynamodb.readRequestUnits, prices.dynamoReadRequestUnit),
    item(
      'SQS requests',
      sum(Object.values(usage.sqs)),
      prices.sqsRequest,
      `per task: ${breakdown(usage.sqs)}`,
    ),
    item(
      'Lambda requests',
      sum(Object.values(invocations)),
      prices.lambdaRequest,
      `per task: ${breakdown(invocations)}`,
    ),
    ...functions.map(([name, fn]) =>
      item(
        `Lambda compute: ${name}`,
        gbSeconds(fn),
        prices.lambdaGbSecond,
        `${fn.memoryMb} MB, mean ${fn.invocations > 0 ? round(fn.billedMs / fn.invocations, 1) : 0} ms billed per invocation`,
      ),
    ),
    item('API Gateway HTTP API requests (public API)', usage.httpApiRequests, prices.httpApiRequest),
    item('Function URL requests (Execution API)', usage.functionUrlRequests, prices.functionUrlRequest),
    item('S3 PUT/LIST requests (log chunks)', usage.s3.puts + usage.s3.lists, prices.s3Put),
    item('S3 GET requests (log reads)', usage.s3.gets, prices.s3Get),
    item(
      'EventBridge Scheduler invocations (timers)',
      usage.schedulerInvocations,
      prices.schedulerInvocation,
    ),
  ];
  items.sort((a, b) => b.dollars - a.dollars);
  return {
    per,
    tasks: usage.tasks,
    items,
    total: sum(items.map((entry) => entry.dollars)),
    largest: items.slice(0, 3),
  };
}

/** GB-seconds of a function's billed duration: 1,024 MB for one second is one GB-second. */
export function gbSeconds(usage: LambdaUsage): number {
  return (usage.billedMs / 1000) * (usage.memoryMb / 1024);
}

/** Billed SQS requests of one call carrying `payloadBytes`: one per 64 KB chunk, at least one. */
export function sqsBilledRequests(payloadBytes: number): number {
  return Math.max(1, Math.ceil(payloadBytes / 65_536));
}

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

export function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

import { describe, expect, it } from 'vitest';
import {
  gbSeconds,
  type MeasuredUsage,
  modelCost,
  type PriceList,
  sqsBilledRequests,
  US_EAST_1_PRICES,
} from '../../bench/aws-cost.ts';

/**
 * 200 task runs. Per million tasks (× 5,000):
 * - DynamoDB: 1,600 WRU → 8,000,000 × $0.625/M = $5.00; 2,000 RRU → 10,000,000 × $0.125/M = $1.25
 * - S3: 100 PUTs → 500,000 × $0.005/1,000 = $2.50
 * - SQS: 40 + 200 + 200 = 440 → 2,200,000 × $0.40/M = $0.88
 * - Lambda requests: 200 + 400 = 600 → 3,000,000 × $0.20/M = $0.60
 * - worker: 4,000 ms at 1,024 MB = 4 GB-s → 20,000 GB-s × $0.0000133334 = $0.266668
 * - execution API: 6,000 ms at 512 MB = 3 GB-s → 15,000 GB-s × $0.0000133334 = $0.200001
 * - HTTP API: 2 → 10,000 × $1/M = $0.01; function URL: 400 → $0
 * Total $10.706669.
 */
const usage: MeasuredUsage = {
  tasks: 200,
  lambda: {
    worker: { invocations: 200, billedMs: 4_000, memoryMb: 1_024 },
    executionApi: { invocations: 400, billedMs: 6_000, memoryMb: 512 },
  },
  dynamodb: { readRequestUnits: 2_000, writeRequestUnits: 1_600 },
  sqs: { send: 40, receive: 200, delete: 200 },
  s3: { puts: 100, gets: 0, lists: 0 },
  httpApiRequests: 2,
  functionUrlRequests: 400,
  schedulerInvocations: 0,
};

const dollarsOf = (model: ReturnType<typeof modelCost>, name: string) =>
  model.items.find((entry) => entry.item === name)?.dollars;

describe('modelCost', () => {
  it('prices each item per million task runs from the measured counts', () => {
    const model = modelCost(usage);
    expect(dollarsOf(model, 'DynamoDB write request units')).toBeCloseTo(5, 9);
    expect(dollarsOf(model, 'DynamoDB read request units')).toBeCloseTo(1.25, 9);
    expect(dollarsOf(model, 'S3 PUT/LIST requests (log chunks)')).toBeCloseTo(2.5, 9);
    expect(dollarsOf(model, 'SQS requests')).toBeCloseTo(0.88, 9);
    expect(dollarsOf(model, 'Lambda requests')).toBeCloseTo(0.6, 9);
    expect(dollarsOf(model, 'Lambda compute: worker')).toBeCloseTo(0.266668, 9);
    expect(dollarsOf(model, 'Lambda compute: executionApi')).toBeCloseTo(0.200001, 9);
    expect(dollarsOf(model, 'API Gateway HTTP API requests (public API)')).toBeCloseTo(0.01, 9);
    expect(dollarsOf(model, 'Function URL requests (Execution API)')).toBe(0);
    expect(model.total).toBeCloseTo(10.706669, 9);
  });

  it('names the three largest items, largest first', () => {
    expect(modelCost(usage).largest.map((entry) => entry.item)).toEqual([
      'DynamoDB write request units',
      'S3 PUT/LIST requests (log chunks)',
      'DynamoDB read request units',
    ]);
  });

  it('scales quantities to the requested number of task runs', () => {
    const model = modelCost(usage, US_EAST_1_PRICES, 1_000);
    const writes = model.items.find((entry) => entry.item === 'DynamoDB write request units');
    expect(writes?.quantity).toBe(8_000);
    expect(model.total).toBeCloseTo(0.010706669, 12);
  });

  it('breaks SQS and Lambda requests down per task in the detail', () => {
    const model = modelCost(usage);
    expect(model.items.find((entry) => entry.item === 'SQS requests')?.detail).toBe(
      'per task: send 0.2, receive 1, delete 1',
    );
    expect(model.items.find((entry) => entry.item === 'Lambda requests')?.detail).toBe(
      'per task: worker 1, executionApi 2',
    );
  });

  it('uses the prices it is given', () => {
    const doubled: PriceList = {
      ...US_EAST_1_PRICES,
      dynamoWriteRequestUnit: { ...US_EAST_1_PRICES.dynamoWriteRequestUnit, dollars: 1.25 },
    };
    expect(dollarsOf(modelCost(usage, doubled), 'DynamoDB write request units')).toBeCloseTo(10, 9);
  });

  it('refuses a run of no tasks', () => {
    expect(() => modelCost({ ...usage, tasks: 0 })).toThrow(RangeError);
  });
});

describe('gbSeconds', () => {
  it('is the billed seconds times the memory in GB of 1,024 MB', () => {
    expect(gbSeconds({ invocations: 3, billedMs: 1_500, memoryMb: 512 })).toBe(0.75);
  });
});

describe('sqsBilledRequests', () => {
  it('bills each 64 KB chunk of a payload as one request, and an empty call as one', () => {
    expect([0, 1, 65_536, 65_537, 262_144].map(sqsBilledRequests)).toEqual([1, 1, 1, 2, 4]);
  });
});

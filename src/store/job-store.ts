import { DeleteCommand } from '@aws-sdk/lib-dynamodb';
import type { TriggererJob } from '#core/models.ts';
import { AlreadyExistsError, ConditionFailedError, NotFoundError } from './errors.ts';
import { describeStoredItem, ExpressionBuilder, type Item, withoutKeyAttributes } from './items.ts';
import { JOB_SORT_PREFIX, JOBS_PARTITION, jobKey, unclaimedTriggersPartition } from './keys.ts';
import { queryPage } from './pagination.ts';
import type { JobStore, Page, PageRequest } from './port.ts';
import type { TableRequests } from './requests.ts';

export function jobToItem(job: TriggererJob): Item {
  // A job's queues name the index partitions it claims from, so they follow the same rule.
  for (const queue of job.queues) unclaimedTriggersPartition(queue);
  return { ...jobKey(job.jobId), ...job };
}

export function itemToJob(item: Item): TriggererJob {
  return withoutKeyAttributes(item) as unknown as TriggererJob;
}

/**
 * Triggerer liveness jobs: one small partition `JOBS` (tens of items), a heartbeat is one
 * conditional UpdateItem on the job still running (ADR.md, "Triggers and triggerer jobs").
 */
export class DynamoJobStore implements JobStore {
  readonly #table: TableRequests;

  constructor(table: TableRequests) {
    this.#table = table;
  }

  async putJob(job: TriggererJob): Promise<void> {
    if (!(await this.#table.putIfAbsent(jobToItem(job)))) {
      throw new AlreadyExistsError(`triggerer job '${job.jobId}' already exists`);
    }
  }

  async getJob(jobId: string): Promise<TriggererJob | undefined> {
    const item = await this.#table.get(jobKey(jobId));
    return item === undefined ? undefined : itemToJob(item);
  }

  async heartbeatJob(jobId: string, heartbeatAt: string, running: number): Promise<TriggererJob> {
    const expression = new ExpressionBuilder();
    const item = await this.#table.conditionalUpdate(
      { Key: jobKey(jobId), UpdateExpression: expression.update({ heartbeatAt, running }) },
      expression,
      [expression.exists('pk'), expression.equals('state', 'running')],
      (error) =>
        new ConditionFailedError(
          `triggerer job '${jobId}' did not record a heartbeat: it does not exist or is not running` +
            describeStoredItem(error),
          { cause: error },
        ),
    );
    return itemToJob(item);
  }

  async completeJob(jobId: string, endedAt: string, expectedHeartbeatAt?: string): Promise<TriggererJob> {
    const key = jobKey(jobId);
    const expression = new ExpressionBuilder();
    const conditions = [expression.exists('pk'), expression.equals('state', 'running')];
    if (expectedHeartbeatAt !== undefined) {
      // A heartbeat since the read (the job lives) refuses it: ConditionFailedError.
      return itemToJob(
        await this.#table.conditionalUpdate(
          { Key: key, UpdateExpression: expression.update({ state: 'complete', endedAt }) },
          expression,
          [...conditions, expression.equals('heartbeatAt', expectedHeartbeatAt)],
          (error) =>
            new ConditionFailedError(`triggerer job '${jobId}' heartbeat since it was read`, {
              cause: error,
            }),
        ),
      );
    }
    try {
      const item = await this.#table.conditionalUpdate(
        { Key: key, UpdateExpression: expression.update({ state: 'complete', endedAt }) },
        expression,
        conditions,
        (error) => new ConditionFailedError(`triggerer job '${jobId}' is not running`, { cause: error }),
      );
      return itemToJob(item);
    } catch (error) {
      if (!(error instanceof ConditionFailedError)) throw error;
    }
    // Complete already (a repeat keeps the first end time), or gone.
    const stored = await this.#table.get(key);
    if (stored === undefined) throw new NotFoundError(`triggerer job '${jobId}' does not exist`);
    return itemToJob(stored);
  }

  async listJobs(page: PageRequest): Promise<Page<TriggererJob>> {
    const result = await queryPage(
      this.#table.client,
      this.#table.partitionQuery(new ExpressionBuilder(), JOBS_PARTITION, JOB_SORT_PREFIX),
      page,
    );
    return { ...result, items: result.items.map(itemToJob) };
  }

  async deleteJob(jobId: string): Promise<void> {
    await this.#table.client.send(
      new DeleteCommand({ TableName: this.#table.tableName, Key: jobKey(jobId) }),
    );
  }
}

import { type DynamoDBDocumentClient, type QueryCommandInput, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import {
  type DagRun,
  type DagRunKey,
  formatTaskInstanceKey,
  type TaskInstance,
  type TaskInstanceKey,
} from '#core/models.ts';
import { type SerializedDag, serializedDagSchema } from '#core/serialized-dag.ts';
import type { DagRunState } from '#core/states.ts';
import { batchWriteAll, forEachConcurrently, type WriteRequest } from './batch.ts';
import {
  AlreadyExistsError,
  ConditionFailedError,
  ItemTooLargeError,
  NotFoundError,
  StoreError,
} from './errors.ts';
import {
  dagRunToItem,
  describeStoredItem,
  ExpressionBuilder,
  type Item,
  importErrorToItem,
  itemToDag,
  itemToDagRun,
  itemToImportError,
  itemToTaskInstance,
  taskInstanceToItem,
  upsertDagUpdate,
} from './items.ts';
import {
  ACTIVE_RUNS_INDEX,
  ACTIVE_RUNS_PARTITION,
  activeRunKey,
  activeRunPrefix,
  DAG_SORT_PREFIX,
  DAGS_PARTITION,
  dagKey,
  dagRunKey,
  GSI2_PARTITION_KEY,
  GSI2_SORT_KEY,
  IMPORT_ERROR_SORT_PREFIX,
  importErrorKey,
  isActiveDagRunState,
  RUN_SORT_KEY,
  RUNS_BY_LOGICAL_DATE_INDEX,
  runPartition,
  runsByLogicalDateKey,
  serializedDagKey,
  taskInstanceKey,
  xcomKey,
  xcomPartition,
  xcomTaskInstancePrefix,
} from './keys.ts';
import { countAll, queryAllPages, queryPage } from './pagination.ts';
import type {
  DagRecord,
  DagRecordChanges,
  DagRunChanges,
  ImportError,
  Page,
  PageRequest,
  RunSnapshot,
  Store,
  TaskInstanceChanges,
  TaskInstanceExpectation,
  XComKey,
} from './port.ts';
import { TableRequests } from './requests.ts';

/** Largest XCom value or serialized DAG this adapter stores: DynamoDB items stop at 400 KB, keys included. */
export const MAX_VALUE_BYTES = 350_000;
/** Conditional puts of a repair in flight at once. */
const CREATE_MISSING_CONCURRENCY = 8;

function asList<T extends string>(expected: T | readonly T[]): readonly T[] {
  return typeof expected === 'string' ? [expected] : expected;
}

/** The Store port over one DynamoDB table; see ADR.md for the key design and its invariants. */
export class DynamoStore implements Store {
  readonly #client: DynamoDBDocumentClient;
  readonly #tableName: string;
  readonly #table: TableRequests;

  constructor(options: { client: DynamoDBDocumentClient; tableName: string }) {
    this.#client = options.client;
    this.#tableName = options.tableName;
    this.#table = new TableRequests(options.client, options.tableName);
  }

  async putSerializedDag(versionHash: string, dag: SerializedDag): Promise<void> {
    const serialized = JSON.stringify(dag);
    const bytes = Buffer.byteLength(serialized, 'utf8');
    if (bytes > MAX_VALUE_BYTES) {
      throw new ItemTooLargeError(
        `serialized DAG ${dag.dagId} (version ${versionHash}) is ${bytes} bytes, over the store limit of ${MAX_VALUE_BYTES} bytes`,
      );
    }
    const item = { ...serializedDagKey(dag.dagId, versionHash), dagId: dag.dagId, versionHash, serialized };
    // Versions are immutable and named by their hash: a second put of the same hash is the same content.
    await this.#table.putIfAbsent(item);
  }

  async getSerializedDag(dagId: string, versionHash: string): Promise<SerializedDag | undefined> {
    const item = await this.#table.get(serializedDagKey(dagId, versionHash));
    return item === undefined ? undefined : serializedDagSchema.parse(JSON.parse(String(item.serialized)));
  }

  async upsertDag(
    record: Omit<DagRecord, 'revision' | 'isPaused' | 'nextRunAt'> & {
      isPaused: boolean;
      nextRunAt: string | null;
    },
  ): Promise<DagRecord> {
    const expression = new ExpressionBuilder();
    const updateExpression = upsertDagUpdate(expression, record);
    const output = await this.#client.send(
      new UpdateCommand({
        TableName: this.#tableName,
        Key: dagKey(record.dagId),
        UpdateExpression: updateExpression,
        ...expression.attributes(),
        ReturnValues: 'ALL_NEW',
      }),
    );
    return itemToDag(output.Attributes ?? {});
  }

  async getDag(dagId: string): Promise<DagRecord | undefined> {
    const item = await this.#table.get(dagKey(dagId));
    return item === undefined ? undefined : itemToDag(item);
  }

  async listDags(page: PageRequest): Promise<Page<DagRecord>> {
    const result = await queryPage(
      this.#client,
      this.#table.partitionQuery(new ExpressionBuilder(), DAGS_PARTITION, DAG_SORT_PREFIX),
      page,
    );
    return { ...result, items: result.items.map(itemToDag) };
  }

  async countDags(): Promise<number> {
    return countAll(
      this.#client,
      this.#table.partitionQuery(new ExpressionBuilder(), DAGS_PARTITION, DAG_SORT_PREFIX),
    );
  }

  async updateDag(dagId: string, changes: DagRecordChanges, expectedRevision?: number): Promise<DagRecord> {
    const expression = new ExpressionBuilder();
    const conditions = [expression.exists('pk')];
    if (expectedRevision !== undefined) conditions.push(expression.equals('revision', expectedRevision));
    const item = await this.#table.conditionalUpdate(
      { Key: dagKey(dagId), UpdateExpression: expression.update(changes) },
      expression,
      conditions,
      (error) =>
        expectedRevision === undefined
          ? new NotFoundError(`DAG ${dagId} does not exist`, { cause: error })
          : new ConditionFailedError(
              `DAG ${dagId} was not updated: it does not exist or its revision is not ${expectedRevision}${describeStoredItem(error)}`,
              { cause: error },
            ),
    );
    return itemToDag(item);
  }

  async replaceImportErrors(errors: ImportError[]): Promise<void> {
    const wanted = new Map(errors.map((error) => [error.fileloc, error]));
    const requests: WriteRequest[] = [];
    for (const stored of await this.listImportErrors()) {
      const replacement = wanted.get(stored.fileloc);
      if (replacement === undefined) {
        requests.push({ DeleteRequest: { Key: importErrorKey(stored.fileloc) } });
      } else if (replacement.message === stored.message && replacement.timestamp === stored.timestamp) {
        // Unchanged errors are not rewritten: the DAG processor calls this on every parse loop.
        wanted.delete(stored.fileloc);
      }
    }
    for (const error of wanted.values()) requests.push({ PutRequest: { Item: importErrorToItem(error) } });
    await batchWriteAll(this.#client, this.#tableName, requests);
  }

  async listImportErrors(): Promise<ImportError[]> {
    const errors: ImportError[] = [];
    for await (const items of queryAllPages(this.#client, {
      ...this.#table.partitionQuery(new ExpressionBuilder(), DAGS_PARTITION, IMPORT_ERROR_SORT_PREFIX),
      ConsistentRead: true,
    })) {
      errors.push(...items.map(itemToImportError));
    }
    return errors;
  }

  async createDagRun(run: DagRun, taskInstances: TaskInstance[]): Promise<void> {
    for (const ti of taskInstances) {
      if (ti.dagId !== run.dagId || ti.runId !== run.runId) {
        throw new StoreError(
          `task instance ${formatTaskInstanceKey(ti)} does not belong to DAG run ${run.dagId}/${run.runId}`,
        );
      }
    }
    if (!(await this.#table.putIfAbsent(dagRunToItem(run)))) {
      throw new AlreadyExistsError(`DAG run ${run.dagId}/${run.runId} already exists`);
    }
    // Not atomic with the run: a crash here leaves a run with missing TIs, which the scheduler
    // repairs with createMissingTaskInstances (see ADR.md).
    const requests = taskInstances.map(
      (ti): WriteRequest => ({ PutRequest: { Item: taskInstanceToItem(ti) } }),
    );
    await batchWriteAll(this.#client, this.#tableName, requests);
  }

  async getDagRun(key: DagRunKey): Promise<DagRun | undefined> {
    const item = await this.#table.get(dagRunKey(key));
    return item === undefined ? undefined : itemToDagRun(item);
  }

  async listDagRuns(dagId: string, page: PageRequest): Promise<Page<DagRun>> {
    const result = await queryPage(this.#client, this.#runsOfDag(dagId), page);
    return { ...result, items: result.items.map(itemToDagRun) };
  }

  async countDagRuns(dagId: string): Promise<number> {
    return countAll(this.#client, this.#runsOfDag(dagId));
  }

  /** The runs of a DAG on GSI1, newest logical date first. */
  #runsOfDag(dagId: string): QueryCommandInput {
    const expression = new ExpressionBuilder();
    const { gsi1pk } = runsByLogicalDateKey({ dagId, runId: '', logicalDate: '' });
    return {
      TableName: this.#tableName,
      IndexName: RUNS_BY_LOGICAL_DATE_INDEX,
      KeyConditionExpression: expression.equals('gsi1pk', gsi1pk),
      ScanIndexForward: false,
      ...expression.attributes(),
    };
  }

  async listActiveDagRuns(
    page: PageRequest & { dagId?: string },
  ): Promise<Page<DagRunKey & { state: DagRunState }>> {
    const expression = new ExpressionBuilder();
    let condition = expression.equals(GSI2_PARTITION_KEY, ACTIVE_RUNS_PARTITION);
    if (page.dagId !== undefined) {
      condition += ` AND begins_with(${expression.name(GSI2_SORT_KEY)}, ${expression.value(activeRunPrefix(page.dagId))})`;
    }
    const result = await queryPage(
      this.#client,
      {
        TableName: this.#tableName,
        IndexName: ACTIVE_RUNS_INDEX,
        KeyConditionExpression: condition,
        ...expression.attributes(),
      },
      page,
    );
    const items = result.items.map((item) => ({
      dagId: String(item.dagId),
      runId: String(item.runId),
      state: item.state as DagRunState,
    }));
    return { ...result, items };
  }

  async transitionDagRun(
    key: DagRunKey,
    expected: DagRunState | readonly DagRunState[],
    changes: DagRunChanges,
  ): Promise<DagRun> {
    const expectedStates = asList(expected);
    if (expectedStates.length === 0)
      throw new StoreError('transitionDagRun needs at least one expected state');
    const expression = new ExpressionBuilder();
    // The active-runs index is sparse: a run is in it exactly while queued or running.
    let indexSet: Item = {};
    let indexRemove: string[] = [];
    if (changes.state !== undefined) {
      if (isActiveDagRunState(changes.state)) indexSet = activeRunKey(key);
      else indexRemove = [GSI2_PARTITION_KEY, GSI2_SORT_KEY];
    }
    const item = await this.#table.conditionalUpdate(
      { Key: dagRunKey(key), UpdateExpression: expression.update(changes, indexSet, indexRemove) },
      expression,
      [expression.exists('pk'), expression.oneOf('state', expectedStates)],
      (error) =>
        new ConditionFailedError(
          `DAG run ${key.dagId}/${key.runId} was not updated: it does not exist or is not in state ` +
            `${expectedStates.join(' | ')}${describeStoredItem(error)}`,
          { cause: error },
        ),
    );
    return itemToDagRun(item);
  }

  async getRunSnapshot(key: DagRunKey): Promise<RunSnapshot | undefined> {
    let run: DagRun | undefined;
    const taskInstances: TaskInstance[] = [];
    // Mapped TIs live in shard partitions and are not part of the snapshot yet (see ADR.md).
    for await (const items of queryAllPages(this.#client, {
      ...this.#table.partitionQuery(new ExpressionBuilder(), runPartition(key)),
      ConsistentRead: true,
    })) {
      for (const item of items) {
        if (item.sk === RUN_SORT_KEY) run = itemToDagRun(item);
        else taskInstances.push(itemToTaskInstance(item));
      }
    }
    return run === undefined ? undefined : { run, taskInstances };
  }

  async getTaskInstance(key: TaskInstanceKey): Promise<TaskInstance | undefined> {
    const item = await this.#table.get(taskInstanceKey(key));
    return item === undefined ? undefined : itemToTaskInstance(item);
  }

  async createMissingTaskInstances(taskInstances: TaskInstance[]): Promise<void> {
    await forEachConcurrently(taskInstances, CREATE_MISSING_CONCURRENCY, async (ti) => {
      await this.#table.putIfAbsent(taskInstanceToItem(ti));
    });
  }

  async transitionTaskInstance(
    key: TaskInstanceKey,
    expected: TaskInstanceExpectation,
    changes: TaskInstanceChanges,
  ): Promise<TaskInstance> {
    const expectedStates = asList(expected.state);
    if (expectedStates.length === 0) {
      throw new StoreError('transitionTaskInstance needs at least one expected state');
    }
    const expression = new ExpressionBuilder();
    const conditions = [expression.exists('pk'), expression.oneOf('state', expectedStates)];
    if (expected.tryNumber !== undefined) conditions.push(expression.equals('tryNumber', expected.tryNumber));
    const expectedTry = expected.tryNumber === undefined ? '' : ` at try ${expected.tryNumber}`;
    const item = await this.#table.conditionalUpdate(
      { Key: taskInstanceKey(key), UpdateExpression: expression.update(changes) },
      expression,
      conditions,
      (error) =>
        new ConditionFailedError(
          `task instance ${formatTaskInstanceKey(key)} was not updated: it does not exist or is not in state ` +
            `${expectedStates.join(' | ')}${expectedTry}${describeStoredItem(error)}`,
          { cause: error },
        ),
    );
    return itemToTaskInstance(item);
  }

  async putXCom(key: XComKey, value: string): Promise<void> {
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > MAX_VALUE_BYTES) {
      throw new ItemTooLargeError(
        `XCom '${key.key}' of task instance ${formatTaskInstanceKey(key)} is ${bytes} bytes, ` +
          `over the store limit of ${MAX_VALUE_BYTES} bytes`,
      );
    }
    const { dagId, runId, taskId, mapIndex } = key;
    await this.#table.put({ ...xcomKey(key), dagId, runId, taskId, mapIndex, key: key.key, value });
  }

  async getXCom(key: XComKey): Promise<string | undefined> {
    const item = await this.#table.get(xcomKey(key));
    return item === undefined ? undefined : String(item.value);
  }

  async deleteXComs(ti: TaskInstanceKey): Promise<void> {
    const query = {
      ...this.#table.partitionQuery(new ExpressionBuilder(), xcomPartition(ti), xcomTaskInstancePrefix(ti)),
      ProjectionExpression: 'pk, sk',
    };
    // Page by page, so a task with many XComs (streamed pages) never sits in memory at once.
    for await (const items of queryAllPages(this.#client, { ...query, ConsistentRead: true })) {
      const requests = items.map(
        (item): WriteRequest => ({ DeleteRequest: { Key: { pk: item.pk, sk: item.sk } } }),
      );
      await batchWriteAll(this.#client, this.#tableName, requests);
    }
  }
}

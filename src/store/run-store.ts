import type { QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import { type DagRun, type DagRunKey, formatTaskInstanceKey, type TaskInstance } from '#core/models.ts';
import { type RunSummary, type SummaryEntry, summaryOf } from '#core/run-summary.ts';
import type { DagRunState } from '#core/states.ts';
import { batchGetAll } from './batch.ts';
import { type DynamoDagStore, itemToSerializedDag } from './dag-store.ts';
import {
  AlreadyExistsError,
  ConditionFailedError,
  ItemTooLargeError,
  NotFoundError,
  StoreError,
} from './errors.ts';
import { DYNAMODB_ITEM_MAX_BYTES, itemSizeBytes } from './item-size.ts';
import {
  dagRunToItem,
  describeStoredItem,
  ExpressionBuilder,
  emptySlotPool,
  type Item,
  itemToDagRun,
  itemToSlotPool,
  itemToTaskInstance,
} from './items.ts';
import {
  ACTIVE_RUNS_INDEX,
  ACTIVE_RUNS_PARTITION,
  activeRunKey,
  activeRunPrefix,
  dagRunKey,
  GSI2_PARTITION_KEY,
  GSI2_SORT_KEY,
  isActiveDagRunState,
  owedIndexKey,
  owedSince,
  RUN_HEAD_SORT_PREFIX,
  RUN_SLOTS_SORT_KEY,
  RUN_SORT_KEY,
  RUN_SUMMARY_SORT_KEY,
  RUNS_BY_LOGICAL_DATE_INDEX,
  runPartition,
  runsByLogicalDateKey,
  serializedDagKey,
} from './keys.ts';
import { queryAllPages, queryPage } from './pagination.ts';
import type {
  DagRunChanges,
  DagRunExpectation,
  DagVersionKey,
  ItemRead,
  Page,
  PageRequest,
  RunHead,
  RunSnapshot,
  RunStore,
  RunsWithVersions,
  RunTransitionOptions,
  SlotPoolState,
} from './port.ts';
import type { TableRequests } from './requests.ts';
import { DynamoRunSummaryStore, itemToRunSummary } from './run-summary-store.ts';
import { asList, type DynamoTaskInstanceStore } from './task-instance-store.ts';

function expectationOf(expected: DagRunExpectation): {
  states: readonly DagRunState[];
  clearCount: number | undefined;
} {
  if (typeof expected === 'string' || Array.isArray(expected)) {
    return { states: asList(expected as DagRunState | readonly DagRunState[]), clearCount: undefined };
  }
  const { state, clearCount } = expected as Exclude<DagRunExpectation, DagRunState | readonly DagRunState[]>;
  return { states: asList(state), clearCount };
}

/** DAG runs: one item per run in its own partition, listed through GSI1 (by date) and GSI2 (active). */
export class DynamoRunStore implements RunStore {
  readonly #table: TableRequests;
  readonly #dags: DynamoDagStore;
  readonly #taskInstances: DynamoTaskInstanceStore;

  readonly #summaries: DynamoRunSummaryStore;

  constructor(table: TableRequests, dags: DynamoDagStore, taskInstances: DynamoTaskInstanceStore) {
    this.#table = table;
    this.#summaries = new DynamoRunSummaryStore(table);
    this.#dags = dags;
    this.#taskInstances = taskInstances;
  }

  async createDagRun(run: DagRun, taskInstances: TaskInstance[]): Promise<void> {
    for (const ti of taskInstances) {
      if (ti.dagId !== run.dagId || ti.runId !== run.runId) {
        throw new StoreError(
          `task instance ${formatTaskInstanceKey(ti)} does not belong to DAG run ${run.dagId}/${run.runId}`,
        );
      }
    }
    const item = { ...dagRunToItem(run), ...this.#table.expiry() };
    const bytes = itemSizeBytes(item);
    if (bytes > DYNAMODB_ITEM_MAX_BYTES) {
      const confBytes = Buffer.byteLength(JSON.stringify(run.conf), 'utf8');
      throw new ItemTooLargeError(
        `the conf of DAG run ${run.dagId}/${run.runId} (${confBytes} bytes of JSON) makes the run item ` +
          `${bytes} bytes, over DynamoDB's item limit of ${DYNAMODB_ITEM_MAX_BYTES} bytes`,
      );
    }
    if (!(await this.#table.putIfAbsent(item))) {
      throw new AlreadyExistsError(`DAG run ${run.dagId}/${run.runId} already exists`);
    }
    // Not atomic with the run: a crash here leaves a run with missing TIs (repaired by the
    // scheduler with createMissingTaskInstances) or uncounted (see ADR.md). The TIs are
    // conditional puts, so a scheduler that repaired and queued one first keeps its TI.
    // The summary only once every TI is written: a summary entry of a TI whose put is still in
    // flight would let a pass decide on a TI that does not exist yet. A run left without one is
    // read whole by its next pass, which writes it; a DAG whose summary does not fit one item runs
    // without one (every pass reads the run whole).
    await Promise.all([
      this.#dags.incrementRunCount(run.dagId),
      this.#taskInstances.createMissingTaskInstances(taskInstances),
    ]);
    await this.#summaries
      .putRunSummary(run, summaryOf(run.clearCount, taskInstances))
      .catch((error: unknown) => {
        if (!(error instanceof ItemTooLargeError)) throw error;
      });
  }

  async getDagRun(key: DagRunKey): Promise<DagRun | undefined> {
    const item = await this.#table.get(dagRunKey(key));
    return item === undefined ? undefined : itemToDagRun(item);
  }

  async getDagRunsWithDagVersions(
    runs: readonly DagRunKey[],
    versions: readonly DagVersionKey[],
  ): Promise<RunsWithVersions> {
    const runKeys = runs.map(dagRunKey);
    const versionKeys = versions.map((version) => serializedDagKey(version.dagId, version.versionHash));
    const items = await batchGetAll(this.#table.client, this.#table.tableName, [...runKeys, ...versionKeys]);
    const byKey = new Map(items.map((item) => [`${item.pk}\u0000${item.sk}`, item]));
    const found = (wanted: Item) => byKey.get(`${wanted.pk}\u0000${wanted.sk}`);
    return {
      runs: runs.flatMap((run, index) => {
        const item = found(runKeys[index] as Item);
        const key = { dagId: run.dagId, runId: run.runId };
        return item ? [decoded(key, () => itemToDagRun(item))] : [];
      }),
      versions: versions.flatMap((version, index) => {
        const item = found(versionKeys[index] as Item);
        const key = { dagId: version.dagId, versionHash: version.versionHash };
        return item ? [decoded(key, () => itemToSerializedDag(item))] : [];
      }),
    };
  }

  async getRunSnapshot(key: DagRunKey): Promise<RunSnapshot | undefined> {
    return this.#readRunPartition(key);
  }

  async getRunHead(key: DagRunKey): Promise<RunHead | undefined> {
    const snapshot = await this.#readRunPartition(key, RUN_HEAD_SORT_PREFIX);
    if (!snapshot) return undefined;
    const { taskInstances: _none, ...head } = snapshot;
    return head;
  }

  putRunSummary(key: DagRunKey, summary: RunSummary): Promise<boolean> {
    return this.#summaries.putRunSummary(key, summary);
  }

  updateRunSummary(
    key: DagRunKey,
    read: { clearCount: number; version: number },
    entries: Record<string, SummaryEntry>,
  ): Promise<boolean> {
    return this.#summaries.updateRunSummary(key, read, entries);
  }

  /** The run partition, or only its head items (`#RUN`, `#SLOTS`, `#SUMMARY`) with the prefix. */
  async #readRunPartition(key: DagRunKey, sortPrefix?: string): Promise<RunSnapshot | undefined> {
    let run: DagRun | undefined;
    let taskSlots: SlotPoolState = emptySlotPool();
    let summary: RunSummary | undefined;
    const taskInstances: TaskInstance[] = [];
    // Mapped TIs live in shard partitions and are not part of the snapshot yet (see ADR.md).
    for await (const items of queryAllPages(this.#table.client, {
      ...this.#table.partitionQuery(new ExpressionBuilder(), runPartition(key), sortPrefix),
      ConsistentRead: true,
    })) {
      for (const item of items) {
        if (item.sk === RUN_SORT_KEY) run = itemToDagRun(item);
        else if (item.sk === RUN_SLOTS_SORT_KEY)
          taskSlots = itemToSlotPool(item, { kind: 'run_tasks', dagId: key.dagId, runId: key.runId });
        else if (item.sk === RUN_SUMMARY_SORT_KEY) summary = itemToRunSummary(item);
        else taskInstances.push(itemToTaskInstance(item));
      }
    }
    if (run === undefined) return undefined;
    return { run, taskInstances, taskSlots, ...(summary ? { summary } : {}) };
  }

  async listDagRuns(dagId: string, page: PageRequest): Promise<Page<DagRun>> {
    const result = await queryPage(this.#table.client, this.#runsOfDag(dagId), page);
    return { ...result, items: result.items.map(itemToDagRun) };
  }

  /** One GetItem of the DAG record, whatever the number of runs. */
  async countDagRuns(dagId: string): Promise<number> {
    return (await this.#dags.getDag(dagId))?.runCount ?? 0;
  }

  /** The runs of a DAG on GSI1, newest logical date first. */
  #runsOfDag(dagId: string): QueryCommandInput {
    const expression = new ExpressionBuilder();
    const { gsi1pk } = runsByLogicalDateKey({ dagId, runId: '', logicalDate: '' });
    return {
      TableName: this.#table.tableName,
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
      this.#table.client,
      {
        TableName: this.#table.tableName,
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
    expected: DagRunExpectation,
    changes: DagRunChanges,
    options: RunTransitionOptions = {},
  ): Promise<DagRun> {
    const { states, clearCount } = expectationOf(expected);
    if (states.length === 0) throw new StoreError('transitionDagRun needs at least one expected state');
    if ((changes.state === 'success' || changes.state === 'failed') && options.owed === undefined) {
      throw new StoreError(
        `DAG run ${key.dagId}/${key.runId} cannot finish (${changes.state}) without stating the callbacks it owes (owed: [] for none)`,
      );
    }
    const expression = new ExpressionBuilder();
    const owes = options.owed !== undefined && options.owed.length > 0;
    // The active-runs index is sparse: a run is in it exactly while queued or running. A finished
    // run that owes callbacks moves to the owed index instead, until they are settled.
    let indexSet: Item = {};
    let indexRemove: string[] = [];
    if (changes.state !== undefined) {
      if (isActiveDagRunState(changes.state)) indexSet = activeRunKey(key);
      else if (owes) {
        indexSet = owedIndexKey(
          dagRunKey(key),
          owedSince(options.owed ?? [], new Date(this.#table.now()).toISOString()),
        );
      } else indexRemove = [GSI2_PARTITION_KEY, GSI2_SORT_KEY];
    }
    const conditions = [expression.exists('pk'), expression.oneOf('state', states)];
    if (clearCount !== undefined) {
      const matches = expression.equals('clearCount', clearCount);
      // Runs written before clear counts existed have none, and read back as 0.
      conditions.push(
        clearCount === 0 ? `(attribute_not_exists(${expression.name('clearCount')}) OR ${matches})` : matches,
      );
    }
    const expectedClears = clearCount === undefined ? '' : ` with clear count ${clearCount}`;
    // A deadline is decided once: its state is set only while it is still pending.
    const deadlineSets: string[] = [];
    for (const { position, state } of options.deadlines ?? []) {
      if (!Number.isSafeInteger(position) || position < 0) {
        throw new StoreError(`DAG run ${key.dagId}/${key.runId}: no deadline at position ${position}`);
      }
      const path = `${expression.name('deadlines')}[${position}].${expression.name('state')}`;
      deadlineSets.push(`${path} = ${expression.value(state)}`);
      conditions.push(`${path} = ${expression.value('pending')}`);
    }
    const pendingDeadlines =
      deadlineSets.length === 0
        ? ''
        : ` and deadline${deadlineSets.length > 1 ? 's' : ''} at ${(options.deadlines ?? []).map((d) => d.position).join(', ')} pending`;
    const item = await this.#table.conditionalUpdate(
      {
        Key: dagRunKey(key),
        UpdateExpression: expression.update(
          changes,
          { ...indexSet, ...this.#table.expiry() },
          indexRemove,
          expression.addOwed(options.owed),
          deadlineSets,
        ),
      },
      expression,
      conditions,
      (error) =>
        new ConditionFailedError(
          `DAG run ${key.dagId}/${key.runId} was not updated: it does not exist or is not in state ` +
            `${states.join(' | ')}${expectedClears}${pendingDeadlines}${describeStoredItem(error)}`,
          { cause: error },
        ),
    );
    return itemToDagRun(item);
  }

  async markRunCleared(key: DagRunKey, phase: 'begin' | 'end'): Promise<DagRun> {
    const expression = new ExpressionBuilder();
    const revision = expression.name('revision');
    const stamps = Object.entries({
      ...this.#table.expiry(),
      ...(phase === 'begin' ? { clearBegunAt: new Date(this.#table.now()).toISOString() } : {}),
    }).map(([name, value]) => `, ${expression.assign(name, value)}`);
    const item = await this.#table.conditionalUpdate(
      {
        Key: dagRunKey(key),
        UpdateExpression:
          `SET ${revision} = ${revision} + ${expression.value(1)}${stamps.join('')} ` +
          `ADD ${expression.name('clearCount')} ${expression.value(1)}, ` +
          `${expression.name('clearsInProgress')} ${expression.value(phase === 'begin' ? 1 : -1)}`,
      },
      expression,
      [expression.exists('pk')],
      (error) => new NotFoundError(`DAG run ${key.dagId}/${key.runId} does not exist`, { cause: error }),
    );
    return itemToDagRun(item);
  }
}

/** An item of a read of several, decoded: a failure stays with its item. */
function decoded<Key extends object, Value>(key: Key, decode: () => Value): ItemRead<Key, Value> {
  try {
    return { ...key, value: decode() };
  } catch (error) {
    return { ...key, error: error instanceof Error ? error : new Error(String(error)) };
  }
}

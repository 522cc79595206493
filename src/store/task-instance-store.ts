import { formatTaskInstanceKey, type TaskInstance, type TaskInstanceKey } from '#core/models.ts';
import { canTransition, type TaskInstanceState } from '#core/states.ts';
import { batchGetAll, forEachConcurrently } from './batch.ts';
import { ConditionFailedError, StoreError } from './errors.ts';
import { describeStoredItem, ExpressionBuilder, itemToTaskInstance, taskInstanceToItem } from './items.ts';
import { owedIndexKey, owedSince, taskInstanceKey } from './keys.ts';
import type {
  TaskInstanceChanges,
  TaskInstanceExpectation,
  TaskInstanceStore,
  TransitionOptions,
} from './port.ts';
import type { TableRequests } from './requests.ts';

/**
 * Conditional puts of new task instances in flight at once: enough to create a few hundred TIs
 * quickly, few enough not to throttle the run partition (~1,000 writes/s).
 */
export const CREATE_TASK_INSTANCES_CONCURRENCY = 16;

export function asList<T extends string>(expected: T | readonly T[]): readonly T[] {
  return typeof expected === 'string' ? [expected] : expected;
}

/**
 * Refuses a change of state the transition table does not allow from one of the expected
 * states, before anything is sent. Keeping a state (`queued` → `queued` with a new queue time)
 * is no transition; a reset (clear) may send any state back to `none`.
 */
export function assertAllowedTransitions(
  key: TaskInstanceKey,
  expectedStates: readonly TaskInstanceState[],
  target: TaskInstanceState | undefined,
  options: TransitionOptions,
): void {
  if (target === undefined) return;
  if (options.reset === true && target === 'none') return;
  for (const from of expectedStates) {
    if (from !== target && !canTransition(from, target)) {
      throw new StoreError(
        `task instance ${formatTaskInstanceKey(key)} cannot move from ${from} to ${target}: ` +
          `not an allowed transition${target === 'none' ? ' (only a clear resets a task instance to none)' : ''}`,
      );
    }
  }
}

/** Changes into these states can owe callbacks: the caller must say what they owe (`[]` for nothing). */
const OWING_STATES: ReadonlySet<TaskInstanceState> = new Set([
  'success',
  'failed',
  'up_for_retry',
  'skipped',
]);

/**
 * Refuses, before anything is sent, a change that could owe callbacks and does not say what it
 * owes: a task instance ending (success, failed, up_for_retry, skipped) or starting a try
 * (queued → running). A clear owes nothing and needs not say so.
 */
export function assertOwedStated(
  key: TaskInstanceKey,
  expectedStates: readonly TaskInstanceState[],
  target: TaskInstanceState | undefined,
  options: TransitionOptions,
): void {
  if (target === undefined || options.owed !== undefined || options.reset === true) return;
  if (OWING_STATES.has(target) || (target === 'running' && expectedStates.includes('queued'))) {
    throw new StoreError(
      `task instance ${formatTaskInstanceKey(key)} cannot move to ${target} without stating the callbacks it owes (owed: [] for none)`,
    );
  }
}

/** Task instances: unmapped ones in the run partition, mapped ones in 32 shards per task (ADR.md). */
export class DynamoTaskInstanceStore implements TaskInstanceStore {
  readonly #table: TableRequests;

  constructor(table: TableRequests) {
    this.#table = table;
  }

  async getTaskInstance(key: TaskInstanceKey): Promise<TaskInstance | undefined> {
    const item = await this.#table.get(taskInstanceKey(key));
    return item === undefined ? undefined : itemToTaskInstance(item);
  }

  async getTaskInstances(keys: readonly TaskInstanceKey[]): Promise<TaskInstance[]> {
    const items = await batchGetAll(
      this.#table.client,
      this.#table.tableName,
      keys.map((key) => taskInstanceKey(key)),
    );
    return items.map(itemToTaskInstance);
  }

  /**
   * Conditional puts, never BatchWrite: a late write (a slow run creation, a repair) must not
   * reset a TI that a scheduler has queued in the meantime.
   */
  async createMissingTaskInstances(taskInstances: TaskInstance[]): Promise<void> {
    const expiry = this.#table.expiry();
    const items = taskInstances.map((ti) => ({ ...taskInstanceToItem(ti), ...expiry }));
    await forEachConcurrently(items, CREATE_TASK_INSTANCES_CONCURRENCY, async (item) => {
      await this.#table.putIfAbsent(item);
    });
  }

  async transitionTaskInstance(
    key: TaskInstanceKey,
    expected: TaskInstanceExpectation,
    changes: TaskInstanceChanges,
    options: TransitionOptions = {},
  ): Promise<TaskInstance> {
    const expectedStates = asList(expected.state);
    if (expectedStates.length === 0) {
      throw new StoreError('transitionTaskInstance needs at least one expected state');
    }
    assertAllowedTransitions(key, expectedStates, changes.state, options);
    assertOwedStated(key, expectedStates, changes.state, options);
    const expression = new ExpressionBuilder();
    const itemKey = taskInstanceKey(key);
    const owes = options.owed !== undefined && options.owed.length > 0;
    // An owner with owed callbacks is in the owed index until they are settled (the tick's backstop).
    const extraSet = {
      ...this.#table.expiry(),
      ...(owes
        ? owedIndexKey(itemKey, owedSince(options.owed ?? [], new Date(this.#table.now()).toISOString()))
        : {}),
    };
    const conditions = [expression.exists('pk'), expression.oneOf('state', expectedStates)];
    if (expected.tryNumber !== undefined) conditions.push(expression.equals('tryNumber', expected.tryNumber));
    if (expected.revision !== undefined) conditions.push(expression.equals('revision', expected.revision));
    if (expected.deferralSeq !== undefined)
      conditions.push(expression.equals('deferralSeq', expected.deferralSeq));
    if (expected.reportIdNot !== undefined) {
      const reportId = expression.name('reportId');
      conditions.push(
        `(attribute_not_exists(${reportId}) OR attribute_type(${reportId}, ${expression.value('NULL')}) OR ${reportId} <> ${expression.value(expected.reportIdNot)})`,
      );
    }
    const expectedTry = expected.tryNumber === undefined ? '' : ` at try ${expected.tryNumber}`;
    const expectedRevision =
      (expected.revision === undefined ? '' : ` at revision ${expected.revision}`) +
      (expected.deferralSeq === undefined ? '' : ` at deferral ${expected.deferralSeq}`);
    const item = await this.#table.conditionalUpdate(
      {
        Key: itemKey,
        UpdateExpression: expression.update(changes, extraSet, [], expression.addOwed(options.owed)),
      },
      expression,
      conditions,
      (error) =>
        new ConditionFailedError(
          `task instance ${formatTaskInstanceKey(key)} was not updated: it does not exist or is not in state ` +
            `${expectedStates.join(' | ')}${expectedTry}${expectedRevision}${describeStoredItem(error)}`,
          { cause: error },
        ),
    );
    return itemToTaskInstance(item);
  }
}

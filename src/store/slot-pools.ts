import { PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { ConditionFailedError, ItemTooLargeError } from './errors.ts';
import { DYNAMODB_ITEM_MAX_BYTES } from './item-size.ts';
import {
  emptySlotPool,
  type Item,
  isConditionalCheckFailed,
  isItemSizeExceeded,
  itemToSlotPool,
} from './items.ts';
import { type ItemKey, reconcileCursorKey, slotPoolKey } from './keys.ts';
import type {
  ReconcileCursor,
  SchedulingStateStore,
  SlotPoolChange,
  SlotPoolRef,
  SlotPoolState,
} from './port.ts';
import type { TableRequests } from './requests.ts';
import {
  describeSlotPool,
  isEmptySlotPoolChange,
  type ResolvedRelease,
  refusalReasons,
  slotPoolUpdate,
  validateSlotPoolChange,
} from './slot-pool-update.ts';

/**
 * Scheduling state every scheduler instance shares (ADR.md, "Slot pools"): pools, a run's task
 * slots, a DAG's run slots, and the reconcile cursor. Each change is one conditional write.
 */
export class DynamoSchedulingStateStore implements SchedulingStateStore {
  readonly #table: TableRequests;

  constructor(table: TableRequests) {
    this.#table = table;
  }

  async getSlotPool(ref: SlotPoolRef): Promise<SlotPoolState> {
    const item = await this.#table.get(slotPoolKey(ref));
    return item === undefined ? emptySlotPool() : itemToSlotPool(item);
  }

  async updateSlotPool(ref: SlotPoolRef, change: SlotPoolChange): Promise<SlotPoolState> {
    const key = slotPoolKey(ref);
    validateSlotPoolChange(ref, change);
    if (isEmptySlotPoolChange(change)) return this.getSlotPool(ref);
    const releases = await this.#resolveReleases(ref, key, change);
    try {
      return await this.#send(ref, key, change, releases);
    } catch (error) {
      if (!isConditionalCheckFailed(error)) throw error;
      const stored = await this.#table.get(key);
      const legacy = legacyHoldersAmong(stored, releases);
      // Released holders an earlier version wrote as maps: the change again, with map-field
      // conditions for them, refused only if the holders really differ.
      if (legacy.size > 0) return this.#sendOrRefuse(ref, key, change, releases, legacy);
      if (stored !== undefined || releases.length > 0) {
        throw this.#refused(
          ref,
          change,
          stored === undefined ? undefined : itemToSlotPool(stored),
          releases,
          error,
        );
      }
    }
    // The item does not exist yet. Removing waiting entries from nothing changes nothing.
    if (change.acquire.length === 0 && Object.keys(change.setWaiting ?? {}).length === 0) {
      return emptySlotPool();
    }
    // Create it with empty maps (nested SETs need the parent map), then apply the change. Two
    // creators at once: one put wins, the other finds the item; both then apply their change.
    await this.#table.putIfAbsent({ ...key, used: 0, holders: {}, waiting: {}, ...this.#expiryOf(ref) });
    return this.#sendOrRefuse(ref, key, change, releases);
  }

  /**
   * Releases carry the holder's slots when the caller knows them; otherwise one consistent read
   * finds them, and the write is conditional on them, so `used` always moves by the exact amount.
   */
  async #resolveReleases(ref: SlotPoolRef, key: ItemKey, change: SlotPoolChange): Promise<ResolvedRelease[]> {
    if (change.release.every((release) => release.slots !== undefined)) {
      return change.release.map((release) => ({ ...release, slots: release.slots as number }));
    }
    const item = await this.#table.get(key);
    const stored = item === undefined ? undefined : itemToSlotPool(item);
    const releases: ResolvedRelease[] = [];
    for (const release of change.release) {
      const slots = release.slots ?? stored?.holders[release.id]?.slots;
      if (slots === undefined) {
        throw this.#refused(ref, change, stored ?? emptySlotPool(), change.release, undefined);
      }
      releases.push({ ...release, slots });
    }
    return releases;
  }

  /** A run's task slots live and expire with the run; named pools and DAG run slots never expire. */
  #expiryOf(ref: SlotPoolRef): Item {
    return ref.kind === 'run_tasks' ? this.#table.expiry() : {};
  }

  /** The change, sent once more: a refusal now reads the item to say why. */
  async #sendOrRefuse(
    ref: SlotPoolRef,
    key: ItemKey,
    change: SlotPoolChange,
    releases: ResolvedRelease[],
    legacy?: ReadonlySet<string>,
  ): Promise<SlotPoolState> {
    try {
      return await this.#send(ref, key, change, releases, legacy);
    } catch (error) {
      if (!isConditionalCheckFailed(error)) throw error;
      const stored = await this.#table.get(key);
      throw this.#refused(
        ref,
        change,
        stored === undefined ? undefined : itemToSlotPool(stored),
        releases,
        error,
      );
    }
  }

  async #send(
    ref: SlotPoolRef,
    key: ItemKey,
    change: SlotPoolChange,
    releases: ResolvedRelease[],
    legacy: ReadonlySet<string> = new Set(),
  ): Promise<SlotPoolState> {
    const { expression, updateExpression, conditions } = slotPoolUpdate(
      change,
      releases,
      this.#expiryOf(ref),
      legacy,
    );
    try {
      const output = await this.#table.client.send(
        new UpdateCommand({
          TableName: this.#table.tableName,
          Key: key,
          UpdateExpression: updateExpression,
          ConditionExpression: conditions.join(' AND '),
          ...expression.attributes(),
          ReturnValues: 'ALL_NEW',
        }),
      );
      return itemToSlotPool(output.Attributes ?? {});
    } catch (error) {
      if (!isItemSizeExceeded(error)) throw error;
      throw new ItemTooLargeError(
        `${describeSlotPool(ref)} cannot take ${change.acquire.length} more holders: its item would pass DynamoDB's ${DYNAMODB_ITEM_MAX_BYTES / 1024} KB item limit (one entry per task instance holding slots; long DAG, run and task ids take more)`,
        { cause: error },
      );
    }
  }

  #refused(
    ref: SlotPoolRef,
    change: SlotPoolChange,
    stored: SlotPoolState | undefined,
    releases: SlotPoolChange['release'],
    cause: unknown,
  ): ConditionFailedError {
    const reasons = refusalReasons(change, stored, releases);
    const why = reasons.length > 0 ? reasons.join('; ') : 'it changed while the change was being written';
    return new ConditionFailedError(`${describeSlotPool(ref)} was not updated: ${why}`, {
      ...(cause === undefined ? {} : { cause }),
    });
  }

  async getReconcileCursor(): Promise<ReconcileCursor> {
    const item = await this.#table.get(reconcileCursorKey());
    if (item === undefined) return { cursor: undefined, version: 0 };
    return {
      cursor: typeof item.cursor === 'string' ? item.cursor : undefined,
      version: Number(item.version ?? 0),
    };
  }

  async putReconcileCursor(cursor: string | undefined, expectedVersion: number): Promise<boolean> {
    const item = {
      ...reconcileCursorKey(),
      version: expectedVersion + 1,
      ...(cursor === undefined ? {} : { cursor }),
    };
    // Version 0 is "never written": the item may be absent (or, equivalently, at version 0).
    const condition =
      expectedVersion === 0 ? 'attribute_not_exists(#pk) OR #version = :expected' : '#version = :expected';
    try {
      await this.#table.client.send(
        new PutCommand({
          TableName: this.#table.tableName,
          Item: item,
          ConditionExpression: condition,
          ExpressionAttributeNames:
            expectedVersion === 0 ? { '#pk': 'pk', '#version': 'version' } : { '#version': 'version' },
          ExpressionAttributeValues: { ':expected': expectedVersion },
        }),
      );
      return true;
    } catch (error) {
      if (isConditionalCheckFailed(error)) return false;
      throw error;
    }
  }
}

/** The released holders stored as maps (the encoding before lists, see `encodeHolder`). */
function legacyHoldersAmong(stored: Item | undefined, releases: readonly ResolvedRelease[]): Set<string> {
  const holders = (stored?.holders ?? {}) as Record<string, unknown>;
  const legacy = new Set<string>();
  for (const release of releases) {
    const holder = holders[release.id];
    if (holder !== undefined && holder !== null && typeof holder === 'object' && !Array.isArray(holder)) {
      legacy.add(release.id);
    }
  }
  return legacy;
}

import { PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { ConditionFailedError, ItemTooLargeError } from './errors.ts';
import {
  type HolderKeys,
  holderKeysOf,
  REVISION_ATTRIBUTE,
  RUNS_ATTRIBUTE,
  unusedTags,
} from './holder-keys.ts';
import { DYNAMODB_ITEM_MAX_BYTES } from './item-size.ts';
import {
  ExpressionBuilder,
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
  type StoredKeys,
  slotPoolUpdate,
  validateSlotPoolChange,
} from './slot-pool-update.ts';

/** Unused run tags a pool item keeps before a change removes them (see #pruneRunTags). */
const PRUNE_TAGS_AT = 4;
/** Most tags one prune removes: each adds to its update expression, which DynamoDB caps at 4 KB. */
const PRUNE_TAGS_MAX = 100;

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
    return item === undefined ? emptySlotPool() : itemToSlotPool(item, ref);
  }

  async updateSlotPool(ref: SlotPoolRef, change: SlotPoolChange): Promise<SlotPoolState> {
    const key = slotPoolKey(ref);
    validateSlotPoolChange(ref, change);
    if (isEmptySlotPoolChange(change)) return this.getSlotPool(ref);
    const releases = await this.#resolveReleases(ref, key, change);
    const keys = holderKeysOf(ref);
    const current: StoredKeys = { keys, revision: ref.kind === 'pool' };
    try {
      return await this.#send(ref, key, change, releases, current);
    } catch (error) {
      if (!isConditionalCheckFailed(error)) throw error;
      const stored = await this.#table.get(key);
      if (stored !== undefined) {
        // Released holders an earlier version stored (under their whole id, or as maps), or a
        // pool item from before run tags: the change again, written for what is stored, refused
        // only if the holders really differ.
        const earlier = earlierEncodings(current, stored, releases);
        const needsRuns =
          stored[RUNS_ATTRIBUTE] === undefined && change.acquire.some((holder) => keys.tagOf(holder.id));
        if (needsRuns) await this.#addRunsMap(key);
        if (earlier || needsRuns) return this.#sendOrRefuse(ref, key, change, releases, earlier ?? current);
        throw this.#refused(ref, change, stored, releases, error);
      }
      if (releases.length > 0) throw this.#refused(ref, change, undefined, releases, error);
    }
    // The item does not exist yet. Removing waiting entries from nothing changes nothing.
    if (change.acquire.length === 0 && Object.keys(change.setWaiting ?? {}).length === 0) {
      return emptySlotPool();
    }
    // Create it with empty maps (nested SETs need the parent map), then apply the change. Two
    // creators at once: one put wins, the other finds the item; both then apply their change.
    await this.#table.putIfAbsent({
      ...key,
      used: 0,
      holders: {},
      waiting: {},
      ...(ref.kind === 'pool' ? { [RUNS_ATTRIBUTE]: {} } : {}),
      ...this.#expiryOf(ref),
    });
    return this.#sendOrRefuse(ref, key, change, releases, current);
  }

  /** Gives a pool item written before run tags its (empty) `runs` map. */
  async #addRunsMap(key: ItemKey): Promise<void> {
    const expression = new ExpressionBuilder();
    const runs = expression.name(RUNS_ATTRIBUTE);
    await this.#table.client.send(
      new UpdateCommand({
        TableName: this.#table.tableName,
        Key: key,
        UpdateExpression: `SET ${runs} = if_not_exists(${runs}, ${expression.value({})})`,
        ConditionExpression: expression.exists('pk'),
        ...expression.attributes(),
      }),
    );
  }

  /**
   * Forgets run tags no holder uses, once there are a few (each removal rewrites the whole item),
   * if nothing changed since `item` was written. Best effort: a later change tries again.
   */
  async #pruneRunTags(key: ItemKey, item: Item): Promise<void> {
    const unused = unusedTags(item, PRUNE_TAGS_MAX);
    if (unused.length < PRUNE_TAGS_AT) return;
    const expression = new ExpressionBuilder();
    const runs = expression.name(RUNS_ATTRIBUTE);
    try {
      await this.#table.client.send(
        new UpdateCommand({
          TableName: this.#table.tableName,
          Key: key,
          UpdateExpression: `REMOVE ${unused.map((tag) => `${runs}.${expression.name(tag)}`).join(', ')}`,
          ConditionExpression: `${expression.name(REVISION_ATTRIBUTE)} = ${expression.value(item[REVISION_ATTRIBUTE])}`,
          ...expression.attributes(),
        }),
      );
    } catch {
      // Changed meanwhile, or the store failed: the tags stay until a later change prunes them.
    }
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
    const stored = item === undefined ? undefined : itemToSlotPool(item, ref);
    const releases: ResolvedRelease[] = [];
    for (const release of change.release) {
      const slots = release.slots ?? stored?.holders[release.id]?.slots;
      if (slots === undefined) {
        throw this.#refused(ref, change, item ?? {}, change.release, undefined);
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
    stored: StoredKeys,
  ): Promise<SlotPoolState> {
    try {
      return await this.#send(ref, key, change, releases, stored);
    } catch (error) {
      if (!isConditionalCheckFailed(error)) throw error;
      throw this.#refused(ref, change, await this.#table.get(key), releases, error);
    }
  }

  async #send(
    ref: SlotPoolRef,
    key: ItemKey,
    change: SlotPoolChange,
    releases: ResolvedRelease[],
    stored: StoredKeys,
  ): Promise<SlotPoolState> {
    const { expression, updateExpression, conditions } = slotPoolUpdate(
      change,
      releases,
      this.#expiryOf(ref),
      stored,
    );
    let item: Item;
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
      item = output.Attributes ?? {};
    } catch (error) {
      if (!isItemSizeExceeded(error)) throw error;
      throw new ItemTooLargeError(
        `${describeSlotPool(ref)} cannot take ${change.acquire.length} more holders: its item would pass DynamoDB's ${DYNAMODB_ITEM_MAX_BYTES / 1024} KB item limit (one entry per task instance holding slots; long task ids take more)`,
        { cause: error },
      );
    }
    if (ref.kind === 'pool' && change.release.length > 0) await this.#pruneRunTags(key, item);
    return itemToSlotPool(item, ref);
  }

  /** Why the change was refused, from the item as stored now (undefined: there is none). */
  #refused(
    ref: SlotPoolRef,
    change: SlotPoolChange,
    stored: Item | undefined,
    releases: SlotPoolChange['release'],
    cause: unknown,
  ): ConditionFailedError {
    const reasons = [
      ...refusalReasons(change, stored === undefined ? undefined : itemToSlotPool(stored, ref), releases),
      ...(stored === undefined ? [] : tagConflicts(holderKeysOf(ref), stored, change)),
    ];
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

/** Run tags that already name another run (two runs whose tags collide): the change waits. */
function tagConflicts(keys: HolderKeys, stored: Item, change: SlotPoolChange): string[] {
  const runs = (stored[RUNS_ATTRIBUTE] ?? {}) as Record<string, unknown>;
  const reasons: string[] = [];
  for (const holder of change.acquire) {
    const tagged = keys.tagOf(holder.id);
    const named = tagged ? runs[tagged.tag] : undefined;
    if (tagged && named !== undefined && named !== tagged.runKey) {
      reasons.push(`run tag ${tagged.tag} of holder '${holder.id}' names run ${String(named)} already`);
    }
  }
  return reasons;
}

/**
 * How the released holders are stored when an earlier version wrote them: under their whole id
 * (before run tags) or as maps (before lists, see `encodeHolder`). Undefined when all are stored
 * as this version writes them (or not at all).
 */
function earlierEncodings(
  current: StoredKeys,
  stored: Item,
  releases: readonly ResolvedRelease[],
): StoredKeys | undefined {
  const holders = (stored.holders ?? {}) as Record<string, unknown>;
  const releaseKeys = new Map<string, string>();
  const legacyValues = new Set<string>();
  for (const release of releases) {
    let key = current.keys.keyOf(release.id);
    if (holders[key] === undefined && holders[release.id] !== undefined) {
      key = release.id;
      releaseKeys.set(release.id, key);
    }
    const holder = holders[key];
    if (holder !== undefined && holder !== null && typeof holder === 'object' && !Array.isArray(holder)) {
      legacyValues.add(key);
    }
  }
  if (releaseKeys.size === 0 && legacyValues.size === 0) return undefined;
  return { ...current, releaseKeys, legacyValues };
}

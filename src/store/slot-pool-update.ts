import { InvalidKeyError, StoreError } from './errors.ts';
import { type HolderKeys, holderKeysOf, REVISION_ATTRIBUTE, RUNS_ATTRIBUTE } from './holder-keys.ts';
import { ExpressionBuilder, encodeHolder, type Item } from './items.ts';
import type { SlotPoolChange, SlotPoolRef, SlotPoolState } from './port.ts';

/**
 * The single UpdateItem of a slot-pool change, and the description of why one was refused.
 * Holder ids and waiting keys are arbitrary strings (`.`, `[`, `#` included), so every map key
 * goes through ExpressionAttributeNames: `#holders.#id` is one path segment per name.
 */

/**
 * Holders acquired or released, and waiting runs set or removed, in one update at most: each adds
 * about 50 bytes to the update's condition or update expression, which DynamoDB caps at 4 KB.
 * Callers with more split the change (the engine's reservations go in rounds of this size).
 */
export const SLOT_POOL_ENTRIES_PER_UPDATE = 50;

/**
 * What a run tag adds to an acquire (a condition of about 60 bytes and a SET), in entries. The
 * first tag of a change is within the budget: the engine's changes acquire for one run each.
 */
const TAG_ENTRIES = 2;

/** A release with the slots the holder has, so `used` can move by the exact amount. */
export interface ResolvedRelease {
  id: string;
  passId?: string | undefined;
  slots: number;
}

export function describeSlotPool(ref: SlotPoolRef): string {
  switch (ref.kind) {
    case 'pool':
      return `pool '${ref.pool}'`;
    case 'run_tasks':
      return `task slots of DAG run ${ref.dagId}/${ref.runId}`;
    case 'dag_runs':
      return `run slots of DAG ${ref.dagId}`;
  }
}

function assertSlots(ref: SlotPoolRef, what: string, slots: number): void {
  if (!Number.isInteger(slots) || slots < 1) {
    throw new StoreError(`${what} of ${describeSlotPool(ref)} has ${slots} slots: not a positive integer`);
  }
}

function assertMapKey(ref: SlotPoolRef, what: string, key: string): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidKeyError(`${what} of ${describeSlotPool(ref)} must be a non-empty string`);
  }
}

/**
 * Refuses, before any request, a change DynamoDB would reject as a malformed expression (the
 * same path twice) or that could corrupt `used` (slots that are not positive integers).
 */
export function validateSlotPoolChange(ref: SlotPoolRef, change: SlotPoolChange): void {
  const keys = holderKeysOf(ref);
  const tags = new Set(change.acquire.flatMap((holder) => keys.tagOf(holder.id)?.tag ?? []));
  const entries =
    change.acquire.length +
    change.release.length +
    Object.keys(change.setWaiting ?? {}).length +
    (change.removeWaiting ?? []).length +
    TAG_ENTRIES * Math.max(0, tags.size - 1);
  if (entries > SLOT_POOL_ENTRIES_PER_UPDATE) {
    throw new StoreError(
      `a change of ${describeSlotPool(ref)} names ${entries} holders and waiting runs (each run acquiring beyond the first counting ${TAG_ENTRIES} more for its tag): over the limit of ${SLOT_POOL_ENTRIES_PER_UPDATE} per update (each adds to one condition expression, which DynamoDB caps at 4 KB); split it`,
    );
  }
  const holderIds = new Set<string>();
  const claim = (id: string) => {
    if (holderIds.has(id)) {
      throw new StoreError(`holder '${id}' of ${describeSlotPool(ref)} appears twice in one change`);
    }
    holderIds.add(id);
  };
  for (const holder of change.acquire) {
    assertMapKey(ref, 'a holder id', holder.id);
    assertSlots(ref, `holder '${holder.id}'`, holder.slots);
    claim(holder.id);
  }
  for (const release of change.release) {
    assertMapKey(ref, 'a holder id', release.id);
    if (release.slots !== undefined) assertSlots(ref, `released holder '${release.id}'`, release.slots);
    claim(release.id);
  }
  if (change.acquire.length > 0 && (!Number.isInteger(change.size) || change.size < 0)) {
    throw new StoreError(`size ${change.size} of ${describeSlotPool(ref)} is not a non-negative integer`);
  }
  const removed = new Set(change.removeWaiting ?? []);
  for (const key of removed) assertMapKey(ref, 'a waiting key', key);
  for (const key of Object.keys(change.setWaiting ?? {})) {
    assertMapKey(ref, 'a waiting key', key);
    if (removed.has(key)) {
      throw new StoreError(`waiting key '${key}' of ${describeSlotPool(ref)} is both set and removed`);
    }
  }
}

export function isEmptySlotPoolChange(change: SlotPoolChange): boolean {
  return (
    change.acquire.length === 0 &&
    change.release.length === 0 &&
    Object.keys(change.setWaiting ?? {}).length === 0 &&
    (change.removeWaiting ?? []).length === 0
  );
}

/**
 * The condition that a stored holder has `slots` and, when given, `passId`: list elements for
 * holders in the current encoding, map fields for the ones in `legacy` (written as maps by
 * earlier versions; the adapter learns which from a read after a refusal, see slot-pools.ts).
 */
function holderMatches(
  expression: ExpressionBuilder,
  path: string,
  release: ResolvedRelease,
  legacy: boolean,
): string {
  const slotsPath = legacy ? `${path}.${expression.name('slots')}` : `${path}[0]`;
  const clauses = [`${slotsPath} = ${expression.value(release.slots)}`];
  if (release.passId !== undefined) {
    const passPath = legacy ? `${path}.${expression.name('passId')}` : `${path}[2]`;
    clauses.push(`${passPath} = ${expression.value(release.passId)}`);
  }
  return clauses.join(' AND ');
}

/** Under which keys the holders of one write are stored (see holder-keys.ts). */
export interface StoredKeys {
  keys: HolderKeys;
  /** Released holders found stored under another key than `keys` gives (an earlier version's). */
  releaseKeys?: ReadonlyMap<string, string>;
  /** Stored keys of released holders whose value is a map (the encoding before lists). */
  legacyValues?: ReadonlySet<string>;
  /** Pool items: the write moves the item's revision. */
  revision?: boolean;
}

export function storedReleaseKey(stored: StoredKeys, id: string): string {
  return stored.releaseKeys?.get(id) ?? stored.keys.keyOf(id);
}

/**
 * Conditions: the item exists (a missing one is created first, see slot-pools.ts), each
 * acquired holder is absent, each released one present with the slots it was read with (and of
 * the given pass), `used` leaves room: `used <= size - acquired + released`, and each run tag an
 * acquired key uses is free or names the same run. Updates: SET and REMOVE of holders and
 * waiting entries, SET of the run tags, ADD of the slot delta to `used` (and of 1 to a pool's
 * revision), in the same write.
 */
export function slotPoolUpdate(
  change: SlotPoolChange,
  releases: readonly ResolvedRelease[],
  stamps: Item,
  stored: StoredKeys,
): {
  expression: ExpressionBuilder;
  updateExpression: string;
  conditions: string[];
} {
  const expression = new ExpressionBuilder();
  // Names are registered on first use: DynamoDB refuses a request with an unused placeholder.
  const holders = () => expression.name('holders');
  const waiting = () => expression.name('waiting');
  const used = () => expression.name('used');
  const conditions = [expression.exists('pk')];
  const set: string[] = [];
  const remove: string[] = [];
  let acquired = 0;
  const tags = new Map<string, string>();
  for (const holder of change.acquire) {
    const path = `${holders()}.${expression.name(stored.keys.keyOf(holder.id))}`;
    conditions.push(`attribute_not_exists(${path})`);
    set.push(`${path} = ${expression.value(encodeHolder(holder))}`);
    acquired += holder.slots;
    const tagged = stored.keys.tagOf(holder.id);
    if (tagged) tags.set(tagged.tag, tagged.runKey);
  }
  if (tags.size > 0) conditions.push(expression.exists(RUNS_ATTRIBUTE));
  for (const [tag, runKey] of tags) {
    const path = `${expression.name(RUNS_ATTRIBUTE)}.${expression.name(tag)}`;
    const value = expression.value(runKey);
    conditions.push(`(attribute_not_exists(${path}) OR ${path} = ${value})`);
    set.push(`${path} = ${value}`);
  }
  let released = 0;
  for (const release of releases) {
    const key = storedReleaseKey(stored, release.id);
    const path = `${holders()}.${expression.name(key)}`;
    conditions.push(holderMatches(expression, path, release, stored.legacyValues?.has(key) === true));
    remove.push(path);
    released += release.slots;
  }
  if (acquired > 0) {
    const limit = change.size - acquired + released;
    const room = `${used()} <= ${expression.value(limit)}`;
    // A missing `used` counts as 0, which has room only for a limit of at least 0.
    conditions.push(limit >= 0 ? `(attribute_not_exists(${used()}) OR ${room})` : room);
  }
  for (const [key, since] of Object.entries(change.setWaiting ?? {})) {
    set.push(`${waiting()}.${expression.name(key)} = ${expression.value(since)}`);
  }
  for (const key of change.removeWaiting ?? []) remove.push(`${waiting()}.${expression.name(key)}`);
  for (const [name, value] of Object.entries(stamps)) set.push(expression.assign(name, value));
  const clauses: string[] = [];
  if (set.length > 0) clauses.push(`SET ${set.join(', ')}`);
  if (remove.length > 0) clauses.push(`REMOVE ${remove.join(', ')}`);
  const add: string[] = [];
  if (acquired !== released) add.push(`${used()} ${expression.value(acquired - released)}`);
  if (stored.revision) add.push(`${expression.name(REVISION_ATTRIBUTE)} ${expression.value(1)}`);
  if (add.length > 0) clauses.push(`ADD ${add.join(', ')}`);
  return { expression, updateExpression: clauses.join(' '), conditions };
}

/** Why a change does not apply to the stored state; empty when it would (the pool changed meanwhile). */
export function refusalReasons(
  change: SlotPoolChange,
  stored: SlotPoolState | undefined,
  releases: readonly { id: string; passId?: string | undefined; slots?: number | undefined }[],
): string[] {
  if (stored === undefined) {
    return releases.length > 0 ? [`it holds nothing (holder '${releases[0]?.id}' cannot be released)`] : [];
  }
  const reasons: string[] = [];
  for (const holder of change.acquire) {
    if (stored.holders[holder.id] !== undefined) reasons.push(`holder '${holder.id}' already holds slots`);
  }
  let released = 0;
  for (const release of releases) {
    const current = stored.holders[release.id];
    if (current === undefined) {
      reasons.push(`holder '${release.id}' holds no slots`);
    } else if (release.passId !== undefined && current.passId !== release.passId) {
      reasons.push(`holder '${release.id}' was reserved by pass ${current.passId}, not ${release.passId}`);
    } else if (release.slots !== undefined && current.slots !== release.slots) {
      reasons.push(`holder '${release.id}' holds ${current.slots} slots, not ${release.slots}`);
    } else {
      released += current.slots;
    }
  }
  const acquired = change.acquire.reduce((total, holder) => total + holder.slots, 0);
  if (acquired > 0 && stored.used + acquired - released > change.size) {
    reasons.push(
      `${stored.used} of ${change.size} slots are used: acquiring ${acquired}` +
        (released > 0 ? ` while releasing ${released}` : '') +
        ' would exceed the size',
    );
  }
  return reasons;
}

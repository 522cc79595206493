import type { NativeAttributeValue } from '@aws-sdk/lib-dynamodb';
import type { DagRun, TaskInstance } from '#core/models.ts';
import { StoreError } from './errors.ts';
import { holderKeysOf } from './holder-keys.ts';
import {
  activeRunKey,
  dagRunKey,
  importErrorKey,
  isActiveDagRunState,
  KEY_ATTRIBUTES,
  OWED_CALLBACKS_ATTRIBUTE,
  runsByLogicalDateKey,
  taskInstanceKey,
} from './keys.ts';
import type {
  DagRecord,
  DagRecordUpsert,
  ImportError,
  SlotHolder,
  SlotPoolRef,
  SlotPoolState,
} from './port.ts';

/**
 * Mapping between models and items. An item is the model's fields plus its key attributes;
 * reading strips the key attributes so a round trip gives back an equal model.
 */

export type Item = Record<string, NativeAttributeValue>;

export function withoutKeyAttributes(item: Item): Record<string, unknown> {
  const model: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(item)) {
    if (!KEY_ATTRIBUTES.includes(name)) model[name] = value;
  }
  return model;
}

/** Fields added after items were first written read back with their creation value. */
export function itemToDag(item: Item): DagRecord {
  return { runCount: 0, ...withoutKeyAttributes(item) } as unknown as DagRecord;
}

export function importErrorToItem(error: ImportError): Item {
  return { ...importErrorKey(error.fileloc), ...error };
}

export function itemToImportError(item: Item): ImportError {
  return withoutKeyAttributes(item) as unknown as ImportError;
}

export function dagRunToItem(run: DagRun): Item {
  return {
    ...dagRunKey(run),
    ...runsByLogicalDateKey(run),
    ...(isActiveDagRunState(run.state) ? activeRunKey(run) : {}),
    ...run,
  };
}

export function itemToDagRun(item: Item): DagRun {
  return readOwed({ clearCount: 0, ...withoutKeyAttributes(item) }) as unknown as DagRun;
}

/** A string set reads back as a Set: the model keeps a sorted array (absent when empty). */
function readOwed(model: Record<string, unknown>): Record<string, unknown> {
  const owed = model[OWED_CALLBACKS_ATTRIBUTE];
  if (owed === undefined) return model;
  const list =
    owed instanceof Set ? [...owed].map(String).sort() : Array.isArray(owed) ? owed.map(String) : [];
  if (list.length === 0) {
    const { [OWED_CALLBACKS_ATTRIBUTE]: _, ...rest } = model;
    return rest;
  }
  return { ...model, [OWED_CALLBACKS_ATTRIBUTE]: list };
}

export function taskInstanceToItem(ti: TaskInstance): Item {
  return { ...taskInstanceKey(ti), ...ti };
}

export function itemToTaskInstance(item: Item): TaskInstance {
  return readOwed({
    reportId: null,
    queuedSends: 0,
    ...withoutKeyAttributes(item),
  }) as unknown as TaskInstance;
}

export function emptySlotPool(): SlotPoolState {
  return { used: 0, holders: {}, waiting: {} };
}

/**
 * How a holder is stored: a list `[slots, tryNumber, passId, at (epoch ms), pool?]` under its id,
 * a third the size of a map with named fields (pool items are billed by their whole size on
 * every update, and hold one entry per occupying TI). Items written before this encoding hold
 * maps `{ id, slots, tryNumber, passId, at, pool? }`: both are read, and released (see
 * `holderMatches`).
 */
export function encodeHolder(holder: SlotHolder): unknown[] {
  const atMs = Date.parse(holder.at);
  if (Number.isNaN(atMs)) throw new StoreError(`holder '${holder.id}' has no valid time: ${holder.at}`);
  const encoded: unknown[] = [holder.slots, holder.tryNumber, holder.passId, atMs];
  if (holder.pool !== undefined) encoded.push(holder.pool);
  return encoded;
}

/**
 * Never throws, so one damaged holder cannot make its pool unreadable: what cannot be read comes
 * back as 1 slot, try 0, no pass, reserved at the epoch (old enough for any audit to look at it).
 */
export function decodeHolder(id: string, stored: unknown): SlotHolder {
  const fields: Partial<Record<'slots' | 'tryNumber' | 'passId' | 'at' | 'pool', unknown>> = Array.isArray(
    stored,
  )
    ? { slots: stored[0], tryNumber: stored[1], passId: stored[2], at: stored[3], pool: stored[4] }
    : stored !== null && typeof stored === 'object'
      ? (stored as Record<string, unknown>)
      : {};
  const number = (value: unknown, fallback: number) =>
    typeof value === 'number' && Number.isFinite(value) ? value : fallback;
  const atMs = typeof fields.at === 'string' ? Date.parse(fields.at) : number(fields.at, 0);
  const holder: SlotHolder = {
    id,
    slots: number(fields.slots, 1),
    tryNumber: number(fields.tryNumber, 0),
    passId: typeof fields.passId === 'string' ? fields.passId : '',
    at: new Date(Number.isNaN(atMs) ? 0 : atMs).toISOString(),
  };
  if (typeof fields.pool === 'string') holder.pool = fields.pool;
  return holder;
}

/** A slot-pool item as the port gives it: holders by their whole ids (see holder-keys.ts). */
export function itemToSlotPool(item: Item, ref: SlotPoolRef): SlotPoolState {
  const keys = holderKeysOf(ref);
  return {
    used: Number(item.used ?? 0),
    holders: Object.fromEntries(
      Object.entries((item.holders ?? {}) as Record<string, unknown>).map(([key, stored]) => {
        const id = keys.idOf(key, item);
        return [id, decodeHolder(id, stored)];
      }),
    ),
    waiting: (item.waiting ?? {}) as Record<string, string>,
  };
}

/** Fields that identify an item or are maintained by the store: never taken from a caller's changes. */
const PROTECTED_FIELDS: ReadonlySet<string> = new Set([
  ...KEY_ATTRIBUTES,
  'dagId',
  'runId',
  'taskId',
  'mapIndex',
  'revision',
  // Counters only the store moves (createDagRun, markRunCleared).
  'runCount',
  'clearCount',
  'clearsInProgress',
  'clearBegunAt',
  // Only the store adds owed callbacks (with the state change that owes them) and settles them.
  OWED_CALLBACKS_ATTRIBUTE,
  // Written with the run; a deadline's state changes only by its own conditional decision.
  'deadlines',
]);

/**
 * Collects placeholders for one request: DynamoDB reserves many plain words (`state` among them),
 * so every attribute name goes through `#n…` and every value through `:v…`.
 */
export class ExpressionBuilder {
  readonly names: Record<string, string> = {};
  readonly values: Record<string, NativeAttributeValue> = {};
  readonly #placeholders = new Map<string, string>();

  name(attribute: string): string {
    let placeholder = this.#placeholders.get(attribute);
    if (placeholder === undefined) {
      placeholder = `#n${this.#placeholders.size}`;
      this.#placeholders.set(attribute, placeholder);
      this.names[placeholder] = attribute;
    }
    return placeholder;
  }

  value(value: NativeAttributeValue): string {
    const placeholder = `:v${Object.keys(this.values).length}`;
    this.values[placeholder] = value;
    return placeholder;
  }

  /** `attribute IN (…)`; an empty list can never match, which is refused before it reaches the store. */
  oneOf(attribute: string, values: readonly string[]): string {
    return `${this.name(attribute)} IN (${values.map((value) => this.value(value)).join(', ')})`;
  }

  assign(attribute: string, value: NativeAttributeValue): string {
    return `${this.name(attribute)} = ${this.value(value)}`;
  }

  equals(attribute: string, value: NativeAttributeValue): string {
    return `${this.name(attribute)} = ${this.value(value)}`;
  }

  exists(attribute: string): string {
    return `attribute_exists(${this.name(attribute)})`;
  }

  /** ` ADD owedCallbacks :set` for owed callbacks (empty when none): a string set, duplicates merge. */
  addOwed(owed: readonly string[] | undefined): string {
    if (!owed || owed.length === 0) return '';
    return ` ADD ${this.name(OWED_CALLBACKS_ATTRIBUTE)} ${this.value(new Set(owed))}`;
  }

  /**
   * SET of the given fields (undefined ones skipped, protected ones ignored), REMOVE of the
   * given attributes, and the revision bump every write carries. `assignments` are more SET
   * clauses, already built (with paths into lists or maps).
   */
  update(
    changes: object,
    extraSet: Item = {},
    remove: readonly string[] = [],
    add = '',
    assignments: readonly string[] = [],
  ): string {
    const sets: string[] = [...assignments];
    for (const [field, value] of Object.entries(changes)) {
      if (value === undefined || PROTECTED_FIELDS.has(field)) continue;
      sets.push(this.assign(field, value));
    }
    for (const [attribute, value] of Object.entries(extraSet)) {
      sets.push(this.assign(attribute, value));
    }
    const revision = this.name('revision');
    sets.push(`${revision} = ${revision} + ${this.value(1)}`);
    const removal =
      remove.length > 0 ? ` REMOVE ${remove.map((attribute) => this.name(attribute)).join(', ')}` : '';
    return `SET ${sets.join(', ')}${removal}${add}`;
  }

  /** The expression maps, omitted when empty (DynamoDB rejects empty maps). */
  attributes(): {
    ExpressionAttributeNames?: Record<string, string>;
    ExpressionAttributeValues?: Record<string, NativeAttributeValue>;
  } {
    return {
      ...(Object.keys(this.names).length > 0 ? { ExpressionAttributeNames: this.names } : {}),
      ...(Object.keys(this.values).length > 0 ? { ExpressionAttributeValues: this.values } : {}),
    };
  }
}

/**
 * The UpdateExpression of an upsert: parse-time fields are set; `isPaused` and `nextRunAt`
 * use if_not_exists so the stored values win and the record's only seed a new DAG; the
 * revision starts at 0 for a new DAG and is bumped otherwise; the run count starts at 0 and is
 * kept. One request either way.
 */
export function upsertDagUpdate(expression: ExpressionBuilder, record: DagRecordUpsert): string {
  const { dagId, isPaused, nextRunAt, ...parseTimeFields } = record;
  const assignments: string[] = [];
  for (const [field, value] of Object.entries(parseTimeFields)) {
    if (value !== undefined && !PROTECTED_FIELDS.has(field)) {
      assignments.push(expression.assign(field, value));
    }
  }
  for (const [field, value] of Object.entries({ dagId, isPaused, nextRunAt })) {
    const name = expression.name(field);
    assignments.push(`${name} = if_not_exists(${name}, ${expression.value(value)})`);
  }
  const runCount = expression.name('runCount');
  assignments.push(`${runCount} = if_not_exists(${runCount}, ${expression.value(0)})`);
  const revision = expression.name('revision');
  assignments.push(
    `${revision} = if_not_exists(${revision}, ${expression.value(-1)}) + ${expression.value(1)}`,
  );
  return `SET ${assignments.join(', ')}`;
}

export function isConditionalCheckFailed(error: unknown): boolean {
  return error instanceof Error && error.name === 'ConditionalCheckFailedException';
}

/** DynamoDB's (and dynalite's) refusal of a write that would leave an item over 400 KB. */
export function isItemSizeExceeded(error: unknown): boolean {
  return (
    error instanceof Error &&
    error.name === 'ValidationException' &&
    /item size (to update )?has exceeded the maximum allowed size/i.test(error.message)
  );
}

/**
 * Describes the stored item DynamoDB returns with a failed condition when asked for
 * (`ReturnValuesOnConditionCheckFailure`); the embedded server does not return it.
 * The item arrives in wire format: the document client does not unmarshall errors.
 */
export function describeStoredItem(error: unknown): string {
  const item = (error as { Item?: Record<string, { S?: string; N?: string }> }).Item;
  if (item === undefined) return '';
  const parts: string[] = [];
  const state = item.state?.S;
  if (state !== undefined) parts.push(`state '${state}'`);
  const tryNumber = item.tryNumber?.N;
  if (tryNumber !== undefined) parts.push(`try ${tryNumber}`);
  const revision = item.revision?.N;
  if (revision !== undefined) parts.push(`revision ${revision}`);
  return parts.length > 0 ? `; stored: ${parts.join(', ')}` : '';
}

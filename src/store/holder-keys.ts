import { createHash } from 'node:crypto';
import type { Item } from './items.ts';
import type { SlotPoolRef } from './port.ts';

/**
 * How holder ids are keyed inside a slot-pool item. A pool item is billed by its whole size on
 * every update and holds one entry per occupying TI, whose id (`dag#run#task#mapIndex#try`) is
 * mostly its run. So the item keys a holder by a short tag of its run instead, with the tag's run
 * once in its `runs` map; a run's own task-slot item keys its holders relative to the run:
 * - pool: `~<11 characters of the run key's SHA-256>#task#mapIndex#try`, `runs[tag]` = `dag#run`;
 * - run_tasks: `~#task#mapIndex#try`;
 * - dag_runs: the run id itself.
 * `~` starts no DAG id (see core/ids.ts), so a key in this form is never an id stored whole, as
 * earlier versions stored every holder (still read, and released under their whole id); an id of
 * another shape that starts with `~` is stored whole behind one more `~`. The port's ids stay
 * whole: only the item's keys change.
 */

/** Where a pool item keeps each tag's run key. */
export const RUNS_ATTRIBUTE = 'runs';
/** A pool item's revision, moved by every change: a prune of `runs` is conditional on it. */
export const REVISION_ATTRIBUTE = 'rev';

const TAG_MARK = '~';
/** A whole id that starts with TAG_MARK is stored behind this (a tag's next character is base64url). */
const ESCAPED = `${TAG_MARK}${TAG_MARK}`;

/** An id stored whole: as it is, unless it could be taken for a tagged or relative key. */
function whole(id: string): string {
  return id.startsWith(TAG_MARK) ? `${TAG_MARK}${id}` : id;
}

/** The id of a key stored whole, or undefined when the key is tagged or relative. */
function wholeIdOf(key: string): string | undefined {
  if (key.startsWith(ESCAPED)) return key.slice(TAG_MARK.length);
  return key.startsWith(TAG_MARK) ? undefined : key;
}
const TAG_HASH_CHARS = 11;

export interface HolderKeys {
  /** The key a holder id is stored under from now on. */
  keyOf(id: string): string;
  /** The run tag a pool key needs in `runs`, with its run key (none for other kinds). */
  tagOf(id: string): { tag: string; runKey: string } | undefined;
  /** The holder id of a stored key. */
  idOf(key: string, item: Item): string;
}

/** `dag#run` and the rest of a TI holder id, when it has that form. */
function splitRun(id: string): { runKey: string; rest: string } | undefined {
  const first = id.indexOf('#');
  const second = first < 1 ? -1 : id.indexOf('#', first + 1);
  if (second <= first + 1 || second === id.length - 1) return undefined;
  return { runKey: id.slice(0, second), rest: id.slice(second + 1) };
}

export function runTag(runKey: string): string {
  return `${TAG_MARK}${createHash('sha256').update(runKey).digest('base64url').slice(0, TAG_HASH_CHARS)}`;
}

const poolKeys: HolderKeys = {
  keyOf(id) {
    const parts = splitRun(id);
    return parts ? `${runTag(parts.runKey)}#${parts.rest}` : whole(id);
  },
  tagOf(id) {
    const parts = splitRun(id);
    return parts ? { tag: runTag(parts.runKey), runKey: parts.runKey } : undefined;
  },
  idOf(key, item) {
    const id = wholeIdOf(key);
    if (id !== undefined) return id;
    const separator = key.indexOf('#');
    const runs = (item[RUNS_ATTRIBUTE] ?? {}) as Record<string, unknown>;
    const runKey = separator > 0 ? runs[key.slice(0, separator)] : undefined;
    return typeof runKey === 'string' ? `${runKey}${key.slice(separator)}` : key;
  },
};

function runTaskKeys(dagId: string, runId: string): HolderKeys {
  const prefix = `${dagId}#${runId}#`;
  const relative = `${TAG_MARK}#`;
  return {
    keyOf: (id) =>
      id.startsWith(prefix) && id.length > prefix.length
        ? `${relative}${id.slice(prefix.length)}`
        : whole(id),
    tagOf: () => undefined,
    idOf: (key) =>
      wholeIdOf(key) ?? (key.startsWith(relative) ? `${prefix}${key.slice(relative.length)}` : key),
  };
}

const wholeKeys: HolderKeys = { keyOf: (id) => id, tagOf: () => undefined, idOf: (key) => key };

export function holderKeysOf(ref: SlotPoolRef): HolderKeys {
  switch (ref.kind) {
    case 'pool':
      return poolKeys;
    case 'run_tasks':
      return runTaskKeys(ref.dagId, ref.runId);
    case 'dag_runs':
      return wholeKeys;
  }
}

/** Tags in a pool item's `runs` that no holder key uses any more (at most `max`). */
export function unusedTags(item: Item, max: number): string[] {
  const runs = (item[RUNS_ATTRIBUTE] ?? {}) as Record<string, unknown>;
  const used = new Set(
    Object.keys((item.holders ?? {}) as Record<string, unknown>).map((key) => key.slice(0, key.indexOf('#'))),
  );
  return Object.keys(runs)
    .filter((tag) => !used.has(tag))
    .slice(0, max);
}

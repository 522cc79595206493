/**
 * The one id grammar of Updraft, after Airflow's: every entry (the SDK, the public API, the CLI,
 * the engine) checks ids with these functions, so an id accepted anywhere is accepted everywhere
 * and can be stored, addressed in a URL and turned into a file name.
 *
 * - DAG ids and task ids: 1 to 250 letters, digits, `_`, `.` or `-`.
 * - Run ids: the same plus `:`, `+` and `~` (so `manual__2026-01-01T00:00:00+00:00` is one).
 * - No id consists of dots only: `.` and `..` are path segments that URLs and file systems resolve.
 * - No id is `__proto__`: ids are keys of maps in stored items (a run's task state summary), where
 *   JavaScript gives that key a meaning of its own.
 *
 * None of these characters is `#` (the store's key separator), `/` or `%`, and none needs
 * escaping in a URL path segment.
 */

export const ID_MAX_LENGTH = 250;

export type IdKind = 'DAG' | 'task' | 'run';

const CHARACTERS: Record<IdKind, RegExp> = {
  DAG: /^[A-Za-z0-9_.-]*$/,
  task: /^[A-Za-z0-9_.-]*$/,
  run: /^[A-Za-z0-9_.:+~-]*$/,
};

const ALLOWED: Record<IdKind, string> = {
  DAG: "letters, digits, '_', '.' or '-'",
  task: "letters, digits, '_', '.' or '-'",
  run: "letters, digits, '_', '.', ':', '+', '~' or '-'",
};

/** Longest part of an offending id quoted in a message; the rest is elided. */
const QUOTED_MAX = 300;

function quote(id: string): string {
  const shown = id.length > QUOTED_MAX ? `${id.slice(0, QUOTED_MAX)}…` : id;
  return JSON.stringify(shown);
}

/**
 * Why `id` is not a valid id of this kind, as `<kind> id "<id>" is invalid (<the rule it
 * breaks>)`; undefined when it is valid.
 */
export function invalidIdReason(kind: IdKind, id: unknown): string | undefined {
  const noun = `${kind} id`;
  if (typeof id !== 'string')
    return `${noun} ${JSON.stringify(id) ?? String(id)} is invalid (expected a string)`;
  const invalid = (why: string) => `${noun} ${quote(id)} is invalid (${why})`;
  if (id.length > ID_MAX_LENGTH) {
    return invalid(`${id.length} characters, over the limit of ${ID_MAX_LENGTH}`);
  }
  if (id.length === 0 || !CHARACTERS[kind].test(id)) {
    return invalid(`expected ${describeIdGrammar(kind)}`);
  }
  if (/^\.+$/.test(id)) return invalid('an id must not consist of dots only');
  if (id === '__proto__') return invalid('__proto__ is reserved');
  return undefined;
}

export function isValidId(kind: IdKind, id: unknown): id is string {
  return invalidIdReason(kind, id) === undefined;
}

/** The grammar in one line, for docs and help texts. */
export function describeIdGrammar(kind: IdKind): string {
  return `1 to ${ID_MAX_LENGTH} ${ALLOWED[kind]}`;
}

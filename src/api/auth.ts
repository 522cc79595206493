import { timingSafeEqual } from 'node:crypto';

/**
 * The credentials of an `Authorization: Bearer <token>` header. The scheme is matched without
 * regard to case (RFC 7235 §2.1), so `bearer` works as well as `Bearer`.
 */
export function bearerTokenOf(header: string | undefined): string | undefined {
  const match = header ? /^bearer +(\S+) *$/i.exec(header) : null;
  return match?.[1];
}

/** Compares in constant time, so the token cannot be guessed from response times. */
export function bearerMatches(header: string | undefined, expected: string): boolean {
  const token = bearerTokenOf(header);
  if (token === undefined) return false;
  const given = Buffer.from(token);
  const wanted = Buffer.from(expected);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

const ID_AFTER: Readonly<Record<string, string>> = {
  dags: 'DAG id',
  dagRuns: 'Run id',
  taskInstances: 'Task id',
  xcomEntries: 'XCom key',
};
const EXECUTION_XCOM_IDS = ['DAG id', 'Run id', 'Task id', 'XCom key'];

/**
 * The first id in a path that contains `#`, which no id may contain (the store uses it as its
 * key separator), named by what it is. Checked before routing so it answers 400, not a 500 from
 * the store or a 404 that hides the reason.
 */
export function idWithHashIn(path: string): { kind: string; id: string } | undefined {
  const segments = path.split('/').map(decodeSegment);
  const xcoms = path.startsWith('/execution/xcoms/') ? 3 : -1;
  for (const [index, segment] of segments.entries()) {
    if (!segment.includes('#')) continue;
    const kind =
      xcoms >= 0 && index >= xcoms
        ? (EXECUTION_XCOM_IDS[index - xcoms] ?? 'Id')
        : (ID_AFTER[segments[index - 1] ?? ''] ?? 'Id');
    return { kind, id: segment };
  }
  return undefined;
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/**
 * Masks the values of sensitive-looking keys in JSON text before it is shown (the public API's
 * trigger listing): a trigger's kwargs may carry an HTTP header with a token or a password. The
 * key names follow Airflow's default sensitive field names. Only plain JSON is read (no
 * typed values are rebuilt); text that is not JSON is shown as it is.
 */
const SENSITIVE_KEY =
  /access[_-]?token|api[_-]?key|authorization|passphrase|passwd|password|private[_-]?key|secret|token|credential|cookie|keyfile[_-]?dict|service[_-]?account/i;

export const REDACTED = '***';

export function redactJsonText(text: string): string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return text;
  }
  let changed = false;
  const walk = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(walk);
    if (node === null || typeof node !== 'object') return node;
    const out: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(node)) {
      if (SENSITIVE_KEY.test(key) && inner !== null && inner !== '') {
        out[key] = REDACTED;
        changed = true;
      } else {
        out[key] = walk(inner);
      }
    }
    return out;
  };
  const redacted = walk(value);
  return changed ? JSON.stringify(redacted) : text;
}

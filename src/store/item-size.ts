import type { NativeAttributeValue } from '@aws-sdk/lib-dynamodb';

/** DynamoDB's limit for one item, attribute names and values included. */
export const DYNAMODB_ITEM_MAX_BYTES = 400 * 1024;

/**
 * An upper estimate of an item's size as DynamoDB counts it: attribute names plus values, with
 * 3 bytes per map or list and 1 per element, numbers at 1 byte per two significant digits plus 1.
 * JSON and DynamoDB sizes differ (a list of small numbers costs 3 bytes per element stored but 2
 * in JSON), so a value that fits a JSON byte limit can still make the item too large.
 */
export function itemSizeBytes(item: Record<string, NativeAttributeValue>): number {
  let total = 0;
  for (const [name, value] of Object.entries(item)) {
    if (value === undefined) continue;
    total += Buffer.byteLength(name, 'utf8') + valueSize(value);
  }
  return total;
}

function valueSize(value: unknown): number {
  if (value === null || value === undefined || typeof value === 'boolean') return 1;
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8');
  if (typeof value === 'number' || typeof value === 'bigint') return numberSize(String(value));
  if (value instanceof Uint8Array) return value.byteLength;
  if (Array.isArray(value) || value instanceof Set) {
    let total = 3;
    for (const element of value) total += 1 + valueSize(element);
    return total;
  }
  if (typeof value === 'object') {
    let total = 3;
    for (const [name, element] of Object.entries(value)) {
      if (element === undefined) continue;
      total += 1 + Buffer.byteLength(name, 'utf8') + valueSize(element);
    }
    return total;
  }
  return Buffer.byteLength(String(value), 'utf8');
}

function numberSize(text: string): number {
  const digits = text
    .replace(/[^0-9]/g, '')
    .replace(/^0+/, '')
    .replace(/0+$/, '');
  return Math.ceil(Math.max(digits.length, 1) / 2) + 1;
}

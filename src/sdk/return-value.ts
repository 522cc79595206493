import { ReturnValueError } from './errors.ts';

/**
 * Why a task's return value cannot be stored as an XCom, or undefined when JSON keeps it as it
 * is. JSON.stringify would drop functions and Symbols, turn a Map or a Set into `{}` and NaN into
 * `null`: the downstream task would receive something else than what was returned, silently.
 * Objects with a `toJSON()` (a Date) are checked as what it returns, as JSON.stringify does.
 */
export function nonJsonReason(value: unknown): { path: string; problem: string } | undefined {
  return check(value, '$', new Set());
}

/** Throws a ReturnValueError naming the task and the path of the first value JSON cannot keep. */
export function assertJsonReturnValue(taskId: string, value: unknown): void {
  const found = nonJsonReason(value);
  if (!found) return;
  throw new ReturnValueError(
    `The return value of task '${taskId}' cannot be stored as an XCom: ${found.path} ${found.problem}. Return plain JSON data (objects, arrays, strings, finite numbers, booleans, null)`,
  );
}

const LOSSY_CLASSES: [new (...args: never[]) => object, string][] = [
  [Map, 'a Map (JSON turns it into {}; return Object.fromEntries(map) or [...map])'],
  [Set, 'a Set (JSON turns it into {}; return [...set])'],
  [WeakMap, 'a WeakMap'],
  [WeakSet, 'a WeakSet'],
  [RegExp, 'a RegExp (JSON turns it into {}; return its source)'],
  [Error, 'an Error (JSON turns it into {}; return its message)'],
  [Promise, 'a Promise (await it first)'],
  [ArrayBuffer, 'an ArrayBuffer'],
];

function check(
  value: unknown,
  path: string,
  ancestors: Set<object>,
): { path: string; problem: string } | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return undefined;
    case 'number':
      return Number.isFinite(value) ? undefined : { path, problem: `is ${value} (JSON has no ${value})` };
    case 'bigint':
      return { path, problem: 'is a BigInt (JSON has no BigInt; return it as a string)' };
    case 'symbol':
      return { path, problem: 'is a Symbol' };
    case 'function':
      return { path, problem: 'is a function' };
  }
  if (value === null) return undefined;
  const object = value as object;
  const toJSON = Reflect.get(object, 'toJSON');
  if (typeof toJSON === 'function') {
    return check((toJSON as () => unknown).call(object), path, ancestors);
  }
  if (ancestors.has(object)) return { path, problem: 'refers back to an object that contains it (a cycle)' };
  for (const [type, problem] of LOSSY_CLASSES)
    if (object instanceof type) return { path, problem: `is ${problem}` };
  if (ArrayBuffer.isView(object))
    return { path, problem: `is a ${object.constructor.name} (return an array)` };
  ancestors.add(object);
  try {
    if (Array.isArray(object)) {
      for (let index = 0; index < object.length; index++) {
        const item: unknown = object[index];
        if (item === undefined)
          return { path: `${path}[${index}]`, problem: 'is undefined (JSON turns it into null)' };
        const found = check(item, `${path}[${index}]`, ancestors);
        if (found) return found;
      }
      return undefined;
    }
    for (const key of Object.keys(object)) {
      const found = check(Reflect.get(object, key), `${path}${propertyPath(key)}`, ancestors);
      if (found) return found;
    }
    return undefined;
  } finally {
    ancestors.delete(object);
  }
}

function propertyPath(key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

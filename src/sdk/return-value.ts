import { ReturnValueError } from './errors.ts';

/**
 * Why a task's return value cannot be stored as an XCom, or undefined when JSON keeps it as it
 * is. JSON.stringify would drop functions and Symbols, turn a Map or a Set into `{}` and NaN into
 * `null`: the downstream task would receive something else than what was returned, silently.
 * Objects with a `toJSON()` (a Date) are checked as what it returns, as JSON.stringify does; a
 * `toJSON()` that gives null or undefined (an invalid Date) is refused. Also refused: boxed
 * primitives (`new Number(…)`), Symbol-keyed properties, properties of an array beside its items,
 * and getters defined by an object's class (JSON leaves all of these out or changes them). `-0`
 * is stored as `0`, as JSON.stringify does.
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
  const boxed = boxedPrimitiveOf(object);
  if (boxed !== undefined)
    return {
      path,
      problem: `is a boxed ${boxed} (new ${boxed}(…); JSON stores its primitive value or drops it: return the primitive)`,
    };
  const toJSON = Reflect.get(object, 'toJSON');
  if (typeof toJSON === 'function') {
    const json: unknown = (toJSON as () => unknown).call(object);
    if (json === null || json === undefined)
      return {
        path,
        problem: `is ${object instanceof Date ? 'an invalid Date' : 'an object'} whose toJSON() returns ${json} (JSON stores ${json === null ? 'null' : 'nothing'})`,
      };
    return check(json, path, ancestors);
  }
  if (ancestors.has(object)) return { path, problem: 'refers back to an object that contains it (a cycle)' };
  for (const [type, problem] of LOSSY_CLASSES)
    if (object instanceof type) return { path, problem: `is ${problem}` };
  if (ArrayBuffer.isView(object))
    return { path, problem: `is a ${object.constructor.name} (return an array)` };
  const symbol = Object.getOwnPropertySymbols(object).find((key) =>
    Object.prototype.propertyIsEnumerable.call(object, key),
  );
  if (symbol !== undefined)
    return { path, problem: `has a Symbol-keyed property ${String(symbol)} (JSON leaves it out)` };
  const getter = classGetterOf(object);
  if (getter !== undefined)
    return {
      path,
      problem: `has a getter '${getter}' defined by its class (JSON leaves it out; return a plain object)`,
    };
  ancestors.add(object);
  try {
    if (Array.isArray(object)) {
      const extra = Object.keys(object).find((key) => !isArrayIndex(key, object.length));
      if (extra !== undefined)
        return { path, problem: `has a property '${extra}' beside its items (JSON leaves it out)` };
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

/** The name of the primitive type `object` boxes (`new Number(1)`, `Object(1n)`), if it is one. */
function boxedPrimitiveOf(object: object): string | undefined {
  const brands: [string, (this: unknown) => unknown][] = [
    ['Number', Number.prototype.valueOf],
    ['String', String.prototype.valueOf],
    ['Boolean', Boolean.prototype.valueOf],
    ['BigInt', BigInt.prototype.valueOf],
    ['Symbol', Symbol.prototype.valueOf],
  ];
  for (const [name, unbox] of brands) {
    try {
      unbox.call(object);
      return name;
    } catch {
      // Not this type's box.
    }
  }
  return undefined;
}

/** A getter on the prototype chain of `object` below Object.prototype and Array.prototype. */
function classGetterOf(object: object): string | undefined {
  for (
    let proto = Object.getPrototypeOf(object) as object | null;
    proto !== null && proto !== Object.prototype && proto !== Array.prototype;
    proto = Object.getPrototypeOf(proto) as object | null
  ) {
    for (const key of Object.getOwnPropertyNames(proto)) {
      if (Object.getOwnPropertyDescriptor(proto, key)?.get) return key;
    }
  }
  return undefined;
}

function isArrayIndex(key: string, length: number): boolean {
  return /^(0|[1-9][0-9]*)$/.test(key) && Number(key) < length;
}

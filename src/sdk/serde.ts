import { types } from 'node:util';
import { SdkError } from './errors.ts';

/**
 * Serde: the JSON text that carries trigger kwargs, defer kwargs and trigger event payloads between
 * processes. Plain JSON stays as it is; a value JSON cannot keep travels as
 * `{"__updraft_type": "<class name>", "value": <json>}`. Built-in classes are named `updraft.*`;
 * users add their own with `registerSerializable`. Reading a typed value rebuilds a class, so
 * `deserialize` only rebuilds the classes its `allowed` list names (Airflow's
 * allowed_deserialization_classes): a payload from a compromised or buggy trigger cannot make a
 * worker construct anything else.
 */

export const SERDE_TYPE_KEY = '__updraft_type';
/** The setting that lists the classes `deserialize` may rebuild; named in its errors. */
export const ALLOWED_CLASSES_SETTING = 'UPDRAFT_ALLOWED_DESERIALIZATION_CLASSES';
export const DEFAULT_ALLOWED_DESERIALIZATION_CLASSES: readonly string[] = ['updraft.*'];

/** How one class of values travels: `is` picks the values, `toJSON` / `fromJSON` convert them. */
export interface Serializable {
  is(value: unknown): boolean;
  /** Plain data; it is itself serialized, so it may hold other serializable values. */
  toJSON(value: never): unknown;
  fromJSON(json: unknown): unknown;
}

export class SerdeError extends SdkError {
  override name = 'SerdeError';
}

/** A value that serde cannot carry (NaN, a function, an unregistered class instance, a cycle…). */
export class SerializationError extends SerdeError {
  override name = 'SerializationError';
  /** Where the value sits, e.g. `kwargs.when`. */
  readonly path: string;

  constructor(path: string, problem: string) {
    super(`${path} ${problem}`);
    this.path = path;
  }
}

/** A payload names a class the allowlist does not let this process rebuild. */
export class DeserializationNotAllowedError extends SerdeError {
  override name = 'DeserializationNotAllowedError';
  readonly className: string;

  constructor(className: string, allowed: readonly string[]) {
    super(
      `Refusing to deserialize class '${className}': it is not allowed by ${ALLOWED_CLASSES_SETTING} (${allowed.length === 0 ? 'empty' : allowed.join(', ')}). Add '${className}' or a pattern such as '${patternFor(className)}' to that setting if the payload is trusted`,
    );
    this.className = className;
  }
}

/** A payload names a class nobody registered in this process, or its value does not fit the class. */
export class UnknownSerializedClassError extends SerdeError {
  override name = 'UnknownSerializedClassError';
}

const CLASS_NAME_PATTERN = /^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/;
const BUILTIN_PREFIX = 'updraft.';

// Shared through globalThis: a DAG file may bring its own copy of this module, and its classes
// must still be found by the copy the worker or triggerer deserializes with.
const REGISTRY_KEY = Symbol.for('updraft.serde.registry');

function userRegistry(): Map<string, Serializable> {
  const holder = globalThis as typeof globalThis & { [REGISTRY_KEY]?: Map<string, Serializable> };
  holder[REGISTRY_KEY] ??= new Map();
  return holder[REGISTRY_KEY];
}

/**
 * Teaches serde a class of values, under a dotted name such as `myco.Money`. Registering the name
 * again replaces the earlier codec (a DAG file imported afresh after an edit registers again).
 * Names starting with `updraft.` are Updraft's own: the default allowlist opens them, so a user
 * class there would be rebuilt without anyone allowing it. Deserializing needs the name (or a
 * pattern covering it) in UPDRAFT_ALLOWED_DESERIALIZATION_CLASSES.
 */
export function registerSerializable(name: string, codec: Serializable): void {
  if (typeof name !== 'string' || !CLASS_NAME_PATTERN.test(name)) {
    throw new SerdeError(
      `registerSerializable(): name ${JSON.stringify(name)} is not a dotted class name such as 'myco.Money'`,
    );
  }
  if (name.startsWith(BUILTIN_PREFIX)) {
    throw new SerdeError(
      `registerSerializable(): names starting with '${BUILTIN_PREFIX}' are reserved for Updraft's own classes; use your own prefix, e.g. 'myco.${name.slice(BUILTIN_PREFIX.length)}'`,
    );
  }
  for (const key of ['is', 'toJSON', 'fromJSON'] as const) {
    if (typeof codec?.[key] !== 'function') {
      throw new SerdeError(`registerSerializable('${name}'): the codec needs a function '${key}'`);
    }
  }
  userRegistry().set(name, codec);
}

/** Whether `className` is allowed by `allowed` (exact names, or `prefix.*` for a whole prefix). */
export function isClassAllowed(className: string, allowed: readonly string[]): boolean {
  return allowed.some((entry) =>
    entry.endsWith('.*') ? className.startsWith(entry.slice(0, -1)) : entry === className,
  );
}

function patternFor(className: string): string {
  const dot = className.lastIndexOf('.');
  return dot > 0 ? `${className.slice(0, dot)}.*` : className;
}

// ——— Built-in classes ———

interface BuiltinCodec {
  is(value: object): boolean;
  /** The JSON of the value; `encodeNested` serializes values inside it (a Map's entries). */
  toJSON(value: never, path: string, encodeNested: (value: unknown, path: string) => unknown): unknown;
  fromJSON(json: unknown, decodeNested: (json: unknown) => unknown): unknown;
}

function base64Of(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function bytesOf(json: unknown, className: string): Buffer {
  if (typeof json !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(json)) malformed(className, 'base64 text');
  return Buffer.from(json, 'base64');
}

function malformed(className: string, expected: string): never {
  throw new UnknownSerializedClassError(`A '${className}' value is malformed: expected ${expected}`);
}

function pairsOf(json: unknown, className: string): [unknown, unknown][] {
  if (!Array.isArray(json) || !json.every((pair) => Array.isArray(pair) && pair.length === 2)) {
    malformed(className, 'a list of [key, value] pairs');
  }
  return json as [unknown, unknown][];
}

const BUILTINS: ReadonlyMap<string, BuiltinCodec> = new Map<string, BuiltinCodec>([
  [
    'updraft.Date',
    {
      is: (value) => types.isDate(value),
      toJSON: (value: Date, path) => {
        if (Number.isNaN(value.getTime())) throw new SerializationError(path, 'is an invalid Date');
        return value.toISOString();
      },
      fromJSON: (json) => {
        const date = typeof json === 'string' ? new Date(json) : new Date(Number.NaN);
        if (Number.isNaN(date.getTime())) malformed('updraft.Date', 'an ISO-8601 date');
        return date;
      },
    },
  ],
  [
    'updraft.BigInt',
    {
      // Boxed BigInts are objects; primitive ones are handled before the class lookup.
      is: () => false,
      toJSON: () => null,
      fromJSON: (json) => {
        if (typeof json !== 'string' || !/^-?\d+$/.test(json))
          malformed('updraft.BigInt', 'a decimal integer');
        return BigInt(json);
      },
    },
  ],
  [
    'updraft.Map',
    {
      is: (value) => types.isMap(value),
      toJSON: (value: Map<unknown, unknown>, path, encode) =>
        [...value].map(([key, item], index) => [
          encode(key, `${path}.keys()[${index}]`),
          encode(item, `${path}.get(${describeKey(key)})`),
        ]),
      fromJSON: (json, decode) =>
        new Map(pairsOf(json, 'updraft.Map').map(([key, item]) => [decode(key), decode(item)])),
    },
  ],
  [
    'updraft.Set',
    {
      is: (value) => types.isSet(value),
      toJSON: (value: Set<unknown>, path, encode) =>
        [...value].map((item, index) => encode(item, `${path}.values()[${index}]`)),
      fromJSON: (json, decode) => {
        if (!Array.isArray(json)) malformed('updraft.Set', 'a list');
        return new Set(json.map((item) => decode(item)));
      },
    },
  ],
  [
    'updraft.URL',
    {
      is: (value) => value instanceof URL,
      toJSON: (value: URL) => value.href,
      fromJSON: (json) => {
        if (typeof json !== 'string' || !URL.canParse(json)) malformed('updraft.URL', 'an absolute URL');
        return new URL(json);
      },
    },
  ],
  // Buffer before Uint8Array: a Buffer is a Uint8Array too, and should come back as a Buffer.
  [
    'updraft.Buffer',
    {
      is: (value) => Buffer.isBuffer(value),
      toJSON: (value: Buffer) => base64Of(value),
      fromJSON: (json) => bytesOf(json, 'updraft.Buffer'),
    },
  ],
  [
    'updraft.Uint8Array',
    {
      is: (value) => types.isUint8Array(value),
      toJSON: (value: Uint8Array) => base64Of(value),
      fromJSON: (json) => Uint8Array.from(bytesOf(json, 'updraft.Uint8Array')),
    },
  ],
  // A plain object that itself has a `__updraft_type` key: its keys are taken literally.
  [
    'updraft.Object',
    {
      is: () => false,
      toJSON: () => null,
      fromJSON: (json, decode) => {
        if (!isPlainObject(json)) malformed('updraft.Object', 'an object');
        const object: Record<string, unknown> = {};
        for (const [key, item] of Object.entries(json)) defineOwn(object, key, decode(item));
        return object;
      },
    },
  ],
]);

function describeKey(key: unknown): string {
  if (typeof key === 'string') return JSON.stringify(key);
  if (typeof key === 'number' || typeof key === 'boolean' || key === null) return String(key);
  return '…';
}

/** Sets an own enumerable property, even for `__proto__` (an assignment would set the prototype). */
function defineOwn(object: object, key: string, value: unknown): void {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
}

/** An object literal or a null-prototype object, from this realm or another. */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as object | null;
  if (proto === null || proto === Object.prototype) return true;
  return Object.getPrototypeOf(proto) === null && proto.constructor?.name === 'Object';
}

function typed(className: string, value: unknown): Record<string, unknown> {
  return { [SERDE_TYPE_KEY]: className, value };
}

// ——— Serialize ———

/**
 * The serde JSON text of `value`. `root` names the value in errors (`kwargs` gives paths such as
 * `kwargs.when`). Objects drop `undefined` properties and arrays turn `undefined` into null, as
 * JSON does; a top-level `undefined` is `null`. Refused with a SerializationError naming the path:
 * NaN and ±Infinity, functions, Symbols, cycles, and class instances that are neither built in
 * nor registered.
 */
export function serialize(value: unknown, options: { root?: string } = {}): string {
  const encoded = encode(value, options.root ?? 'value', new Set());
  return JSON.stringify(encoded === undefined ? null : encoded);
}

function encode(value: unknown, path: string, ancestors: Set<object>): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new SerializationError(path, `is ${value}, which JSON cannot carry`);
      return value;
    case 'bigint':
      return typed('updraft.BigInt', value.toString());
    case 'symbol':
      throw new SerializationError(path, 'is a Symbol, which cannot be serialized');
    case 'function':
      throw new SerializationError(
        path,
        'is a function, which cannot be serialized (kwargs are data: pass a name or a setting instead)',
      );
  }
  if (value === null) return null;
  const object = value as object;
  if (ancestors.has(object)) throw new SerializationError(path, 'refers back to an object that contains it');
  ancestors.add(object);
  try {
    const nested = (item: unknown, itemPath: string) => encode(item, itemPath, ancestors);
    // Registered classes first, so a user can keep a subclass of Map or Date as its own class.
    for (const [name, codec] of userRegistry()) {
      if (codec.is(object)) return typed(name, nested(codec.toJSON(object as never), `${path}<${name}>`));
    }
    for (const [name, codec] of BUILTINS) {
      if (codec.is(object)) return typed(name, codec.toJSON(object as never, path, nested));
    }
    if (Array.isArray(object)) {
      return object.map((item: unknown, index) => {
        const encoded = nested(item, `${path}[${index}]`);
        return encoded === undefined ? null : encoded;
      });
    }
    if (!isPlainObject(object)) {
      const className = (object as { constructor?: { name?: unknown } }).constructor?.name;
      throw new SerializationError(
        path,
        `is an instance of ${typeof className === 'string' && className !== '' ? className : 'a class'}, which serde does not know: pass plain data, or register the class with registerSerializable()`,
      );
    }
    const encoded: Record<string, unknown> = {};
    for (const key of Object.keys(object)) {
      const item = nested(Reflect.get(object, key), `${path}${propertyPath(key)}`);
      if (item !== undefined) defineOwn(encoded, key, item);
    }
    return Object.hasOwn(object, SERDE_TYPE_KEY) ? typed('updraft.Object', encoded) : encoded;
  } finally {
    ancestors.delete(object);
  }
}

function propertyPath(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

// ——— Deserialize ———

/**
 * Reads serde JSON text back into values. `allowed` lists the classes it may rebuild, as names or
 * `prefix.*` patterns (UPDRAFT_ALLOWED_DESERIALIZATION_CLASSES, `['updraft.*']` by default). Throws
 * DeserializationNotAllowedError for a class outside the list, UnknownSerializedClassError for a
 * class nobody registered here (or a malformed value), SerdeError for text that is not JSON.
 */
export function deserialize(text: string, options: { allowed: readonly string[] }): unknown {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new SerdeError(`Cannot deserialize: the text is not JSON (${(error as Error).message})`, {
      cause: error,
    });
  }
  return decode(json, options.allowed);
}

function decode(json: unknown, allowed: readonly string[]): unknown {
  if (typeof json !== 'object' || json === null) return json;
  if (Array.isArray(json)) return json.map((item) => decode(item, allowed));
  const record = json as Record<string, unknown>;
  if (Object.hasOwn(record, SERDE_TYPE_KEY)) return decodeTyped(record, allowed);
  // JSON.parse keeps `__proto__` as an own key; copying it by assignment would set the prototype.
  const object: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(record)) defineOwn(object, key, decode(item, allowed));
  return object;
}

function decodeTyped(record: Record<string, unknown>, allowed: readonly string[]): unknown {
  const className = record[SERDE_TYPE_KEY];
  if (typeof className !== 'string' || className === '') {
    throw new UnknownSerializedClassError(`A typed value has ${SERDE_TYPE_KEY} ${JSON.stringify(className)}`);
  }
  if (!isClassAllowed(className, allowed)) throw new DeserializationNotAllowedError(className, allowed);
  const extra = Object.keys(record).find((key) => key !== SERDE_TYPE_KEY && key !== 'value');
  if (extra !== undefined || !Object.hasOwn(record, 'value')) {
    malformed(className, `exactly the keys ${SERDE_TYPE_KEY} and value`);
  }
  const nested = (json: unknown) => decode(json, allowed);
  const builtin = BUILTINS.get(className);
  if (builtin) return builtin.fromJSON(record.value, nested);
  const codec = className.startsWith(BUILTIN_PREFIX) ? undefined : userRegistry().get(className);
  if (!codec) {
    throw new UnknownSerializedClassError(
      `Cannot deserialize class '${className}': no registerSerializable('${className}', …) ran in this process. Import the module that registers it (on a triggerer: list it in UPDRAFT_TRIGGER_MODULES)`,
    );
  }
  return codec.fromJSON(nested(record.value));
}

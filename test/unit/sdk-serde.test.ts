import { describe, expect, it } from 'vitest';
import {
  DeserializationNotAllowedError,
  deserialize,
  isClassAllowed,
  registerSerializable,
  SerializationError,
  serialize,
  UnknownSerializedClassError,
} from '#sdk/serde.ts';

const DEFAULT = { allowed: ['updraft.*'] } as const;

function roundTrip(value: unknown, allowed: readonly string[] = ['updraft.*', 'tests.*']): unknown {
  return deserialize(serialize(value), { allowed });
}

class Money {
  readonly amount: bigint;
  readonly currency: string;

  constructor(amount: bigint, currency: string) {
    this.amount = amount;
    this.currency = currency;
  }
}

registerSerializable('tests.Money', {
  is: (value) => value instanceof Money,
  toJSON: (value: Money) => ({ amount: value.amount, currency: value.currency }),
  fromJSON: (json) => {
    const { amount, currency } = json as { amount: bigint; currency: string };
    return new Money(amount, currency);
  },
});

describe('serde round trip', () => {
  it('keeps plain JSON as it is', () => {
    const value = { a: 1, b: 'two', c: [true, null, 3.5], d: { e: 0 } };
    expect(serialize(value)).toBe(JSON.stringify(value));
    expect(roundTrip(value)).toEqual(value);
  });

  it('keeps a Date', () => {
    const date = new Date('2026-03-01T12:34:56.789Z');
    const back = roundTrip(date);
    expect(back).toBeInstanceOf(Date);
    expect((back as Date).toISOString()).toBe('2026-03-01T12:34:56.789Z');
  });

  it('keeps a BigInt beyond the safe integer range', () => {
    expect(roundTrip(12345678901234567890123n)).toBe(12345678901234567890123n);
  });

  it('keeps a Map with non-string keys and typed values', () => {
    const map = new Map<unknown, unknown>([
      [1, new Date(0)],
      ['k', 2n],
    ]);
    expect(roundTrip(map)).toEqual(map);
  });

  it('keeps a Set', () => {
    const set = new Set([1, 'a', 3n]);
    expect(roundTrip(set)).toEqual(set);
  });

  it('keeps a URL', () => {
    const back = roundTrip(new URL('https://example.com/a?b=c'));
    expect(back).toBeInstanceOf(URL);
    expect((back as URL).href).toBe('https://example.com/a?b=c');
  });

  it('keeps a Uint8Array as base64', () => {
    const bytes = new Uint8Array([0, 1, 254, 255]);
    expect(serialize(bytes)).toBe('{"__updraft_type":"updraft.Uint8Array","value":"AAH+/w=="}');
    const back = roundTrip(bytes);
    expect(back).toBeInstanceOf(Uint8Array);
    expect(Buffer.isBuffer(back)).toBe(false);
    expect([...(back as Uint8Array)]).toEqual([0, 1, 254, 255]);
  });

  it('keeps a Buffer as a Buffer', () => {
    const back = roundTrip(Buffer.from('hello'));
    expect(Buffer.isBuffer(back)).toBe(true);
    expect((back as Buffer).toString()).toBe('hello');
  });

  it('keeps a plain object that has the type key itself', () => {
    const value = { __updraft_type: 'updraft.Date', value: 'not a date', when: new Date(0) };
    expect(roundTrip(value)).toEqual(value);
  });

  it('keeps typed values nested in arrays, objects, Maps and Sets', () => {
    const value = {
      runs: [{ at: new Date(1_000), ids: new Set([1n, 2n]) }],
      index: new Map([['x', { url: new URL('http://127.0.0.1/') }]]),
    };
    expect(roundTrip(value)).toEqual(value);
  });

  it('keeps a registered class, with typed values inside its JSON', () => {
    const back = roundTrip({ price: new Money(1999n, 'EUR') });
    expect(back).toEqual({ price: new Money(1999n, 'EUR') });
    expect((back as { price: unknown }).price).toBeInstanceOf(Money);
  });

  it('drops undefined properties and turns undefined items into null, as JSON does', () => {
    expect(roundTrip({ a: undefined, b: [undefined, 1] })).toEqual({ b: [null, 1] });
  });

  it('serializes a top-level undefined as null', () => {
    expect(serialize(undefined)).toBe('null');
  });
});

describe('serde refusals at serialize time', () => {
  it('refuses NaN naming the path', () => {
    expect(() => serialize({ when: { ratio: Number.NaN } }, { root: 'kwargs' })).toThrow(
      'kwargs.when.ratio is NaN',
    );
  });

  it('refuses Infinity in an array naming the index', () => {
    expect(() => serialize([1, Number.POSITIVE_INFINITY], { root: 'kwargs' })).toThrow(
      'kwargs[1] is Infinity',
    );
  });

  it('refuses a function naming the path', () => {
    expect(() => serialize({ when: () => 1 }, { root: 'kwargs' })).toThrow(
      new SerializationError(
        'kwargs.when',
        'is a function, which cannot be serialized (kwargs are data: pass a name or a setting instead)',
      ),
    );
  });

  it('refuses a Symbol', () => {
    expect(() => serialize({ s: Symbol('x') }, { root: 'kwargs' })).toThrow('kwargs.s is a Symbol');
  });

  it('refuses an unregistered class instance naming the class', () => {
    class Job {}
    expect(() => serialize({ job: new Job() }, { root: 'kwargs' })).toThrow(
      'kwargs.job is an instance of Job, which serde does not know',
    );
  });

  it('refuses a cycle', () => {
    const value: Record<string, unknown> = {};
    value.self = value;
    expect(() => serialize(value, { root: 'kwargs' })).toThrow('kwargs.self refers back to an object');
  });

  it('refuses an invalid Date', () => {
    expect(() => serialize({ at: new Date('nope') }, { root: 'kwargs' })).toThrow(
      'kwargs.at is an invalid Date',
    );
  });

  it('names a Map value by its key', () => {
    expect(() => serialize(new Map([['k', Number.NaN]]), { root: 'kwargs' })).toThrow(
      'kwargs.get("k") is NaN',
    );
  });
});

describe('serde allowlist', () => {
  const date = serialize(new Date(0));

  it('refuses a class outside the list, naming the class and the setting', () => {
    expect(() => deserialize(date, { allowed: ['myco.*'] })).toThrow(DeserializationNotAllowedError);
    expect(() => deserialize(date, { allowed: ['myco.*'] })).toThrow(
      /'updraft\.Date'.*UPDRAFT_ALLOWED_DESERIALIZATION_CLASSES/,
    );
  });

  it('refuses a registered class under the default list', () => {
    expect(() => deserialize(serialize(new Money(1n, 'EUR')), DEFAULT)).toThrow(
      "Refusing to deserialize class 'tests.Money'",
    );
  });

  it('allows a class by its exact name', () => {
    expect(
      deserialize(serialize(new Money(1n, 'EUR')), { allowed: ['tests.Money', 'updraft.BigInt'] }),
    ).toEqual(new Money(1n, 'EUR'));
  });

  it('matches prefix patterns on whole name segments', () => {
    expect(isClassAllowed('myco.billing.Money', ['myco.*'])).toBe(true);
    expect(isClassAllowed('mycorp.Money', ['myco.*'])).toBe(false);
    expect(isClassAllowed('myco.Money', ['myco.Mon'])).toBe(false);
    expect(isClassAllowed('updraft.Date', [])).toBe(false);
  });

  it('checks the classes nested inside an allowed one', () => {
    // Money's JSON holds a BigInt: rebuilding it needs updraft.BigInt allowed too.
    expect(() => deserialize(serialize(new Money(1n, 'EUR')), { allowed: ['tests.Money'] })).toThrow(
      "Refusing to deserialize class 'updraft.BigInt'",
    );
  });

  it('reports an allowed class that nobody registered', () => {
    const text = JSON.stringify({ __updraft_type: 'other.Thing', value: 1 });
    expect(() => deserialize(text, { allowed: ['other.*'] })).toThrow(UnknownSerializedClassError);
    expect(() => deserialize(text, { allowed: ['other.*'] })).toThrow(
      "Cannot deserialize class 'other.Thing': no registerSerializable('other.Thing', …) ran in this process",
    );
  });

  it('reports a malformed built-in value', () => {
    const text = JSON.stringify({ __updraft_type: 'updraft.BigInt', value: '1.5' });
    expect(() => deserialize(text, DEFAULT)).toThrow("A 'updraft.BigInt' value is malformed");
  });
});

describe('serde safety', () => {
  it('keeps a __proto__ key as data without touching the prototype', () => {
    const back = deserialize('{"__proto__": {"polluted": true}, "a": 1}', DEFAULT) as Record<string, unknown>;
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(Object.hasOwn(back, '__proto__')).toBe(true);
    expect((back as { polluted?: unknown }).polluted).toBeUndefined();
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });

  it('keeps a constructor key as data', () => {
    const back = deserialize('{"constructor": {"prototype": {"polluted": true}}}', DEFAULT) as object;
    expect(Object.hasOwn(back, 'constructor')).toBe(true);
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });

  it('round-trips an own __proto__ key through serialize', () => {
    const value = JSON.parse('{"__proto__": {"x": 1}}') as object;
    const back = roundTrip(value) as object;
    expect(Object.getOwnPropertyDescriptor(back, '__proto__')?.value).toEqual({ x: 1 });
  });

  it('reserves the updraft. prefix for built-in classes', () => {
    expect(() =>
      registerSerializable('updraft.Money', { is: () => false, toJSON: () => 0, fromJSON: () => 0 }),
    ).toThrow("names starting with 'updraft.' are reserved");
  });

  it('shares the registry through globalThis', () => {
    const registry = (globalThis as Record<symbol, unknown>)[Symbol.for('updraft.serde.registry')] as Map<
      string,
      unknown
    >;
    expect(registry.has('tests.Money')).toBe(true);
  });

  it('refuses text that is not JSON', () => {
    expect(() => deserialize('{nope', DEFAULT)).toThrow('Cannot deserialize: the text is not JSON');
  });
});

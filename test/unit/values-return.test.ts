import { describe, expect, it } from 'vitest';
import { ReturnValueError, ThrownValueError } from '#sdk/errors.ts';
import { dag } from '#sdk/index.ts';
import { nonJsonReason } from '#sdk/return-value.ts';
import { executeTask } from '#sdk/runtime.ts';
import { testContext } from './sdk-fixtures.ts';

/** A DAG whose task `extract` returns `value`. */
function returning(value: () => unknown) {
  return dag({ id: 'values' }, (d) => {
    d.task('extract', async () => value());
  });
}

const run = (value: () => unknown) => executeTask(returning(value), 'extract', [], testContext());

describe('return values that JSON cannot keep', () => {
  const cases: [string, () => unknown, string][] = [
    ['a function', () => () => 1, '$ is a function'],
    ['a Symbol', () => Symbol('s'), '$ is a Symbol'],
    ['a Map', () => new Map([['a', 1]]), '$ is a Map'],
    ['a Set', () => ({ ids: new Set([1]) }), '$.ids is a Set'],
    ['NaN', () => ({ rows: [1, Number.NaN] }), '$.rows[1] is NaN'],
    ['Infinity', () => ({ total: Number.POSITIVE_INFINITY }), '$.total is Infinity'],
    ['-Infinity', () => [Number.NEGATIVE_INFINITY], '$[0] is -Infinity'],
    ['a function property', () => ({ rows: [{ id: 1 }, { id: 2, fn() {} }] }), '$.rows[1].fn is a function'],
    ['a BigInt', () => ({ big: 1n }), '$.big is a BigInt'],
    ['a circular value', () => circular(), '$.self refers back to an object that contains it'],
    ['undefined in an array', () => [1, undefined], '$[1] is undefined'],
    ['a key that is not an identifier', () => ({ 'a b': () => 0 }), '$["a b"] is a function'],
    ['an invalid Date (JSON stores null)', () => ({ when: new Date('nope') }), '$.when is an invalid Date'],
    [
      'a boxed NaN (JSON stores null)',
      () => ({ value: new Number(Number.NaN) }),
      '$.value is a boxed Number',
    ],
    ['a boxed string (JSON unboxes it)', () => [new String('x')], '$[0] is a boxed String'],
    [
      'a Symbol-keyed property (JSON drops it)',
      () => ({ [Symbol('id')]: 1, name: 'x' }),
      '$ has a Symbol-keyed property Symbol(id)',
    ],
    [
      'a getter of a class (JSON drops it)',
      () => ({ total: new Total() }),
      "$.total has a getter 'sum' defined by its class",
    ],
    [
      'an array property beside the items (JSON drops it)',
      () => Object.assign([1], { note: 'x' }),
      "$ has a property 'note' beside its items",
    ],
  ];

  it.each(cases)('refuses %s, naming the task and the path', async (_kind, value, problem) => {
    const attempt = run(value);
    await expect(attempt).rejects.toBeInstanceOf(ReturnValueError);
    await expect(run(value)).rejects.toThrow(
      `The return value of task 'extract' cannot be stored as an XCom: ${problem}`,
    );
  });

  it('accepts JSON values, Dates (as their toJSON) and missing object properties', async () => {
    const value = { n: 1.5, s: 'x', b: true, z: null, list: [1, [2]], when: new Date(0), maybe: undefined };
    expect(await run(() => value)).toEqual({ kind: 'success', value });
  });

  it('checks the values JSON changes silently as JSON.stringify sees them', () => {
    expect(JSON.stringify(new Date('nope'))).toBe('null');
    expect(JSON.stringify(new Number(Number.NaN))).toBe('null');
    expect(JSON.stringify({ [Symbol('id')]: 1, name: 'x' })).toBe('{"name":"x"}');
    expect(JSON.stringify(new Total())).toBe('{"parts":[1,2]}');
    expect(nonJsonReason({ when: new Date('nope') })).toBeDefined();
  });

  it('accepts class instances with methods only, and -0 (stored as 0, as JSON does)', async () => {
    class Point {
      x = 1;
      y = 2;
      norm() {
        return Math.hypot(this.x, this.y);
      }
    }
    expect(await run(() => ({ at: new Point(), zero: -0 }))).toMatchObject({ kind: 'success' });
    expect(JSON.stringify({ zero: -0 })).toBe('{"zero":0}');
  });

  it('accepts the same object twice when it is not a cycle', async () => {
    const shared = { a: 1 };
    expect(await run(() => ({ left: shared, right: shared }))).toMatchObject({ kind: 'success' });
  });
});

describe('thrown values that are not Errors', () => {
  it('carries a thrown plain object as an Error showing it, not [object Object]', async () => {
    const failing = dag({ id: 'throws' }, (d) => {
      d.task('extract', async () => {
        throw { code: 42, reason: 'bad row' };
      });
    });
    const attempt = executeTask(failing, 'extract', [], testContext());
    await expect(attempt).rejects.toBeInstanceOf(ThrownValueError);
    await expect(executeTask(failing, 'extract', [], testContext())).rejects.toThrow(
      "Task 'extract' threw a value that is not an Error: { code: 42, reason: 'bad row' }",
    );
  });

  it('keeps a thrown Error as it is', async () => {
    const error = new TypeError('boom');
    const failing = dag({ id: 'throws_error' }, (d) => {
      d.task('extract', async () => {
        throw error;
      });
    });
    await expect(executeTask(failing, 'extract', [], testContext())).rejects.toBe(error);
  });
});

class Total {
  parts = [1, 2];
  get sum() {
    return 3;
  }
}

function circular(): unknown {
  const value: Record<string, unknown> = { a: 1 };
  value.self = value;
  return value;
}

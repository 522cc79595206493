import { describe, expect, it } from 'vitest';
import { CallbackResolutionError, resolveCallback } from '#sdk/callback-resolve.ts';
import { type CallbackContext, type DagOptions, DagValidationError, dag } from '#sdk/index.ts';
import { dagVersionHash, serializeDag } from '#sdk/serialize.ts';

function late(_ctx: CallbackContext): void {}
function page(_ctx: CallbackContext): void {}

function build(options: Partial<DagOptions> = {}) {
  return dag({ id: 'dl', ...options }, (d) => {
    d.task('only', () => null);
  });
}

/** The DagValidationError message of building a DAG with this `deadline` option. */
function refusal(deadline: unknown): string {
  try {
    build({ deadline: deadline as DagOptions['deadline'] });
  } catch (error) {
    expect(error).toBeInstanceOf(DagValidationError);
    return (error as Error).message;
  }
  throw new Error('expected the DAG to be refused');
}

describe('the deadline option', () => {
  it('takes one deadline or a list, keeping each one’s callbacks', () => {
    const one = build({ deadline: { within: '30m', of: 'logical_date', callback: late } });
    expect(one.options.deadlines.map((d) => d.callbacks.map((c) => c.fn))).toEqual([[late]]);
    const two = build({
      deadline: [
        { by: new Date('2026-03-01T06:00:00Z'), callback: [late, page] },
        { within: '2x', of: 'average_duration', callback: { callback: page, timeout: '10s' } },
      ],
    });
    expect(two.options.deadlines.map((d) => d.serialized)).toEqual([
      {
        reference: 'fixed_time',
        by: '2026-03-01T06:00:00.000Z',
        callbacks: [{ name: 'late' }, { name: 'page' }],
      },
      { reference: 'average_duration', times: 2, over: 10, callbacks: [{ name: 'page', timeoutMs: 10_000 }] },
    ]);
  });

  it('leaves the serialized DAG and its version as they were when there is none', () => {
    const without = serializeDag(build(), 'dl.ts');
    const empty = serializeDag(build({ deadline: [] }), 'dl.ts');
    expect(without).not.toHaveProperty('deadlines');
    expect(dagVersionHash(empty)).toBe(dagVersionHash(without));
    const withOne = serializeDag(
      build({ deadline: { within: 60, of: 'queued_at', callback: late } }),
      'dl.ts',
    );
    expect(dagVersionHash(withOne)).not.toBe(dagVersionHash(without));
  });

  it('refuses more than 10 deadlines, naming the limit', () => {
    const deadline = Array.from({ length: 11 }, () => ({ within: '1m', of: 'queued_at', callback: late }));
    expect(refusal(deadline)).toBe(
      "DAG 'dl': option 'deadline' lists 11 deadlines, over the limit of 10 per DAG",
    );
  });

  it('refuses something that is no deadline, and unknown keys', () => {
    expect(refusal('30m')).toMatch(/^DAG 'dl': option 'deadline': expected \{ within, of, callback \}/);
    expect(refusal([{ within: '1m', of: 'queued_at', callback: late, after: 1 }])).toBe(
      "DAG 'dl': option 'deadline[0]': unknown key 'after' (a deadline takes within, of, over, by, callback)",
    );
  });

  it('needs a callback, and at most 20 of them', () => {
    expect(refusal({ within: '1m', of: 'queued_at' })).toBe(
      "DAG 'dl': option 'deadline': 'callback' is required",
    );
    expect(refusal({ within: '1m', of: 'queued_at', callback: [] })).toMatch(/lists no callback/);
    expect(refusal({ within: '1m', of: 'queued_at', callback: Array(21).fill(late) })).toBe(
      "DAG 'dl': option 'deadline.callback' lists 21 callbacks, over the limit of 20 per event",
    );
    expect(refusal({ within: '1m', of: 'queued_at', callback: { callback: late, retries: 101 } })).toMatch(
      /'retries' must be an integer from 0 to 100/,
    );
  });

  it('refuses an unknown reference, and by together with within', () => {
    expect(refusal({ within: '1m', of: 'start_date', callback: late })).toMatch(
      /'of' must be 'logical_date', 'queued_at', 'average_duration'/,
    );
    expect(refusal({ by: '2026-03-01T06:00:00Z', within: '1m', callback: late })).toMatch(
      /either 'by' or 'within' and 'of', not both/,
    );
  });

  it('refuses a within that is not positive, longer than 366 days, or a multiple', () => {
    expect(refusal({ within: 0, of: 'queued_at', callback: late })).toBe(
      "DAG 'dl': option 'deadline': 'within' must be greater than 0",
    );
    expect(refusal({ within: '367d', of: 'logical_date', callback: late })).toMatch(
      /'within' is 31708800000 ms, over the longest a deadline may be, 31622400000 ms \(366 days\)/,
    );
    expect(refusal({ within: '2x', of: 'logical_date', callback: late })).toMatch(
      /is for of: 'average_duration'/,
    );
    expect(refusal({ within: '5 minutes', of: 'logical_date', callback: late })).toMatch(
      /Invalid duration for 'within'/,
    );
  });

  it('refuses an average-duration deadline without a multiple from over 0 to 100x, or over out of 1 to 100', () => {
    expect(refusal({ within: '30m', of: 'average_duration', callback: late })).toMatch(
      /a multiple like '2x'/,
    );
    expect(refusal({ within: '101x', of: 'average_duration', callback: late })).toMatch(/at most 100x/);
    expect(refusal({ within: '0x', of: 'average_duration', callback: late })).toMatch(/more than 0/);
    expect(refusal({ within: '2x', of: 'average_duration', over: 101, callback: late })).toMatch(
      /'over' must be a whole number of runs from 1 to 100, got 101/,
    );
    expect(refusal({ within: '1m', of: 'queued_at', over: 5, callback: late })).toMatch(
      /'over' applies only to of: 'average_duration'/,
    );
  });

  it('refuses a fixed time without an offset', () => {
    expect(refusal({ by: '2026-03-01T06:00:00', callback: late })).toMatch(
      /'by' must be an ISO-8601 date-time with an offset/,
    );
  });

  it('refuses a fixed time that is not on the calendar, and takes a leap day', () => {
    for (const by of [
      '2026-02-30T00:00:00Z',
      '2026-02-29T06:00Z',
      '2026-04-31T00:00:00+02:00',
      '2026-03-01T24:00:00Z',
    ])
      expect(refusal({ by, callback: late }), by).toMatch(
        /'by' must be an ISO-8601 date-time with an offset/,
      );
    expect(() => build({ deadline: { by: '2028-02-29T06:00:00+01:00', callback: late } })).not.toThrow();
  });

  it('refuses a fixed time outside the years 0001 to 9999, and takes one at 9999', () => {
    expect(refusal({ by: new Date(1_780_000_000_000 * 1000), callback: late })).toMatch(
      /'by' is in the year \d+, outside 0001 to 9999/,
    );
    expect(refusal({ by: new Date(-62_200_000_000_000), callback: late })).toMatch(/outside 0001 to 9999/);
    expect(() => build({ deadline: { by: '9999-12-31T00:00:00Z', callback: late } })).not.toThrow();
  });
});

describe('resolving a deadline callback', () => {
  const built = build({
    deadline: [
      { within: '1m', of: 'queued_at', callback: late },
      { within: '1h', of: 'queued_at', callback: [late, page] },
    ],
  });

  it("finds it in its deadline's list", () => {
    expect(resolveCallback(built, { taskId: null, event: 'deadline[1]', index: 1, name: 'page' })).toBe(page);
  });

  it('refuses a deadline the DAG no longer has', () => {
    expect(() =>
      resolveCallback(built, { taskId: null, event: 'deadline[2]', index: 0, name: 'late' }),
    ).toThrow(CallbackResolutionError);
    expect(() =>
      resolveCallback(built, { taskId: null, event: 'deadline[2]', index: 0, name: 'late' }),
    ).toThrow("DAG 'dl' has 2 deadlines, the run expects callback 0 of deadline 2 ('late')");
  });
});

import { describe, expect, it } from 'vitest';
import { dag, registerSerializable, TimeDeltaTrigger } from '#sdk/index.ts';
import { runTaskTry } from '#worker/task-try.ts';
import { testContext } from './sdk-fixtures.ts';

/** One try's code as a worker runs it: deferral out, resume in, payloads under the allowlist. */
class Secret {
  readonly value: string;
  constructor(value: string) {
    this.value = value;
  }
}
registerSerializable('myco.Secret', {
  is: (value) => value instanceof Secret,
  toJSON: (value) => (value as Secret).value,
  fromJSON: (json) => new Secret(String(json)),
});

const waits = dag({ id: 'waits' }, (d) => {
  d.task({ id: 'wait' }, async (ctx) => {
    if (!ctx.resume) {
      return ctx.defer({
        trigger: new TimeDeltaTrigger({ delta: 1_000 }),
        method: 'resume',
        timeout: '1m',
        kwargs: { at: new Date('2030-01-01T00:00:00Z'), secret: new Secret('s') },
      });
    }
    const event = ctx.resume.event as { who: Secret };
    return { who: event.who instanceof Secret ? event.who.value : null, seq: ctx.resume.deferralSeq };
  });
});

const secretEvent = '{"who":{"__updraft_type":"myco.Secret","value":"agent"}}';
const resume = (event: string) => ({ method: 'resume', kwargs: '{}', event, deferral_seq: 1 });

describe('runTaskTry', () => {
  it('turns a deferral into the wire form, its kwargs as serde text', async () => {
    const outcome = await runTaskTry(waits, 'wait', [], testContext(), undefined, ['updraft.*']);
    expect(outcome.kind).toBe('deferred');
    if (outcome.kind !== 'deferred') return;
    expect(outcome.deferral).toMatchObject({
      trigger: { name: 'updraft.TimeDeltaTrigger' },
      next_method: 'resume',
      timeout_ms: 60_000,
    });
    expect(JSON.parse(outcome.deferral.next_kwargs)).toEqual({
      at: { __updraft_type: 'updraft.Date', value: '2030-01-01T00:00:00.000Z' },
      secret: { __updraft_type: 'myco.Secret', value: 's' },
    });
  });

  it('fails the try without a retry when the event names a class not on the allowlist, naming it', async () => {
    const outcome = await runTaskTry(waits, 'wait', [], testContext(), resume(secretEvent), ['updraft.*']);
    expect(outcome.kind).toBe('failed_no_retry');
    expect(outcome.kind === 'failed_no_retry' && outcome.reason).toMatch(
      /myco\.Secret[\s\S]*UPDRAFT_ALLOWED_DESERIALIZATION_CLASSES/,
    );
  });

  it('rebuilds an allowed class and resumes the task with it', async () => {
    const outcome = await runTaskTry(waits, 'wait', [], testContext(), resume(secretEvent), [
      'updraft.*',
      'myco.*',
    ]);
    expect(outcome).toEqual({ kind: 'success', xcom: '{"who":"agent","seq":1}' });
  });
});

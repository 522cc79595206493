import { describe, expect, it } from 'vitest';
import { triggerIdOf } from '#engine/triggers.ts';
import {
  checkDeferralTimeouts,
  checkOutcomesKept,
  checkTriggerAnswer,
  checkTriggerEvents,
  checkTriggersKept,
} from './invariants.ts';
import { Ledger, type TriggerAnswer } from './ledger.ts';
import { StoreMirror } from './store-gate.ts';

/** The simulation's outcome checks are not vacuous: fed a misreported or lost success, they object. */
function ledgerWithSuccess(): Ledger {
  const ledger = new Ledger(() => undefined);
  const execution = ledger.start('d/r/t/-1', 1, 0, 'worker-1', 0);
  ledger.end(execution, 'success', 1_000);
  return ledger;
}

describe('simulation invariant 3: outcomes kept', () => {
  it('objects when a try whose task succeeded was recorded as failed', () => {
    const ledger = ledgerWithSuccess();
    ledger.accepted.set('d/r/t/-1#1#0', 'failed');
    expect(checkOutcomesKept(ledger)?.message).toContain('did success but was recorded as failed');
  });

  it('objects when a worker says it delivered a success the API never accepted', () => {
    const ledger = ledgerWithSuccess();
    ledger.reported.set('d/r/t/-1#1#0', true);
    expect(checkOutcomesKept(ledger)?.message).toContain('never accepted a success');
  });

  it('accepts a success lost because its worker died before reporting', () => {
    const ledger = ledgerWithSuccess();
    const [execution] = ledger.executions;
    if (execution) execution.diedBeforeReport = true;
    expect(checkOutcomesKept(ledger)).toBeUndefined();
  });
});

/** A TI item as the store writes it, enough for the mirror. */
function tiItem(state: string, tryNumber: number, deferralSeq: number, triggerTimeoutAt?: string) {
  return {
    ...(triggerTimeoutAt ? { triggerTimeoutAt } : {}),
    pk: 'RUN#d#r',
    sk: 'TI#t#-1',
    dagId: 'd',
    runId: 'r',
    taskId: 't',
    mapIndex: -1,
    state,
    tryNumber,
    deferralSeq,
    maxTries: 1,
    pool: 'default_pool',
    poolSlots: 1,
  };
}

/** A ledger whose task deferred once (try 1) on trigger `trig`, to resume; the mirror has it deferred. */
function deferredOnce(): { ledger: Ledger; mirror: StoreMirror } {
  const ledger = new Ledger(() => undefined);
  ledger.deferrals.set('trig', {
    ti: 'd/r/t/-1',
    tryNumber: 1,
    seq: 1,
    end: 'resume',
    moment: 0,
    timeoutMs: null,
  });
  const mirror = new StoreMirror();
  mirror.observe(tiItem('running', 1, 0), 'worker#1');
  mirror.observe(tiItem('deferred', 1, 1), 'api#2');
  return { ledger, mirror };
}

const answer = (outcome: TriggerAnswer['outcome'], apiActor: string): TriggerAnswer => ({
  triggerId: 'trig',
  route: 'event',
  type: 'resume',
  outcome,
  apiActor,
  atMs: 0,
});

describe('simulation invariant 9: deferrals', () => {
  it('objects when an event answered stale changed its task instance', () => {
    const { ledger, mirror } = deferredOnce();
    mirror.observe(tiItem('scheduled', 1, 1), 'api#3');
    expect(checkTriggerAnswer(answer('stale', 'api#3'), ledger, mirror)?.invariant).toBe(
      '9c-stale-unchanged',
    );
  });

  it('accepts a resume answered applied that scheduled its deferral', () => {
    const { ledger, mirror } = deferredOnce();
    mirror.observe(tiItem('scheduled', 1, 1), 'api#3');
    expect(checkTriggerAnswer(answer('applied', 'api#3'), ledger, mirror)).toBeUndefined();
  });

  it('objects when an applied resume was never started again', () => {
    const { ledger, mirror } = deferredOnce();
    mirror.observe(tiItem('scheduled', 1, 1), 'api#3');
    ledger.triggerAnswers.push(answer('applied', 'api#3'));
    expect(checkTriggerEvents(ledger, mirror, new Set())?.invariant).toBe('9b-event-applied');
    ledger.started.add('d/r/t/-1#1#1');
    expect(checkTriggerEvents(ledger, mirror, new Set())).toBeUndefined();
  });

  it('objects when a worker resumed a deferral no event resumed', () => {
    const { ledger, mirror } = deferredOnce();
    ledger.start('d/r/t/-1', 1, 1, 'worker#4', 0);
    expect(checkTriggerEvents(ledger, mirror, new Set())?.invariant).toBe('9a-resume-once');
  });

  it('objects when a deferred task instance lost its trigger', () => {
    const { mirror } = deferredOnce();
    expect(checkTriggersKept(mirror)?.invariant).toBe('9d-trigger-kept');
    const triggerId = triggerIdOf({ dagId: 'd', runId: 'r', taskId: 't', mapIndex: -1 }, 1, 1);
    mirror.observe({ pk: 'TRIGGERS', sk: `TRIGGER#${triggerId}` }, 'api#2');
    expect(checkTriggersKept(mirror)).toBeUndefined();
  });

  it('objects when one deferral resumes twice', () => {
    const failures: string[] = [];
    const ledger = new Ledger((failure) => failures.push(failure.invariant));
    ledger.end(ledger.start('d/r/t/-1', 1, 1, 'worker#1', 0), 'success', 1);
    ledger.start('d/r/t/-1', 1, 1, 'worker#2', 2);
    expect(failures).toEqual(['9a-resume-once']);
  });

  it('objects when a tick ends a deferral before its timeout, or one without a timeout', () => {
    const mirror = new StoreMirror();
    let now = 1_000;
    mirror.clock = () => now;
    mirror.observe(tiItem('running', 1, 0), 'worker#1');
    mirror.observe(tiItem('deferred', 1, 1, new Date(5_000).toISOString()), 'api#2');
    now = 4_000;
    mirror.observe(tiItem('failed', 1, 1), 'tick#3');
    expect(checkDeferralTimeouts(mirror)?.invariant).toBe('9e-deferral-timeout');

    const onTime = new StoreMirror();
    onTime.clock = () => now;
    onTime.observe(tiItem('deferred', 1, 1, new Date(5_000).toISOString()), 'api#2');
    now = 5_000;
    onTime.observe(tiItem('up_for_retry', 1, 1), 'tick#3');
    expect(checkDeferralTimeouts(onTime)).toBeUndefined();
  });

  it('objects when an event is applied after a tick read the run past the timeout and returned', () => {
    const { ledger } = deferredOnce();
    const mirror = new StoreMirror();
    let now = 5_000;
    mirror.clock = () => now;
    mirror.observe(tiItem('running', 1, 0), 'worker#1');
    mirror.observe(tiItem('deferred', 1, 1, new Date(8_000).toISOString()), 'api#2');
    mirror.tickReads.push({ actor: 'tick#5', partition: 'RUN#d#r', atMs: 9_000 });
    mirror.ticksDone.set('tick#5', 9_500);
    now = 12_000;
    mirror.observe(tiItem('scheduled', 1, 1), 'api#3');
    expect(checkTriggerAnswer(answer('applied', 'api#3'), ledger, mirror)?.invariant).toBe(
      '9e-deferral-timeout',
    );
    // A tick that returned after the event, or read the run before the timeout, proves nothing.
    mirror.ticksDone.set('tick#5', 12_500);
    expect(checkTriggerAnswer(answer('applied', 'api#3'), ledger, mirror)).toBeUndefined();
  });
});

import { describe, expect, it } from 'vitest';
import { checkOutcomesKept } from './invariants.ts';
import { Ledger } from './ledger.ts';

/** The simulation's outcome checks are not vacuous: fed a misreported or lost success, they object. */
function ledgerWithSuccess(): Ledger {
  const ledger = new Ledger(() => undefined);
  const execution = ledger.start('d/r/t/-1', 1, 'worker-1', 0);
  ledger.end(execution, 'success', 1_000);
  return ledger;
}

describe('simulation invariant 3: outcomes kept', () => {
  it('objects when a try whose task succeeded was recorded as failed', () => {
    const ledger = ledgerWithSuccess();
    ledger.accepted.set('d/r/t/-1#1', 'failed');
    expect(checkOutcomesKept(ledger)?.message).toContain('did success but was recorded as failed');
  });

  it('objects when a worker says it delivered a success the API never accepted', () => {
    const ledger = ledgerWithSuccess();
    ledger.reported.set('d/r/t/-1#1', true);
    expect(checkOutcomesKept(ledger)?.message).toContain('never accepted a success');
  });

  it('accepts a success lost because its worker died before reporting', () => {
    const ledger = ledgerWithSuccess();
    const [execution] = ledger.executions;
    if (execution) execution.diedBeforeReport = true;
    expect(checkOutcomesKept(ledger)).toBeUndefined();
  });
});

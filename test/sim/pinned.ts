/**
 * Seeds that found a bug. The rule: a seed that found a bug stays here for good, as a regression
 * test, after the bug is fixed (replay one with `npm run sim -- --seed N --verbose`). Add the seed
 * with a one-line note of what it found. (Seeds 3 and 9, which ran a try twice and overfilled a
 * pool on the engine before it kept its scheduling state in the store, are among the fixed seeds.)
 */
export const PINNED_SEEDS: readonly { seed: number; found: string }[] = [
  {
    seed: 24,
    found: 'two executions of one task instance overlapped (zombie retried while its worker ran on)',
  },
  { seed: 25, found: 'a fresh tick never reconciled zombies of active runs past the first maxRunsPerPass' },
  { seed: 30, found: 'the reference rejected an at-once all_success skip that Airflow makes too' },
  { seed: 574, found: 'a heartbeat failing just after the task succeeded turned the success into a failure' },
  {
    seed: 239,
    found:
      "a pass rebuilt a run's state summary while a clear was resetting its TIs: it showed a reset TI as finished",
  },
  {
    seed: 55,
    found:
      'a triggerer deleted a trigger as stale while its deferral was still being written: the TI then waited in deferred with no trigger (9d; found first as a liveness failure)',
  },
  {
    seed: 3111,
    found:
      "a pass gave back another pass's pool reservation for a task resuming from a deferral (taken for its ended try's): the pool over-admitted",
  },
  {
    seed: 59,
    found:
      'a callback attempt killed its triggerer while a graceful stop waited for that attempt: the stop never ended (a harness bug; found as a liveness failure)',
  },
  {
    seed: 183,
    found:
      "a callback attempt's fault killed its triggerer in the step another attempt's sleep ended: that attempt had its effect in the dead process (a harness bug; found as 10c-effect-once)",
  },
  {
    seed: 390,
    found:
      '10a-owed-runs: a pass read the run mid-clear and missed its deadline after the clear ended, so the callback was owed at the stale clear count (the miss is now conditional on the clear count read)',
  },
  {
    seed: 108,
    found:
      "4-reference: a triggerer killed (by a callback it ran) while its trigger's success event was in flight: the API applied it, but the harness recorded only answers their caller lived to hear, so the reference expected a retry (answers are now recorded as they leave the router)",
  },
  {
    seed: 9,
    found:
      "10c-effect-once: a callback attempt had its effect, then another attempt's fault killed their triggerer while the report was on its way (503): the harness did not count it as lost after its effect (an attempt's death now counts unless the API accepted its report)",
  },
  {
    seed: 13,
    found:
      '2-max-active-runs: a pass finished a run and was held before giving its place back; a clear queued the run again and the next pass started it on the old holder, which the late release then took: three runs under max 2 (a holder now names the clear count it was taken at)',
  },
];

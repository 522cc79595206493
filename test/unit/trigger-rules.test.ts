import { describe, expect, it } from 'vitest';
import type { TriggerRule } from '#core/serialized-dag.ts';
import type { TaskInstanceState } from '#core/states.ts';
import {
  evaluateTriggerRule,
  summarizeUpstream,
  type TriggerRuleDecision,
  type UpstreamTaskInstanceState,
} from '#core/trigger-rules.ts';

/** Upstream combinations that matter, as the states of the direct upstream TIs. */
const COMBINATIONS = {
  allSuccess: ['success', 'success'],
  oneFailed: ['success', 'failed'],
  oneUpstreamFailed: ['success', 'upstream_failed'],
  successAndSkipped: ['success', 'skipped'],
  allSkipped: ['skipped', 'skipped'],
  successNotAllDone: ['success', 'running'],
  failedNotAllDone: ['failed', 'running'],
  skippedNotAllDone: ['skipped', 'running'],
  allFailed: ['failed', 'upstream_failed'],
  failedAndSkipped: ['failed', 'skipped'],
  upstreamFailedAndSkipped: ['upstream_failed', 'skipped'],
  noneStarted: ['none', 'queued'],
  noUpstream: [],
} satisfies Record<string, TaskInstanceState[]>;
type Combination = keyof typeof COMBINATIONS;

// One letter per decision keeps the table below readable as a table.
const R = 'run';
const W = 'wait';
const S = 'skip';
const U = 'upstream_failed';

/** Expected decision of every rule for every combination, in the order of `COMBINATIONS`. */
// biome-ignore format: an aligned table
const EXPECTED: Record<TriggerRule, TriggerRuleDecision[]> = {
  //                           allSuc oneF oneUF sucSk allSk sucND failND skND allF failSk ufSk noneSt noUp
  all_success:                 [R,    U,   U,    S,    S,    W,    U,     S,   U,   U,     U,   W,     R],
  all_failed:                  [S,    S,   S,    S,    S,    S,    W,     S,   R,   S,     S,   W,     R],
  all_done:                    [R,    R,   R,    R,    R,    W,    W,     W,   R,   R,     R,   W,     R],
  all_skipped:                 [S,    S,   S,    S,    R,    S,    S,     W,   S,   S,     S,   W,     R],
  one_success:                 [R,    R,   R,    R,    S,    R,    W,     W,   U,   U,     U,   W,     R],
  one_failed:                  [S,    R,   R,    S,    S,    W,    R,     W,   R,   R,     R,   W,     R],
  one_done:                    [R,    R,   R,    R,    S,    R,    R,     W,   R,   R,     S,   W,     R],
  none_failed:                 [R,    U,   U,    R,    R,    W,    U,     W,   U,   U,     U,   W,     R],
  none_failed_min_one_success: [R,    U,   U,    R,    S,    W,    U,     W,   U,   U,     U,   W,     R],
  none_skipped:                [R,    R,   R,    S,    S,    W,    W,     S,   R,   S,     S,   W,     R],
  always:                      [R,    R,   R,    R,    R,    R,    R,     R,   R,   R,     R,   R,     R],
};

function upstreamOf(states: readonly TaskInstanceState[]) {
  const upstream = states.map((_, index) => `up${index}`);
  const tisByTaskId = new Map<string, UpstreamTaskInstanceState[]>(
    states.map((state, index) => [`up${index}`, [{ state }]]),
  );
  return summarizeUpstream({ upstream }, tisByTaskId);
}

const cases = (Object.keys(EXPECTED) as TriggerRule[]).flatMap((rule) =>
  (Object.keys(COMBINATIONS) as Combination[]).map((combination, index) => ({
    rule,
    combination,
    expected: EXPECTED[rule][index]!,
  })),
);

describe('evaluateTriggerRule', () => {
  it('has an expectation for every rule and combination', () => {
    for (const decisions of Object.values(EXPECTED)) {
      expect(decisions).toHaveLength(Object.keys(COMBINATIONS).length);
    }
  });

  it.each(cases)('$rule with $combination upstream → $expected', ({ rule, combination, expected }) => {
    expect(evaluateTriggerRule(rule, upstreamOf(COMBINATIONS[combination]))).toBe(expected);
  });

  it('keeps an unmapped all_success TI waiting on a removed upstream TI', () => {
    expect(evaluateTriggerRule('all_success', upstreamOf(['success', 'removed']))).toBe('wait');
  });

  it('discounts a removed upstream TI for a mapped TI', () => {
    expect(evaluateTriggerRule('all_success', upstreamOf(['success', 'removed']), { mapIndex: 0 })).toBe(
      'run',
    );
  });
});

describe('summarizeUpstream', () => {
  it('counts each upstream state and the finished ones as done', () => {
    const summary = upstreamOf([
      'success',
      'failed',
      'upstream_failed',
      'skipped',
      'removed',
      'running',
      'none',
    ]);
    expect(summary).toEqual({
      total: 7,
      success: 1,
      failed: 1,
      upstreamFailed: 1,
      skipped: 1,
      removed: 1,
      done: 5,
    });
  });

  it('counts an upstream task without a TI as one TI that is not done', () => {
    const summary = summarizeUpstream(
      { upstream: ['a', 'b'] },
      new Map([['a', [{ state: 'success' as const }]]]),
    );
    expect(summary).toEqual({
      total: 2,
      success: 1,
      failed: 0,
      upstreamFailed: 0,
      skipped: 0,
      removed: 0,
      done: 1,
    });
  });

  it('counts a repeated upstream id once', () => {
    const summary = summarizeUpstream(
      { upstream: ['a', 'a'] },
      new Map([['a', [{ state: 'success' as const }]]]),
    );
    expect(summary.total).toBe(1);
  });

  it('counts every TI of a mapped upstream task', () => {
    const summary = summarizeUpstream(
      { upstream: ['mapped'] },
      new Map([['mapped', [{ state: 'success' as const }, { state: 'failed' as const }]]]),
    );
    expect(summary).toEqual({
      total: 2,
      success: 1,
      failed: 1,
      upstreamFailed: 0,
      skipped: 0,
      removed: 0,
      done: 2,
    });
  });
});

import { describe, expect, it } from 'vitest';
import {
  canTransition,
  FINISHED_TI_STATES,
  isFinishedDagRunState,
  isFinishedTaskInstanceState,
  TASK_INSTANCE_STATES,
  TASK_INSTANCE_TRANSITIONS,
} from '#core/states.ts';

describe('task instance state machine', () => {
  it('lets no finished state move on by itself (only a clear resets it)', () => {
    for (const state of FINISHED_TI_STATES) expect(TASK_INSTANCE_TRANSITIONS[state]).toEqual([]);
  });

  it('follows the path of a try: none → queued → running → success', () => {
    expect(canTransition('none', 'queued')).toBe(true);
    expect(canTransition('queued', 'running')).toBe(true);
    expect(canTransition('running', 'success')).toBe(true);
  });

  it('retries through up_for_retry and back to queued', () => {
    expect(canTransition('running', 'up_for_retry')).toBe(true);
    expect(canTransition('up_for_retry', 'queued')).toBe(true);
  });

  it('refuses to move a finished or running TI backwards', () => {
    expect(canTransition('success', 'running')).toBe(false);
    expect(canTransition('failed', 'queued')).toBe(false);
    expect(canTransition('running', 'queued')).toBe(false);
    expect(canTransition('queued', 'none')).toBe(false);
  });

  it('propagates upstream_failed only to TIs that have not started; a run timeout skips queued and deferred ones too', () => {
    expect(canTransition('none', 'upstream_failed')).toBe(true);
    expect(canTransition('queued', 'upstream_failed')).toBe(false);
    expect(canTransition('deferred', 'upstream_failed')).toBe(false);
    for (const from of ['none', 'scheduled', 'queued', 'running', 'deferred', 'up_for_retry'] as const) {
      expect(canTransition(from, 'skipped')).toBe(true);
    }
  });

  it('hands a running try back to scheduled on a graceful stop', () => {
    expect(canTransition('running', 'scheduled')).toBe(true);
  });

  it('names every state in the transition table', () => {
    expect(Object.keys(TASK_INSTANCE_TRANSITIONS).sort()).toEqual([...TASK_INSTANCE_STATES].sort());
    for (const targets of Object.values(TASK_INSTANCE_TRANSITIONS)) {
      for (const target of targets) expect(TASK_INSTANCE_STATES).toContain(target);
    }
  });

  it('classifies finished states', () => {
    expect(TASK_INSTANCE_STATES.filter(isFinishedTaskInstanceState)).toEqual([
      'success',
      'failed',
      'upstream_failed',
      'skipped',
      'removed',
    ]);
    expect(isFinishedDagRunState('success')).toBe(true);
    expect(isFinishedDagRunState('failed')).toBe(true);
    expect(isFinishedDagRunState('running')).toBe(false);
    expect(isFinishedDagRunState('queued')).toBe(false);
  });
});

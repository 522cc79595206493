import { Stack } from 'aws-cdk-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acknowledge, NagAcknowledgmentError } from '../../lib/nag.ts';
import { acknowledgmentsOf, removeOutdirs, type Synthesized, synthesize, testStackProps } from './helpers.ts';

afterAll(removeOutdirs);

describe('cdk-nag acknowledgments', () => {
  let synthesized: Synthesized;

  beforeAll(() => {
    synthesized = synthesize(testStackProps());
  });

  it('leaves no unacknowledged AWS Solutions finding', () => {
    expect(synthesized.findings).toEqual([]);
  });

  it('gives every acknowledgment a written reason', () => {
    const acknowledgments = acknowledgmentsOf(synthesized.stack);
    expect(acknowledgments.length).toBeGreaterThan(0);
    for (const { path, id, reason } of acknowledgments) {
      expect(typeof reason, `${id} at ${path}`).toBe('string');
      expect((reason as string).trim().length, `${id} at ${path}`).toBeGreaterThan(20);
    }
  });

  it('acknowledges AWS Solutions findings on the constructs they concern, never on the whole stack', () => {
    const ours = acknowledgmentsOf(synthesized.stack).filter(({ id }) => id.includes('AwsSolutions-'));
    expect(ours.length).toBeGreaterThan(0);
    for (const { path, id } of ours) expect(path, id).not.toBe(synthesized.stack.node.path);
  });

  it('refuses an acknowledgment without a reason', () => {
    expect(() => acknowledge(new Stack(), [{ id: 'AwsSolutions-S1', reason: '  ' }])).toThrow(
      NagAcknowledgmentError,
    );
  });
});

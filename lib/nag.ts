import { CfnElement, Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/** A cdk-nag finding accepted on purpose, and why: the reason is what a reviewer reads. */
export interface NagAcknowledgment {
  /** The rule, with the finding in brackets when the rule reports several (`AwsSolutions-IAM5[Resource::*]`). */
  readonly id: string;
  readonly reason: string;
}

export class NagAcknowledgmentError extends Error {
  override name = 'NagAcknowledgmentError';
}

/**
 * Records findings accepted on one construct. Every acknowledgment must say why: an empty reason
 * is refused here, so `cdk synth` never carries an unexplained suppression.
 */
export function acknowledge(construct: IConstruct, acknowledgments: readonly NagAcknowledgment[]): void {
  for (const { id, reason } of acknowledgments) {
    if (reason.trim() === '') {
      throw new NagAcknowledgmentError(
        `The acknowledgment of ${id} on ${construct.node.path} gives no reason`,
      );
    }
    Validations.of(construct).acknowledge({ id, reason });
  }
}

/**
 * How cdk-nag writes a resource's ARN in a finding id (`<LogicalId.Arn>`), for acknowledging a
 * wildcard under that resource.
 */
export function arnReferenceOf(construct: IConstruct): string {
  const resource = construct.node.defaultChild;
  if (!(resource instanceof CfnElement)) {
    throw new NagAcknowledgmentError(`${construct.node.path} has no CloudFormation resource to reference`);
  }
  return `<${Stack.of(construct).getLogicalId(resource)}.Arn>`;
}

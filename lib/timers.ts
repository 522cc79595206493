import { Aws, type CfnElement, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { ScheduleGroup } from 'aws-cdk-lib/aws-scheduler';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { AWS_ENV } from '#aws/environment.ts';
import { acknowledge } from './nag.ts';

export interface UpdraftTimersProps {
  /** Where a timer delivers its scheduling request when it fires: the scheduling-request queue. */
  readonly targetQueue: IQueue;
}

/**
 * Durable timers longer than SQS's 15-minute delay (retry delays, deadlines, date-time waits):
 * one-time EventBridge Scheduler schedules in a group of their own, each sending a scheduling
 * request to the scheduler queue when it fires. The role the Scheduler assumes can send to that
 * queue and nothing else. Timers of 15 minutes or less are SQS delays on the same queue.
 */
export class UpdraftTimers extends Construct {
  readonly scheduleGroup: ScheduleGroup;
  readonly targetRole: Role;
  readonly targetQueue: IQueue;

  constructor(scope: Construct, id: string, props: UpdraftTimersProps) {
    super(scope, id);
    this.targetQueue = props.targetQueue;
    // Deleting the stack deletes the group and any timer still pending in it.
    this.scheduleGroup = new ScheduleGroup(this, 'Group', { removalPolicy: RemovalPolicy.DESTROY });
    const { account } = Stack.of(this);
    this.targetRole = new Role(this, 'TargetRole', {
      description: 'Assumed by EventBridge Scheduler to deliver Updraft timers to the scheduler queue',
      // Only schedules of this account may use the role (the confused-deputy guard).
      assumedBy: new ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': account } },
      }),
    });
    this.targetRole.addToPolicy(
      new PolicyStatement({ actions: ['sqs:SendMessage'], resources: [props.targetQueue.queueArn] }),
    );
  }

  /**
   * Lets a function set timers: create schedules in the group (they delete themselves after
   * firing) and pass the target role to the Scheduler, with the variables naming all three.
   */
  bindTimerSetter(fn: LambdaFunction): void {
    fn.addEnvironment(AWS_ENV.timerTargetArn, this.targetQueue.queueArn);
    fn.addEnvironment(AWS_ENV.timerRoleArn, this.targetRole.roleArn);
    fn.addEnvironment(AWS_ENV.timerGroupName, this.scheduleGroup.scheduleGroupName);
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['scheduler:CreateSchedule'],
        resources: [this.schedulesArn()],
      }),
    );
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['iam:PassRole'],
        resources: [this.targetRole.roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } },
      }),
    );
    acknowledge(fn, [
      {
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:scheduler:<AWS::Region>:<AWS::AccountId>:schedule/${this.#groupNameInFindings()}/*]`,
        reason:
          'Timer schedules are created at run time with names made from the run and the wake time; the grant is limited to schedules of the Updraft timer group.',
      },
    ]);
  }

  /**
   * Every schedule of the group: names are chosen at run time. Written with the pseudo
   * parameters even when the stack's region and account are known, so the ARN (and the finding
   * it is acknowledged under) reads the same in every environment.
   */
  schedulesArn(): string {
    return `arn:${Aws.PARTITION}:scheduler:${Aws.REGION}:${Aws.ACCOUNT_ID}:schedule/${this.scheduleGroup.scheduleGroupName}/*`;
  }

  /** The group's name as cdk-nag prints it: the name, or a reference when it is only known at deploy. */
  #groupNameInFindings(): string {
    const name = this.scheduleGroup.scheduleGroupName;
    if (!Token.isUnresolved(name)) return name;
    const resource = this.scheduleGroup.node.defaultChild as CfnElement;
    return `<${Stack.of(this).getLogicalId(resource)}>`;
  }
}

import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { Updraft, type UpdraftProps } from './updraft.ts';

export interface UpdraftStackProps extends StackProps, Omit<UpdraftProps, 'dagsDir'> {
  /** The DAGs folder (default `dags`, relative to the working directory). */
  readonly dagsDir?: string;
}

/**
 * The deployed Updraft: the `Updraft` construct and what a user needs to reach it as outputs
 * (the API URL, where its token is, the table and the dashboard).
 */
export class UpdraftStack extends Stack {
  readonly updraft: Updraft;

  constructor(scope: Construct, id: string, props: UpdraftStackProps = {}) {
    super(scope, id, props);
    this.updraft = new Updraft(this, 'Orchestrator', { ...props, dagsDir: props.dagsDir ?? 'dags' });
    const { updraft } = this;
    new CfnOutput(this, 'ApiUrl', {
      value: updraft.api.url,
      description: 'Public REST API: the CLI and UI base URL (UPDRAFT_API_URL)',
    });
    new CfnOutput(this, 'ApiTokenSecretArn', {
      value: updraft.api.tokenSecret.secretArn,
      description:
        'Secrets Manager secret holding the API bearer token: aws secretsmanager get-secret-value --secret-id <arn> --query SecretString --output text',
    });
    new CfnOutput(this, 'ExecutionApiUrl', {
      value: updraft.executionApi.url.url,
      description: 'Execution API function URL (IAM auth): workers and the triggerer only',
    });
    new CfnOutput(this, 'TableName', {
      value: updraft.store.tableName,
      description: 'DynamoDB table holding DAGs, runs, task instances and XComs',
    });
    new CfnOutput(this, 'LogBucketName', {
      value: updraft.logs.bucket.bucketName,
      description: 'S3 bucket holding task log chunks',
    });
    new CfnOutput(this, 'DashboardName', {
      value: updraft.observability.dashboard.dashboardName,
      description: 'CloudWatch dashboard of queues, functions and scheduler gauges',
    });
  }
}

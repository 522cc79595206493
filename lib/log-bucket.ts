import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import {
  BlockPublicAccess,
  Bucket,
  BucketEncryption,
  type BucketProps,
  ObjectOwnership,
} from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { AWS_ENV } from '#aws/environment.ts';
import { acknowledge, arnReferenceOf } from './nag.ts';

/** Where the log store writes its chunks (`logs/<dag>/<run>/<task>/<map index>/<try>/<chunk>`). */
export const LOG_KEY_PREFIX = 'logs/';

/** Bucket properties a user may set; access, encryption and TLS stay as the construct sets them. */
export type UpdraftLogBucketOverrides = Omit<
  BucketProps,
  | 'blockPublicAccess'
  | 'enforceSSL'
  | 'serverAccessLogsBucket'
  | 'serverAccessLogsPrefix'
  | 'publicReadAccess'
>;

export interface UpdraftLogBucketProps {
  /** How long a log chunk is kept: the bucket's lifecycle expires it after this. */
  readonly retention: Duration;
  /** Merged over the defaults: SSE-S3, `RemovalPolicy.RETAIN`. */
  readonly bucketProps?: UpdraftLogBucketOverrides;
  /** Keep S3 server access logs of the log bucket in a bucket of their own (default true). */
  readonly serverAccessLogs?: boolean;
}

/**
 * Task logs on S3: one object per chunk of a try, written and read by the two API functions only
 * (workers send their log chunks through the Execution API). No public access, TLS only, SSE-S3,
 * and a lifecycle that expires chunks after the retention.
 */
export class UpdraftLogBucket extends Construct {
  readonly bucket: Bucket;
  readonly accessLogBucket: Bucket | undefined;

  constructor(scope: Construct, id: string, props: UpdraftLogBucketProps) {
    super(scope, id);
    // S3 delivers access logs under a bucket policy instead of an ACL, so both buckets keep ACLs
    // disabled (bucket owner enforced). A context value set here applies to this construct only.
    this.node.setContext('@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy', true);
    const secure = {
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      encryption: BucketEncryption.S3_MANAGED,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
    } as const;
    const lifecycleRules = [
      { expiration: props.retention, abortIncompleteMultipartUploadAfter: Duration.days(1) },
    ];
    if (props.serverAccessLogs ?? true) {
      this.accessLogBucket = new Bucket(this, 'AccessLogs', {
        ...secure,
        removalPolicy: props.bucketProps?.removalPolicy ?? RemovalPolicy.RETAIN,
        lifecycleRules,
      });
      acknowledge(this.accessLogBucket, [
        {
          id: 'AwsSolutions-S1',
          reason:
            'This bucket receives the server access logs of the log bucket; logging its own access would log the logging.',
        },
      ]);
    }
    this.bucket = new Bucket(this, 'Bucket', {
      ...secure,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules,
      ...props.bucketProps,
      ...(this.accessLogBucket
        ? { serverAccessLogsBucket: this.accessLogBucket, serverAccessLogsPrefix: 'log-bucket/' }
        : {}),
    });
    if (!this.accessLogBucket) {
      acknowledge(this.bucket, [
        {
          id: 'AwsSolutions-S1',
          reason:
            'Server access logs were turned off for this deployment (serverAccessLogs: false); only the two API functions can reach the bucket.',
        },
      ]);
    }
  }

  /**
   * Gives a function the log chunks: put and get objects, list them to read a try's chunks in
   * order, and the bucket's name.
   */
  bindReadWrite(fn: LambdaFunction): void {
    fn.addEnvironment(AWS_ENV.logBucket, this.bucket.bucketName);
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:GetObject', 's3:PutObject'],
        resources: [this.bucket.arnForObjects(`${LOG_KEY_PREFIX}*`)],
      }),
    );
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [this.bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': `${LOG_KEY_PREFIX}*` } },
      }),
    );
    acknowledge(fn, [
      {
        id: `AwsSolutions-IAM5[Resource::${arnReferenceOf(this.bucket)}/${LOG_KEY_PREFIX}*]`,
        reason:
          "Log chunk keys are made at run time from the DAG, run, task and try; the wildcard covers this bucket's objects under logs/, and only get and put are granted.",
      },
    ]);
  }
}

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

/**
 * Bucket properties a user may set; access, encryption and TLS stay as the construct sets them.
 * Versioning stays off: a running try's open chunk is rewritten in place, and a versioned bucket
 * would keep every rewrite.
 */
export type UpdraftLogBucketOverrides = Omit<
  BucketProps,
  | 'blockPublicAccess'
  | 'enforceSSL'
  | 'serverAccessLogsBucket'
  | 'serverAccessLogsPrefix'
  | 'publicReadAccess'
  | 'versioned'
> & { readonly versioned?: false };

export class LogBucketConfigurationError extends Error {
  override name = 'LogBucketConfigurationError';
}

export interface UpdraftLogBucketProps {
  /** How long a log chunk is kept: the bucket's lifecycle expires it after this. */
  readonly retention: Duration;
  /** Merged over the defaults: SSE-S3, `RemovalPolicy.RETAIN`. */
  readonly bucketProps?: UpdraftLogBucketOverrides;
  /** Keep S3 server access logs of the log bucket in a bucket of their own (default true). */
  readonly serverAccessLogs?: boolean;
}

/**
 * Task logs on S3: one object per chunk of a try, written by the Execution API (workers send
 * their log chunks through it) and read by the public API, and reached by nothing else. No public
 * access, TLS only, SSE-S3, no versioning, and a lifecycle that expires chunks after the retention.
 */
export class UpdraftLogBucket extends Construct {
  readonly bucket: Bucket;
  readonly accessLogBucket: Bucket | undefined;

  constructor(scope: Construct, id: string, props: UpdraftLogBucketProps) {
    super(scope, id);
    if ((props.bucketProps as BucketProps | undefined)?.versioned === true) {
      throw new LogBucketConfigurationError(
        "logs.bucketProps.versioned: the log bucket cannot be versioned. A running try's open log chunk is rewritten in place, longer each time, under the same key; a versioned bucket would keep every rewrite as a noncurrent version, never expired by the retention.",
      );
    }
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
   * Lets a function read a try's log (the public API): get the chunk objects, and list them
   * under `logs/` to read them in order. Nothing may be written.
   */
  bindReader(fn: LambdaFunction): void {
    this.#bindObjects(fn, ['s3:GetObject']);
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [this.bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': `${LOG_KEY_PREFIX}*` } },
      }),
    );
  }

  /**
   * Lets a function append log chunks (the Execution API: heartbeats, reports, late-report
   * notes): put chunk objects under `logs/`, nothing read or listed.
   */
  bindWriter(fn: LambdaFunction): void {
    this.#bindObjects(fn, ['s3:PutObject']);
  }

  /** The bucket's name and `actions` on the chunk objects under `logs/`. */
  #bindObjects(fn: LambdaFunction, actions: string[]): void {
    fn.addEnvironment(AWS_ENV.logBucket, this.bucket.bucketName);
    fn.addToRolePolicy(
      new PolicyStatement({ actions, resources: [this.bucket.arnForObjects(`${LOG_KEY_PREFIX}*`)] }),
    );
    acknowledge(fn, [
      {
        id: `AwsSolutions-IAM5[Resource::${arnReferenceOf(this.bucket)}/${LOG_KEY_PREFIX}*]`,
        reason: `Log chunk keys are made at run time from the DAG, run, task and try; the wildcard covers this bucket's objects under logs/, and only ${actions.join(', ')} is granted.`,
      },
    ]);
  }
}

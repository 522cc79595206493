import { AWS_ENV, requireEnv } from './environment.ts';
import type { DepFactories } from './handler-deps.ts';
import { sdkClientLogger } from './handler-observability.ts';
import { S3LogStore } from './s3-log-store.ts';

/** Task logs in the log bucket (`UPDRAFT_LOG_BUCKET`); the S3 client is made on the first log call. */
export const factories: Pick<DepFactories, 'logs'> = {
  logs: (_deps, { tracer, logger }) =>
    new S3LogStore({
      client: (s3) => tracer.captureAWSv3Client(new s3.S3Client({ logger: sdkClientLogger(logger) })),
      bucket: requireEnv(process.env, AWS_ENV.logBucket),
    }),
};

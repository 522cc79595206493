import { S3Client } from '@aws-sdk/client-s3';
import { AWS_ENV, requireEnv } from './environment.ts';
import type { DepFactories } from './handler-deps.ts';
import { S3LogStore } from './s3-log-store.ts';

/** Task logs in the log bucket (`UPDRAFT_LOG_BUCKET`). */
export const factories: Pick<DepFactories, 'logs'> = {
  logs: (_deps, { tracer }) =>
    new S3LogStore({
      client: tracer.captureAWSv3Client(new S3Client({})),
      bucket: requireEnv(process.env, AWS_ENV.logBucket),
    }),
};

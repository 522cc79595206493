import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { AWS_ENV, requireEnv } from './environment.ts';
import type { DepFactories } from './handler-deps.ts';
import { createSignedFetch } from './handler-signed-fetch.ts';

/**
 * How a worker reaches the Execution API: its function URL (`UPDRAFT_EXECUTION_API_URL`), with
 * calls signed for IAM auth by the function's role (credentials from the environment).
 */
export const factories: Pick<DepFactories, 'executionApiUrl' | 'executionFetch'> = {
  executionApiUrl: () => requireEnv(process.env, AWS_ENV.executionApiUrl),
  executionFetch: () =>
    createSignedFetch({ region: requireEnv(process.env, 'AWS_REGION'), credentials: defaultProvider() }),
};

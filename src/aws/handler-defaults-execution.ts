import { AWS_ENV, requireEnv } from './environment.ts';
import type { DepFactories } from './handler-deps.ts';
import { RequestSigningError } from './handler-errors.ts';
import { type AwsCredentials, createSignedFetch } from './handler-signed-fetch.ts';

/**
 * How a worker reaches the Execution API: its function URL (`UPDRAFT_EXECUTION_API_URL`), with
 * calls signed for IAM auth by the function's role.
 */
export const factories: Pick<DepFactories, 'executionApiUrl' | 'executionFetch'> = {
  executionApiUrl: () => requireEnv(process.env, AWS_ENV.executionApiUrl),
  executionFetch: () =>
    createSignedFetch({
      region: requireEnv(process.env, 'AWS_REGION'),
      credentials: roleCredentials(process.env),
    }),
};

/**
 * The function role's credentials: from the environment where Lambda puts them; elsewhere (a
 * container role, a profile) from the SDK's provider chain, imported on first use only, so a
 * Lambda cold start never loads it (about 50 ms).
 */
export function roleCredentials(env: NodeJS.ProcessEnv): () => Promise<AwsCredentials> {
  let chain: (() => Promise<AwsCredentials>) | undefined;
  return async () => {
    if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) return credentialsFromEnvironment(env);
    chain ??= (await import('@aws-sdk/credential-provider-node')).defaultProvider();
    return chain();
  };
}

/**
 * The role's credentials as Lambda hands them to a function: in `AWS_ACCESS_KEY_ID`,
 * `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, valid for the execution environment's life.
 * Read at each signature, so they are never older than the environment's.
 */
export function credentialsFromEnvironment(env: NodeJS.ProcessEnv): AwsCredentials {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) {
    throw new RequestSigningError(
      'No AWS credentials to sign Execution API requests with: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set (Lambda sets them from the function role)',
    );
  }
  const sessionToken = env.AWS_SESSION_TOKEN;
  return sessionToken ? { accessKeyId, secretAccessKey, sessionToken } : { accessKeyId, secretAccessKey };
}

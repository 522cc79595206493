import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { AWS_ENV, requireEnv } from './environment.ts';
import type { DepFactories } from './handler-deps.ts';
import { type Observability, sdkClientLogger } from './handler-observability.ts';
import { apiTokenOf, CachedSecrets, executionKeysOf } from './handler-secrets.ts';

/**
 * The public API's bearer token (`UPDRAFT_API_TOKEN_SECRET_ARN`) and the execution-token keyring
 * (`UPDRAFT_SIGNING_KEY_SECRET_ARN`), read from Secrets Manager and cached per instance.
 */
export const factories: Pick<DepFactories, 'apiToken' | 'executionKeys'> = {
  apiToken: (_deps, observability) => {
    const secretId = requireEnv(process.env, AWS_ENV.apiTokenSecretArn);
    const cache = secretsOf(observability);
    return async () => apiTokenOf(await cache.get(secretId), secretId);
  },
  executionKeys: (_deps, observability) => {
    const secretId = requireEnv(process.env, AWS_ENV.signingKeySecretArn);
    const cache = secretsOf(observability);
    return async (options) => executionKeysOf(await cache.get(secretId, options), secretId);
  },
};

let secrets: CachedSecrets | undefined;
function secretsOf({ tracer, logger }: Observability): CachedSecrets {
  secrets ??= new CachedSecrets({
    client: tracer.captureAWSv3Client(new SecretsManagerClient({ logger: sdkClientLogger(logger) })),
    warn: (message, fields) => logger.warn(message, fields),
  });
  return secrets;
}

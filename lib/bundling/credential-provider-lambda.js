// `@aws-sdk/credential-provider-node` for the functions that bundle the AWS SDK: see
// lib/bundling.ts (LAMBDA_CREDENTIALS_ALIAS). Lambda hands a function its role's credentials in
// the environment, where the SDK's default chain looks first; its other sources (profiles, SSO,
// web identity, containers, instance metadata) are left out of the bundle. Where the environment
// holds no keys, the runtime's own chain is imported and asked instead.

/** Built at run time, so the bundler neither bundles it nor aliases it back to this file. */
const RUNTIME_CHAIN = ['@aws-sdk', 'credential-provider-node'].join('/');

/**
 * The SDK's default provider: the variables the SDK's `fromEnv` reads (the keys, the session
 * token, and the expiration, scope and account id where set), read at each call; without the
 * keys, the runtime's default chain.
 */
export function defaultProvider(init) {
  let chain;
  return async () => {
    const env = process.env;
    if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
      return {
        accessKeyId: env.AWS_ACCESS_KEY_ID,
        secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
        ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
        ...(env.AWS_CREDENTIAL_EXPIRATION ? { expiration: new Date(env.AWS_CREDENTIAL_EXPIRATION) } : {}),
        ...(env.AWS_CREDENTIAL_SCOPE ? { credentialScope: env.AWS_CREDENTIAL_SCOPE } : {}),
        ...(env.AWS_ACCOUNT_ID ? { accountId: env.AWS_ACCOUNT_ID } : {}),
      };
    }
    chain ??= import(RUNTIME_CHAIN).then((module) => module.defaultProvider(init));
    try {
      return await (await chain)();
    } catch (error) {
      chain = undefined;
      throw new Error(
        `No AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set (Lambda sets them from the function role), and the runtime's default chain found none: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
  };
}

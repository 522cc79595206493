// `@aws-sdk/credential-provider-node` for the functions that bundle the AWS SDK: see
// lib/bundling.ts (LAMBDA_CREDENTIALS_ALIAS). Lambda hands a function its role's credentials in
// the environment; the SDK's default chain would look there first too, and its other sources
// (profiles, SSO, web identity, containers, instance metadata) only add size to the bundle.

/** The SDK's default provider, reading the function role's credentials from the environment. */
export function defaultProvider() {
  return async () => {
    const accessKeyId = process.env.AWS_ACCESS_KEY_ID;
    const secretAccessKey = process.env.AWS_SECRET_ACCESS_KEY;
    if (!accessKeyId || !secretAccessKey) {
      throw new Error(
        'No AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set (Lambda sets them from the function role; this bundle reads credentials from the environment only)',
      );
    }
    const sessionToken = process.env.AWS_SESSION_TOKEN;
    return sessionToken ? { accessKeyId, secretAccessKey, sessionToken } : { accessKeyId, secretAccessKey };
  };
}

import { join } from 'node:path';

/**
 * What every esbuild bundle of Updraft shares: the Lambda functions (lib/functions.ts), the
 * triggerer image (lib/triggerer-image.ts) and the benchmark's copies of both (bench/aws-bundles.ts).
 */

/**
 * Makes `require` available in the ESM bundle: CommonJS dependencies bundled into it (the X-Ray
 * SDK under the Powertools tracer) call `require` for Node built-ins.
 */
export const ESM_REQUIRE_BANNER =
  "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);";

/**
 * Built-ins whose ES-module import costs a cold start dearly: importing `node:http` as an ES
 * module makes Node build its module namespace, which reads every export, and the lazy `WebSocket`
 * ones load Node's whole bundled `undici` (about 30–50 ms before the handler runs, on each cold
 * start). Bundled dependencies that import them (the Powertools tracer does, for its HTTP
 * instrumentation) get a CommonJS module that hands them `process.getBuiltinModule(…)` instead:
 * the same object, no namespace. The paths are absolute on this machine: the functions are
 * bundled by the local esbuild (the CDK's Docker bundling would not see them).
 */
export const CJS_BUILTIN_ALIASES: Readonly<Record<string, string>> = {
  'node:http': join(import.meta.dirname, 'bundling', 'node-http.cjs'),
  'node:https': join(import.meta.dirname, 'bundling', 'node-https.cjs'),
  http: join(import.meta.dirname, 'bundling', 'node-http.cjs'),
  https: join(import.meta.dirname, 'bundling', 'node-https.cjs'),
};

/**
 * Zod's classic API without its 47 translated error-message locales (about 265 KB of the 930 KB
 * API bundles): `@hono/zod-openapi` passes the whole `z` namespace to `extendZodWithOpenApi`, so
 * the bundler cannot drop the `locales` (and `core.locales`) it never uses. The alias hands every
 * importer of `zod` the same classic API with `locales` empty; English messages stay (zod sets
 * them up itself). For the API functions only: the worker bundles the user's DAG code, which may
 * use a locale.
 */
export const ZOD_WITHOUT_LOCALES_ALIAS: Readonly<Record<string, string>> = {
  zod: join(import.meta.dirname, 'bundling', 'zod.js'),
};

/**
 * The SDK's default credential chain, for the functions that bundle the AWS SDK, replaced by one
 * that reads the environment only, where Lambda puts the function role's credentials (and where
 * the chain looks first). The chain's other sources (profiles, SSO, web identity, containers,
 * instance metadata, and the STS and SSO clients they use) are about 140 KB of a bundle that
 * never uses them on Lambda.
 */
export const LAMBDA_CREDENTIALS_ALIAS: Readonly<Record<string, string>> = {
  '@aws-sdk/credential-provider-node': join(import.meta.dirname, 'bundling', 'credential-provider-lambda.js'),
};

/**
 * The aliases of a bundle: always `CJS_BUILTIN_ALIASES`; `ZOD_WITHOUT_LOCALES_ALIAS` for the API
 * functions, `LAMBDA_CREDENTIALS_ALIAS` for the functions that bundle the AWS SDK.
 */
export function bundleAliases(options: {
  withoutZodLocales: boolean;
  lambdaCredentials?: boolean;
}): Record<string, string> {
  return {
    ...CJS_BUILTIN_ALIASES,
    ...(options.withoutZodLocales ? ZOD_WITHOUT_LOCALES_ALIAS : {}),
    ...(options.lambdaCredentials ? LAMBDA_CREDENTIALS_ALIAS : {}),
  };
}

/** Aliases as `NodejsFunction`'s `esbuildArgs` (its `--alias:from=to` flags). */
export function aliasEsbuildArgs(aliases: Readonly<Record<string, string>>): Record<string, string[]> {
  return { '--alias': Object.entries(aliases).map(([from, to]) => `${from}=${to}`) };
}

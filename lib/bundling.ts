import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
 * Zod's classic API without its 62 translated error-message locales (268 KB of the 934 KB the API
 * bundles were with them): `@hono/zod-openapi` passes the whole `z` namespace to
 * `extendZodWithOpenApi`, so the bundler cannot drop the `locales` (and `core.locales`) it never
 * uses. The alias hands every importer of `zod` the same classic API with `locales` empty
 * (`lib/bundling/zod.js`); English messages stay (zod sets them up itself). esbuild also applies
 * an alias to a package's subpaths, and the longest alias wins: every subpath zod exports is
 * aliased back to zod itself, so `zod/v4/core` or `zod/mini` still get the real modules (with
 * their locales). For the API functions only: the worker bundles the user's DAG code, which may
 * use a locale.
 */
export const ZOD_WITHOUT_LOCALES_ALIAS: Readonly<Record<string, string>> = {
  zod: join(import.meta.dirname, 'bundling', 'zod.js'),
  ...zodSubpathAliases(),
};

/**
 * `zod/<subpath>` to the module zod's `exports` gives an import of it; a subpath with a pattern
 * below it (`v4/locales/*`) to its folder, so the pattern's modules resolve in it too. Plus
 * `zod/v4/classic`, which zod does not export: the shims import the classic API from it.
 */
function zodSubpathAliases(): Record<string, string> {
  const packageJson = fileURLToPath(import.meta.resolve('zod/package.json'));
  const root = dirname(packageJson);
  const exported = Object.keys(
    (JSON.parse(readFileSync(packageJson, 'utf8')) as { exports: object }).exports,
  );
  const aliases: Record<string, string> = { 'zod/v4/classic': join(root, 'v4', 'classic') };
  for (const key of exported) {
    if (key === '.' || key === './package.json' || key.includes('*')) continue;
    const specifier = `zod/${key.slice(2)}`;
    const file = fileURLToPath(import.meta.resolve(specifier));
    const hasPattern = exported.includes(`${key}/*`);
    if (hasPattern && basename(file) !== 'index.js') {
      throw new Error(
        `zod's export ${key} is not a folder's index.js (${file}): lib/bundling.ts cannot alias ${key}/*`,
      );
    }
    aliases[specifier] = hasPattern ? dirname(file) : file;
  }
  return aliases;
}

/**
 * The SDK's default credential chain, for the functions that bundle the AWS SDK, replaced by one
 * that reads the environment, where Lambda puts the function role's credentials (and where the
 * chain looks first), and imports the runtime's own chain only where the environment holds no
 * keys (`lib/bundling/credential-provider-lambda.js`). The chain's other sources (profiles, SSO,
 * web identity, containers, instance metadata, and the STS and SSO clients they use) would be
 * about 140 KB of each such bundle.
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

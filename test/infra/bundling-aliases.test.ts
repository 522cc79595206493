import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type BuildOptions, type BuildResult, build } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbeddedDynamo } from '#store/embedded.ts';
import { bundleAliases, CJS_BUILTIN_ALIASES, ESM_REQUIRE_BANNER } from '../../lib/bundling.ts';
import {
  FUNCTION_ENTRIES,
  functionBuildOptions,
  functionBundling,
  type UpdraftFunctionName,
} from '../../lib/functions.ts';

const dir = mkdtempSync(join(tmpdir(), 'updraft-bundling-aliases-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const projectRoot = join(import.meta.dirname, '..', '..');

/** An ES module bundle for Node with the `require` banner, its packages resolved in the project. */
function bundleForNode(
  options: BuildOptions & { outfile: string },
): Promise<BuildResult<{ metafile: true }>> {
  return build({
    bundle: true,
    platform: 'node',
    format: 'esm',
    banner: { js: ESM_REQUIRE_BANNER },
    nodePaths: [join(projectRoot, 'node_modules')],
    logLevel: 'silent',
    ...options,
    metafile: true,
  });
}

/** The input files a bundle kept: every file read is an input; those kept have bytes in the output. */
function keptInputs(result: BuildResult<{ metafile: true }>): string[] {
  return Object.values(result.metafile.outputs).flatMap((output) =>
    Object.entries(output.inputs).flatMap(([path, input]) => (input.bytesInOutput > 0 ? [path] : [])),
  );
}

/**
 * The aliases replace bundled ES imports of `node:http(s)` with a CommonJS module: the bundle
 * must still hand every importer the real modules, however it imports them.
 */
describe('the node:http and node:https aliases of the bundles', () => {
  it('give the real modules to default, namespace, named and require imports', async () => {
    const entry = join(dir, 'entry.mjs');
    writeFileSync(
      entry,
      [
        "import http from 'node:http';",
        "import * as https from 'node:https';",
        "import { request, Agent } from 'http';",
        "const viaRequire = require('node:https');",
        'console.log(JSON.stringify([typeof http.request, typeof https.request, typeof request, typeof Agent, https.get === viaRequire.get]));',
      ].join('\n'),
    );
    const out = join(dir, 'out.mjs');
    await bundleForNode({ entryPoints: [entry], outfile: out, alias: { ...CJS_BUILTIN_ALIASES } });
    const printed = execFileSync(process.execPath, [out], { encoding: 'utf8', timeout: 30_000 });
    expect(JSON.parse(printed)).toEqual(['function', 'function', 'function', 'function', true]);
  });
});

/**
 * The API functions' alias of `zod` drops its translated locales: what the router and
 * `@hono/zod-openapi` use must be the real classic API, with zod's English messages.
 */
describe('the zod alias of the API bundles', () => {
  it('keeps the classic API, its OpenAPI extension and English messages, without other locales', async () => {
    const entry = join(dir, 'zod-entry.mjs');
    writeFileSync(
      entry,
      [
        "import { z as viaHono, createRoute } from '@hono/zod-openapi';",
        "import zDefault, * as zNamespace from 'zod';",
        "import { z } from 'zod';",
        'const schema = z.strictObject({ name: z.string().min(2), count: z.number().int().optional() }).openapi("Thing");',
        'const bad = schema.safeParse({ name: 1, extra: true });',
        'const route = createRoute({ method: "get", path: "/x", responses: { 200: { description: "ok", content: { "application/json": { schema } } } } });',
        'console.log(JSON.stringify({',
        '  same: viaHono === z && zDefault === z && zNamespace.string === z.string,',
        '  good: schema.parse({ name: "ab", count: 3 }),',
        '  messages: bad.success ? [] : bad.error.issues.map((issue) => issue.message),',
        '  openapi: typeof z.string().openapi === "function" && route.path === "/x",',
        '  locales: Object.keys(z.locales).length + Object.keys(z.core.locales).length,',
        '  core: typeof z.core.$ZodType === "function" && typeof z.core.config === "function",',
        '}));',
      ].join('\n'),
    );
    const out = join(dir, 'zod-out.mjs');
    const kept = keptInputs(
      await bundleForNode({
        entryPoints: [entry],
        outfile: out,
        alias: bundleAliases({ withoutZodLocales: true }),
      }),
    );
    const locales = kept.filter((path) => /zod\/v4\/locales\/(?!en\.js)/.test(path));
    expect(kept.some((path) => path.endsWith('zod/v4/locales/en.js'))).toBe(true);
    expect(locales).toEqual([]);
    const printed = JSON.parse(execFileSync(process.execPath, [out], { encoding: 'utf8', timeout: 30_000 }));
    expect(printed).toEqual({
      same: true,
      good: { name: 'ab', count: 3 },
      messages: ['Invalid input: expected string, received number', 'Unrecognized key: "extra"'],
      openapi: true,
      locales: 0,
      core: true,
    });
  });
});

describe('the zod alias of the API bundles, for subpath imports', () => {
  it('leaves every subpath zod exports to zod itself', async () => {
    const entry = join(dir, 'zod-subpaths.mjs');
    writeFileSync(
      entry,
      [
        "import { z } from 'zod';",
        "import * as v4 from 'zod/v4';",
        "import * as core from 'zod/v4/core';",
        "import * as mini from 'zod/mini';",
        "import fr from 'zod/v4/locales/fr.js';",
        "import * as locales from 'zod/v4/locales';",
        'console.log(JSON.stringify({',
        '  sameClasses: v4.ZodString === z.ZodString && core.$ZodType === z.core.$ZodType,',
        '  mini: mini.string().parse("x"),',
        '  fr: typeof fr === "function" && typeof locales.de === "function",',
        '  aliased: Object.keys(z.locales).length,',
        '}));',
      ].join('\n'),
    );
    const out = join(dir, 'zod-subpaths-out.mjs');
    await bundleForNode({
      entryPoints: [entry],
      outfile: out,
      alias: bundleAliases({ withoutZodLocales: true }),
    });
    const printed = JSON.parse(execFileSync(process.execPath, [out], { encoding: 'utf8', timeout: 30_000 }));
    expect(printed).toEqual({ sameClasses: true, mini: 'x', fr: true, aliased: 0 });
  });
});

/** Builds the API router, asks it for its OpenAPI document and one invalid request; prints both. */
const API_PROBE = `
import { createApiStack } from '#api/stack.ts';
import { loadSettings } from '#config/settings.ts';
import { silentLogger } from '#engine/logger.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import { createInMemoryQueues } from '#queue/memory.ts';
const unused = new Proxy({}, { get: () => () => { throw new Error('not used by these requests'); } });
const settings = loadSettings({}, process.cwd());
const token = 'bundling-test-token-0123456789abcdef';
const { api } = createApiStack({
  store: unused, logs: unused, queues: createInMemoryQueues(settings), metrics: new MetricsRegistry(),
  settings, apiToken: token, executionKeys: { k1: 'x'.repeat(32) }, log: silentLogger, now: () => Date.now(),
});
const doc = await api.request('/api/v2/openapi.json');
const invalid = await api.request('/api/v2/dags/example/dagRuns', {
  method: 'POST',
  headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
  body: JSON.stringify({ conf: 5 }),
});
console.log(JSON.stringify({ doc: await doc.json(), invalid: { status: invalid.status, body: await invalid.json() } }));
`;

describe('the API router bundled with the zod alias', () => {
  it('documents the same OpenAPI and answers invalid input as the sources do', async () => {
    const root = projectRoot;
    const lastLine = (printed: string) => JSON.parse(printed.trim().split('\n').at(-1) as string);
    // The probe is plain JavaScript: from the sources, Node runs it as it is, in the project.
    const fromSource = lastLine(
      execFileSync(process.execPath, ['--input-type=module', '-e', API_PROBE], {
        encoding: 'utf8',
        cwd: root,
      }),
    );
    const out = join(dir, 'api-probe.mjs');
    // As the API function is bundled (lib/functions.ts), but with the AWS SDK left out: the
    // probe's store and queues are stand-ins.
    await bundleForNode({
      ...functionBuildOptions('api'),
      stdin: { contents: API_PROBE, loader: 'js', resolveDir: root, sourcefile: 'api-probe.mjs' },
      outfile: out,
      external: ['@aws-sdk/*'],
    });
    const fromBundle = lastLine(
      execFileSync(process.execPath, [out], { encoding: 'utf8', cwd: dir, timeout: 60_000 }),
    );
    expect(fromBundle).toEqual(fromSource);
    expect(fromBundle.invalid).toEqual({
      status: 422,
      body: { status: 422, detail: 'Invalid request: conf: Invalid input: expected record, received number' },
    });
    expect(Object.keys(fromBundle.doc.paths).length).toBeGreaterThan(20);
  });
});

/** Creates a table, writes an item and reads it back through the bundled SDK; prints the item. */
const SDK_PROBE = `
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
const client = new DynamoDBClient({ region: 'us-east-1', endpoint: process.env.PROBE_ENDPOINT });
try {
  await client.send(new CreateTableCommand({
    TableName: process.env.PROBE_TABLE, BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
  }));
  const documents = DynamoDBDocumentClient.from(client);
  await documents.send(new PutCommand({ TableName: process.env.PROBE_TABLE, Item: { pk: 'a', value: 42 } }));
  const { Item } = await documents.send(new GetCommand({ TableName: process.env.PROBE_TABLE, Key: { pk: 'a' } }));
  console.log(JSON.stringify({ item: Item, key: (await client.config.credentials()).accessKeyId }));
} catch (error) {
  console.log(JSON.stringify({ error: error.message }));
}
`;

/**
 * The functions that use the table bundle the AWS SDK with the environment-only credential
 * provider (lib/functions.ts, functionBundling): the bundled client must reach DynamoDB with the
 * credentials Lambda puts in the environment; without them, fall back to the runtime's default
 * chain, and say which variables are missing when that finds none either.
 */
describe('the AWS SDK bundled with the Lambda credential provider', () => {
  it("signs with the environment's credentials, else the runtime's chain, else names what is missing", async () => {
    const root = projectRoot;
    const out = join(dir, 'sdk-probe.mjs');
    const kept = keptInputs(
      await bundleForNode({
        ...functionBuildOptions('scheduler'),
        stdin: { contents: SDK_PROBE, loader: 'js', resolveDir: root, sourcefile: 'sdk-probe.mjs' },
        outfile: out,
      }),
    );
    expect(kept.some((path) => path.includes('node_modules/@aws-sdk/client-dynamodb/'))).toBe(true);
    expect(
      kept.filter((path) =>
        /@aws-sdk\/(credential-provider-(node|ini|sso|process)|nested-clients)\//.test(path),
      ),
    ).toEqual([]);

    const dynamo = await startEmbeddedDynamo();
    try {
      // Asynchronously: the embedded DynamoDB answers from this process's event loop.
      let runs = 0;
      const run = async (file: string, variables: Record<string, string>) => {
        runs += 1;
        // No instance metadata (no network), no HOME unless given: only the sources the case sets.
        const env = {
          PATH: process.env.PATH ?? '',
          PROBE_ENDPOINT: dynamo.endpoint,
          PROBE_TABLE: `probe${runs}`,
          AWS_EC2_METADATA_DISABLED: 'true',
          ...variables,
        };
        const { stdout } = await promisify(execFile)(process.execPath, [file], {
          encoding: 'utf8',
          cwd: dir,
          env,
          timeout: 30_000,
        });
        return JSON.parse(stdout.trim());
      };
      const keys = { AWS_ACCESS_KEY_ID: 'AKIDENVIRONMENT', AWS_SECRET_ACCESS_KEY: 'secret' };
      expect(await run(out, { ...keys, AWS_SESSION_TOKEN: 'token' })).toEqual({
        item: { pk: 'a', value: 42 },
        key: 'AKIDENVIRONMENT',
      });
      // No keys and no runtime SDK next to the bundle: the error names the variables.
      expect((await run(out, {})).error).toMatch(/AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set/);
      // No keys, and a runtime SDK whose chain finds a profile: that profile signs.
      const runtime = join(dir, 'with-runtime-sdk');
      const home = join(dir, 'home');
      mkdirSync(join(home, '.aws'), { recursive: true });
      writeFileSync(
        join(home, '.aws', 'credentials'),
        '[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = secret\n',
      );
      mkdirSync(runtime);
      symlinkSync(join(root, 'node_modules'), join(runtime, 'node_modules'), 'dir');
      copyFileSync(out, join(runtime, 'sdk-probe.mjs'));
      expect(await run(join(runtime, 'sdk-probe.mjs'), { HOME: home })).toEqual({
        item: { pk: 'a', value: 42 },
        key: 'AKIDPROFILE',
      });
    } finally {
      await dynamo.close();
    }
  });
});

describe('functionBundling', () => {
  it('keeps names only in the worker (DAG callbacks are resolved by name), and the SDK where the table is used', () => {
    const plans = Object.fromEntries(
      (Object.keys(FUNCTION_ENTRIES) as UpdraftFunctionName[]).map((name) => {
        const plan = functionBundling(name);
        return [name, { keepNames: plan.keepNames, external: plan.externalModules }];
      }),
    );
    const bundled = { keepNames: false, external: ['@aws-sdk/client-s3'] };
    expect(plans).toEqual({
      api: bundled,
      executionApi: bundled,
      scheduler: bundled,
      registerDags: bundled,
      worker: { keepNames: true, external: ['@aws-sdk/*'] },
    });
  });
});

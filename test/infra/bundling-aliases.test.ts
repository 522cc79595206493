import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbeddedDynamo } from '#store/embedded.ts';
import { bundleAliases, CJS_BUILTIN_ALIASES, ESM_REQUIRE_BANNER } from '../../lib/bundling.ts';
import { functionBundling } from '../../lib/functions.ts';

const dir = mkdtempSync(join(tmpdir(), 'updraft-bundling-aliases-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

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
    await build({
      entryPoints: [entry],
      outfile: out,
      bundle: true,
      platform: 'node',
      format: 'esm',
      banner: { js: ESM_REQUIRE_BANNER },
      alias: { ...CJS_BUILTIN_ALIASES },
      logLevel: 'silent',
    });
    const printed = execFileSync(process.execPath, [out], { encoding: 'utf8' });
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
    const result = await build({
      entryPoints: [entry],
      outfile: out,
      bundle: true,
      platform: 'node',
      format: 'esm',
      banner: { js: ESM_REQUIRE_BANNER },
      alias: bundleAliases({ withoutZodLocales: true }),
      // The entry is outside the project: its packages are the project's.
      nodePaths: [join(import.meta.dirname, '..', '..', 'node_modules')],
      metafile: true,
      logLevel: 'silent',
    });
    // Every file read is an input; those the bundle kept have bytes in the output.
    const kept = Object.values(result.metafile.outputs).flatMap((output) =>
      Object.entries(output.inputs).flatMap(([path, input]) => (input.bytesInOutput > 0 ? [path] : [])),
    );
    const locales = kept.filter((path) => /zod\/v4\/locales\/(?!en\.js)/.test(path));
    expect(kept.some((path) => path.endsWith('zod/v4/locales/en.js'))).toBe(true);
    expect(locales).toEqual([]);
    const printed = JSON.parse(execFileSync(process.execPath, [out], { encoding: 'utf8' }));
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
    const root = join(import.meta.dirname, '..', '..');
    const lastLine = (printed: string) => JSON.parse(printed.trim().split('\n').at(-1) as string);
    // The probe is plain JavaScript: from the sources, Node runs it as it is, in the project.
    const fromSource = lastLine(
      execFileSync(process.execPath, ['--input-type=module', '-e', API_PROBE], {
        encoding: 'utf8',
        cwd: root,
      }),
    );
    const out = join(dir, 'api-probe.mjs');
    await build({
      stdin: { contents: API_PROBE, loader: 'js', resolveDir: root, sourcefile: 'api-probe.mjs' },
      outfile: out,
      bundle: true,
      platform: 'node',
      format: 'esm',
      minify: true,
      keepNames: true,
      external: ['@aws-sdk/*'],
      nodePaths: [join(root, 'node_modules')],
      banner: { js: ESM_REQUIRE_BANNER },
      alias: bundleAliases({ withoutZodLocales: true }),
      logLevel: 'silent',
    });
    const fromBundle = lastLine(execFileSync(process.execPath, [out], { encoding: 'utf8', cwd: dir }));
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
    TableName: 'probe', BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
  }));
  const documents = DynamoDBDocumentClient.from(client);
  await documents.send(new PutCommand({ TableName: 'probe', Item: { pk: 'a', value: 42 } }));
  const { Item } = await documents.send(new GetCommand({ TableName: 'probe', Key: { pk: 'a' } }));
  console.log(JSON.stringify({ item: Item }));
} catch (error) {
  console.log(JSON.stringify({ error: error.message }));
}
`;

/**
 * The functions that use the table bundle the AWS SDK with the environment-only credential
 * provider (lib/functions.ts, functionBundling): the bundled client must reach DynamoDB with the
 * credentials Lambda puts in the environment, and say which are missing without them.
 */
describe('the AWS SDK bundled with the Lambda credential provider', () => {
  it('signs with the credentials of the environment, and names them when they are missing', async () => {
    const root = join(import.meta.dirname, '..', '..');
    const plan = functionBundling('scheduler');
    const out = join(dir, 'sdk-probe.mjs');
    const result = await build({
      stdin: { contents: SDK_PROBE, loader: 'js', resolveDir: root, sourcefile: 'sdk-probe.mjs' },
      outfile: out,
      bundle: true,
      platform: 'node',
      format: 'esm',
      minify: true,
      mainFields: ['module', 'main'],
      external: [...plan.externalModules],
      banner: { js: ESM_REQUIRE_BANNER },
      alias: { ...plan.aliases },
      metafile: true,
      logLevel: 'silent',
    });
    const kept = Object.values(result.metafile.outputs).flatMap((output) =>
      Object.entries(output.inputs).flatMap(([path, input]) => (input.bytesInOutput > 0 ? [path] : [])),
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
      const run = async (credentials: Record<string, string>) => {
        // No HOME, profile or container variables: the environment's keys are the only source.
        const env = { PATH: process.env.PATH ?? '', PROBE_ENDPOINT: dynamo.endpoint, ...credentials };
        const { stdout } = await promisify(execFile)(process.execPath, [out], {
          encoding: 'utf8',
          cwd: dir,
          env,
          timeout: 30_000,
        });
        return JSON.parse(stdout.trim());
      };
      expect(
        await run({
          AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
          AWS_SECRET_ACCESS_KEY: 'secret',
          AWS_SESSION_TOKEN: 'token',
        }),
      ).toEqual({ item: { pk: 'a', value: 42 } });
      expect((await run({})).error).toMatch(/AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set/);
    } finally {
      await dynamo.close();
    }
  });
});

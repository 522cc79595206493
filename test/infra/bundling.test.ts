import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TRIGGERER_NODE_FLAGS } from '#triggerer/node-flags.ts';
import { SERIALIZED_DAGS_FILE } from '../../lib/dag-registration.ts';
import { logicalIdOf, removeOutdirs, type Synthesized, synthesize } from './helpers.ts';

afterAll(removeOutdirs);

/**
 * The one synthesis that bundles for real: every handler with esbuild and the triggerer's image
 * context, as `cdk synth` and `cdk deploy` do. The other infra tests give the functions stub code.
 */
describe('bundles', () => {
  let synthesized: Synthesized;
  let assetOf: (construct: Parameters<typeof logicalIdOf>[0]) => string;

  beforeAll(() => {
    synthesized = synthesize({ dagsDir: 'dags' });
    const outdir = synthesized.app.outdir;
    const functions = synthesized.template.findResources('AWS::Lambda::Function');
    assetOf = (fn) => {
      const key = functions[logicalIdOf(fn)]?.Properties.Code.S3Key as string;
      return join(outdir, `asset.${key.replace(/\.zip$/, '')}`);
    };
  }, 120_000);

  const bundled = () => {
    const { updraft } = synthesized.stack;
    return {
      api: updraft.api.function,
      executionApi: updraft.executionApi.function,
      scheduler: updraft.scheduler.function,
      worker: updraft.workers.function,
      registerDags: updraft.dagRegistration.function,
    };
  };

  it('bundles each handler as one ES module with a source map, under 1 MB', () => {
    for (const [name, fn] of Object.entries(bundled())) {
      const dir = assetOf(fn);
      const files = readdirSync(dir);
      expect(files, name).toContain('index.mjs');
      expect(files, name).toContain('index.mjs.map');
      expect(statSync(join(dir, 'index.mjs')).size, name).toBeLessThan(1024 * 1024);
      const code = readFileSync(join(dir, 'index.mjs'), 'utf8');
      // ES module output starts with the banner that gives bundled CommonJS code its `require`.
      expect(
        code.startsWith('import { createRequire }') || code.startsWith('import{createRequire}'),
        name,
      ).toBe(true);
      expect(code.trimEnd().endsWith('//# sourceMappingURL=index.mjs.map'), name).toBe(true);
    }
  });

  it('bundles the AWS SDK into the functions that use the table, but S3 and the credential chain; leaves it to the runtime in the worker', () => {
    const sdkSources = (fn: Parameters<typeof logicalIdOf>[0]) =>
      (JSON.parse(readFileSync(join(assetOf(fn), 'index.mjs.map'), 'utf8')).sources as string[]).filter(
        (source) => source.includes('node_modules/@aws-sdk/'),
      );
    const { worker, ...withTable } = bundled();
    expect(sdkSources(worker)).toEqual([]);
    for (const [name, fn] of Object.entries(withTable)) {
      const sources = sdkSources(fn);
      expect(
        sources.some((source) => source.includes('/@aws-sdk/client-dynamodb/')),
        name,
      ).toBe(true);
      expect(
        sources.filter((source) =>
          /\/@aws-sdk\/(client-s3|credential-provider-(node|ini|sso|process|web-identity)|nested-clients)\//.test(
            source,
          ),
        ),
        name,
      ).toEqual([]);
    }
    // The log bucket's client comes from the runtime, on the first log call; zod's locales are
    // left out but its English one (lib/bundling.ts, ZOD_WITHOUT_LOCALES_ALIAS).
    for (const fn of [withTable.api, withTable.executionApi]) {
      const sources = JSON.parse(readFileSync(join(assetOf(fn), 'index.mjs.map'), 'utf8'))
        .sources as string[];
      const locales = sources.filter((source) => source.includes('node_modules/zod/v4/locales/'));
      const names = locales.map((source) => source.slice(source.lastIndexOf('/') + 1));
      expect(names.filter((name) => name !== 'index.js')).toEqual(['en.js']);
      const code = readFileSync(join(assetOf(fn), 'index.mjs'), 'utf8');
      expect(code).toMatch(/import\(\s*"@aws-sdk\/client-s3"\s*\)/);
      expect(code).not.toMatch(/from\s*"@aws-sdk\//);
    }
  });

  it('imports node:http and node:https only through require (an ES import of them loads undici at cold start)', () => {
    const esImport = /(from\s*|import\s*|import\()\s*"(node:)?https?"/;
    for (const [name, fn] of Object.entries(bundled())) {
      expect(readFileSync(join(assetOf(fn), 'index.mjs'), 'utf8'), name).not.toMatch(esImport);
    }
    const images = JSON.parse(readFileSync(join(synthesized.app.outdir, 'Updraft.assets.json'), 'utf8'));
    const image = Object.values(images.dockerImages ?? {})[0] as { source: { directory: string } };
    const main = readFileSync(join(synthesized.app.outdir, image.source.directory, 'main.mjs'), 'utf8');
    expect(main).not.toMatch(esImport);
  });

  it('bundles the DAG code into the worker and the triggerer image (async callbacks), and no other function', () => {
    // A string only the example_etl DAG's task code contains.
    const marker = 'simulated flaky source';
    for (const [name, fn] of Object.entries(bundled())) {
      const code = readFileSync(join(assetOf(fn), 'index.mjs'), 'utf8');
      expect(code.includes(marker), name).toBe(name === 'worker');
    }
    const images = JSON.parse(readFileSync(join(synthesized.app.outdir, 'Updraft.assets.json'), 'utf8'));
    const image = Object.values(images.dockerImages ?? {})[0] as { source: { directory: string } };
    const main = readFileSync(join(synthesized.app.outdir, image.source.directory, 'main.mjs'), 'utf8');
    expect(main).toContain(marker);
    // Callbacks are found by function name: the minified image keeps them.
    expect(main).toContain('"runDone"');
  });

  it('puts the DAGs serialized at synth beside the registration function', () => {
    const file = join(assetOf(bundled().registerDags), SERIALIZED_DAGS_FILE);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(synthesized.stack.updraft.serializedDags);
  });

  it('passes the AWS Solutions checks with the bundled code and the image asset (and its ECR pull role)', () => {
    expect(synthesized.findings).toEqual([]);
  });

  it('stages the triggerer image context, the bundled entry beside the Dockerfile, for arm64', () => {
    const manifest = JSON.parse(readFileSync(join(synthesized.app.outdir, 'Updraft.assets.json'), 'utf8'));
    const images = Object.values(manifest.dockerImages ?? {}) as {
      source: { directory: string; platform?: string };
    }[];
    expect(images).toHaveLength(1);
    const context = join(synthesized.app.outdir, images[0]!.source.directory);
    expect(images[0]!.source.platform).toBe('linux/arm64');
    expect(readdirSync(context).sort()).toEqual(['Dockerfile', 'main.mjs', 'main.mjs.map']);
    const dockerfile = readFileSync(join(context, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^FROM .*node:24-slim$/m);
    // The container's triggerer runs with the flags standalone's does.
    const nodeOptions = /NODE_OPTIONS="([^"]*)"/.exec(dockerfile)?.[1]?.split(' ') ?? [];
    expect(nodeOptions).toEqual(expect.arrayContaining([...TRIGGERER_NODE_FLAGS]));
    // No Lambda runtime provides the SDK in the container: it is bundled, never imported.
    expect(readFileSync(join(context, 'main.mjs'), 'utf8')).not.toMatch(/from\s*"@aws-sdk\//);
    expect(existsSync(join(context, 'node_modules'))).toBe(false);
  });
});

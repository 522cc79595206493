import { copyFileSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { bundleAliases, ESM_REQUIRE_BANNER } from './bundling.ts';
import { removeOnExit } from './temp-files.ts';

/** The triggerer's container entry and image recipe, relative to the project root. */
export const TRIGGERER_ENTRY = 'functions/triggerer/main.ts';
export const TRIGGERER_DOCKERFILE = 'functions/triggerer/Dockerfile';

export class TriggererImageError extends Error {
  override name = 'TriggererImageError';
}

/**
 * Builds the Docker context of the triggerer image at synth: `main.mjs` (the entry bundled by
 * esbuild, with its source map) and the Dockerfile, in a fresh directory. The CDK stages that
 * directory as an image asset; Docker runs only when the image is published at deploy.
 */
export function stageTriggererContext(projectRoot: string): string {
  const entry = join(projectRoot, TRIGGERER_ENTRY);
  const dockerfile = join(projectRoot, TRIGGERER_DOCKERFILE);
  for (const file of [entry, dockerfile]) {
    if (!existsSync(file)) {
      throw new TriggererImageError(
        `${file} does not exist: the triggerer image is built from it (or pass triggerer.image)`,
      );
    }
  }
  const context = mkdtempSync(join(tmpdir(), 'updraft-triggerer-'));
  removeOnExit(context);
  buildSync({
    entryPoints: [entry],
    outfile: join(context, 'main.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    minify: true,
    // Function names survive minification: a callback is resolved by its name, checked against the
    // name the DAG was serialized with.
    keepNames: true,
    sourcemap: true,
    sourcesContent: false,
    banner: { js: ESM_REQUIRE_BANNER },
    alias: bundleAliases({ withoutZodLocales: false }),
    logLevel: 'warning',
    absWorkingDir: projectRoot,
  });
  copyFileSync(dockerfile, join(context, 'Dockerfile'));
  return context;
}

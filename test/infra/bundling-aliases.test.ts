import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { CJS_BUILTIN_ALIASES, ESM_REQUIRE_BANNER } from '../../lib/bundling.ts';

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

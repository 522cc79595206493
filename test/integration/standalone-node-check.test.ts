import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

/** `bin/updraft.js`, the `updraft` command, checks the Node version before anything else runs. */

const run = (args: string[]) =>
  promisify(execFile)(process.execPath, args, { env: { ...process.env, UPDRAFT_HOME: '/nonexistent' } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );

/** Makes this Node report an older version, as Node 20 would, before the launcher runs. */
const pretendNode = (version: string) =>
  `data:text/javascript,Object.defineProperty(process.versions,"node",{value:"${version}"})`;

describe('the updraft launcher', () => {
  it('is what package.json runs for `npm start` and `npx updraft`', async () => {
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as {
      bin: Record<string, string>;
      scripts: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    expect(pkg.bin.updraft).toBe('bin/updraft.js');
    expect(pkg.scripts.start).toBe('node bin/updraft.js standalone');
    // npm puts node_modules/.bin first on PATH, so npm start and npx run on this Node.
    expect(pkg.devDependencies.node).toMatch(/^\^24\./);
  });

  it('prints one line naming the Node it needs and how to get one, on an older Node', async () => {
    const result = await run(['--import', pretendNode('20.20.2'), 'bin/updraft.js', 'standalone']);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^Error: Updraft needs Node\.js >=22\.18\.0 \(package\.json "engines"\), but .* is Node\.js 20\.20\.2: /,
    );
    expect(lines[0]).toContain('npm ci');
    expect(lines[0]).toContain('nodejs.org');
  });

  it('hands over to the CLI on a Node that is new enough', async () => {
    const result = await run(['bin/updraft.js', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Usage: updraft');
  });
});

import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

/** The triggerer's container entry, as the image runs it: a process that ECS stops with SIGTERM. */

const ENTRY = fileURLToPath(new URL('../../functions/triggerer/main.ts', import.meta.url));

function start(env: Record<string, string>): {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
} {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('UPDRAFT_') && !name.startsWith('AWS_')),
  );
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', ENTRY], {
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  children.add(child);
  return { child, output: () => output, exited };
}

/** Every child still running after a test (a failed wait) is killed, so none outlives the suite. */
const children = new Set<ChildProcess>();
afterEach(() => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
});

async function waitForOutput(output: () => string, text: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!output().includes(text)) {
    if (Date.now() > deadline) throw new Error(`No "${text}" in the triggerer's output: ${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * An Execution API on port 9, which fetch refuses to call (every call fails at once, with no
 * network at all), and role credentials to sign with.
 */
const UNREACHABLE_WITH_ROLE = {
  UPDRAFT_EXECUTION_API_URL: 'http://127.0.0.1:9/',
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
  AWS_SECRET_ACCESS_KEY: 'secret-example',
};

describe('the triggerer entry', () => {
  it('starts, keeps trying to register while the Execution API is unreachable, and exits 0 on SIGTERM', async () => {
    const triggerer = start({ ...UNREACHABLE_WITH_ROLE, UPDRAFT_TRIGGERER_TOKEN: 'triggerer-token' });
    await waitForOutput(triggerer.output, 'Cannot register the triggerer job yet');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(triggerer.child.exitCode).toBeNull();
    triggerer.child.kill('SIGTERM');
    expect(await triggerer.exited).toBe(0);
    expect(triggerer.output()).toContain('"signal":"SIGTERM"');
    expect(triggerer.output()).toContain('http://127.0.0.1:9/');
    expect(triggerer.output()).not.toContain('triggerer-token');
  });

  it('exits 1 naming the variable when the Execution API URL is missing or not a URL', async () => {
    const missing = start({});
    expect(await missing.exited).toBe(1);
    expect(missing.output()).toContain('UPDRAFT_EXECUTION_API_URL is not set');
    const invalid = start({ UPDRAFT_EXECUTION_API_URL: 'not a url' });
    expect(await invalid.exited).toBe(1);
    expect(invalid.output()).toContain('UPDRAFT_EXECUTION_API_URL is not a URL');
  });

  it('exits 1 naming both ways to register when it has neither a credential nor a task role', async () => {
    const missing = start({ UPDRAFT_EXECUTION_API_URL: 'http://127.0.0.1:9/', AWS_REGION: 'us-east-1' });
    expect(await missing.exited).toBe(1);
    expect(missing.output()).toContain('UPDRAFT_TRIGGERER_TOKEN is not set and there is no task role');
    expect(missing.output()).toContain('AWS_CONTAINER_CREDENTIALS_RELATIVE_URI');
  });

  it('starts with its role alone, no credential, and keeps trying to register', async () => {
    const triggerer = start(UNREACHABLE_WITH_ROLE);
    try {
      await waitForOutput(triggerer.output, 'Cannot register the triggerer job yet');
      expect(triggerer.child.exitCode).toBeNull();
    } finally {
      triggerer.child.kill('SIGTERM');
    }
    expect(await triggerer.exited).toBe(0);
  });
});

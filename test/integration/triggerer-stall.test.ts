import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/** The stall watchdog on a real process: a blocked event loop ends it, a busy one does not. */
const WATCHDOG = resolve('src/triggerer/stall-watchdog.ts');

function run(
  blockMs: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const code = `
    import { watchForStalls } from ${JSON.stringify(WATCHDOG)};
    const watchdog = watchForStalls(1000);
    setTimeout(() => { const end = Date.now() + ${blockMs}; while (Date.now() < end) {} }, 200);
    setTimeout(() => { watchdog.stop(); process.stdout.write('alive'); }, ${blockMs} + 1500);
  `;
  return new Promise((done) => {
    const child = spawn(
      process.execPath,
      ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', code],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('exit', (exitCode, signal) => done({ code: exitCode, signal, stderr }));
  });
}

describe('the triggerer stall watchdog', () => {
  it('kills a process whose event loop is blocked longer than the limit, saying why', async () => {
    const result = await run(6_000);
    expect(result.stderr).toContain('event loop has been blocked');
    expect(result.signal).toBe('SIGKILL');
  }, 20_000);

  it('leaves a process whose loop was blocked for less than the limit alone', async () => {
    const result = await run(500);
    expect(result).toMatchObject({ code: 0, signal: null });
  }, 20_000);
});

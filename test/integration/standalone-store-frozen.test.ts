import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '#config/settings.ts';
import { silentLogger } from '#engine/logger.ts';
import { type Standalone, startStandalone } from '#standalone/services.ts';

/**
 * The store process is alive but does not answer (SIGSTOP: a stalled disk, a swapped-out
 * process). Health says so within its own short deadline, the supervisor notices and the API then
 * answers 503 at once, and everything recovers when the store answers again.
 */
const REPO_ROOT = resolve('.');
let home: string;
let dagsFolder: string;
let standalone: Standalone;
let storePid = 0;
let stopped = false;

function freeze(): void {
  process.kill(storePid, 'SIGSTOP');
  stopped = true;
}
function thaw(): void {
  if (stopped) process.kill(storePid, 'SIGCONT');
  stopped = false;
}

async function timed(path: string, token?: string) {
  const started = Date.now();
  const response = await fetch(`${standalone.apiUrl}${path}`, {
    ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
    signal: AbortSignal.timeout(30_000),
  });
  return {
    status: response.status,
    body: (await response.json()) as Record<string, unknown>,
    ms: Date.now() - started,
  };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await sleep(200);
  }
  throw new Error(`Timed out waiting for ${what}`);
}

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'updraft-frozen-'));
  dagsFolder = await mkdtemp(join(tmpdir(), 'updraft-frozen-dags-'));
  standalone = await startStandalone(
    loadSettings({
      UPDRAFT_HOME: home,
      PORT: '0',
      UPDRAFT_DAGS_FOLDER: dagsFolder,
      UPDRAFT_DAG_REFRESH_INTERVAL_MS: '0',
      UPDRAFT_METRICS_LOG_INTERVAL_MS: '0',
    }),
    { log: silentLogger, cwd: REPO_ROOT },
  );
  const line = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' })
    .split('\n')
    .find((text) => text.includes('embedded-server') && text.includes(home));
  storePid = Number(line?.trim().split(/\s+/)[0]);
}, 60_000);

afterAll(async () => {
  if (storePid) thaw();
  await standalone?.stop();
  await rm(home, { recursive: true, force: true });
  await rm(dagsFolder, { recursive: true, force: true });
});

describe('a store process that stops answering', () => {
  it('health answers 503 degraded within seconds, the API answers 503 once the supervisor notices, and both recover', async () => {
    expect(storePid).toBeGreaterThan(0);
    expect((await timed('/api/v2/monitor/health')).status).toBe(200);
    freeze();
    try {
      // The health route's own probe deadline, before the supervisor has noticed anything.
      const health = await timed('/api/v2/monitor/health');
      expect(health.status).toBe(503);
      expect(health.ms).toBeLessThan(10_000);
      expect(health.body).toMatchObject({ status: 'degraded', metadatabase: { status: 'unhealthy' } });
      expect(String((health.body.metadatabase as { detail: string }).detail)).toContain('does not answer');

      // The supervisor's probes notice; from then on every call is answered 503 at once.
      await until(
        'the supervisor to notice',
        async () => {
          const { body } = await timed('/api/v2/monitor/health');
          const detail = String((body.metadatabase as { detail?: string }).detail ?? '');
          return detail.includes('is running but does not answer') ? detail : undefined;
        },
        30_000,
      );
      const call = await timed('/api/v2/dags', standalone.apiToken);
      expect(call.status).toBe(503);
      expect(call.ms).toBeLessThan(2_000);
    } finally {
      thaw();
    }
    await until(
      'the API to answer 200 again',
      async () => ((await timed('/api/v2/dags', standalone.apiToken)).status === 200 ? true : undefined),
      30_000,
    );
    await until(
      'health to say healthy again',
      async () => ((await timed('/api/v2/monitor/health')).status === 200 ? true : undefined),
      30_000,
    );
  }, 120_000);
});

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DagRun } from '#contracts/public-api.ts';
import {
  E2E_DAGS_FOLDER,
  e2eEnv,
  freePort,
  jsonOf,
  makeHome,
  PublicApi,
  readTextOrEmpty,
  removeHome,
  runCli,
  StandaloneProcess,
  waitFor,
} from './harness.ts';

/**
 * Deadlines in standalone, every part a real process: the wake-up at a deadline comes from the
 * standalone process's timers (the tick is set too slow to be the one that finds it), the
 * callback runs on the callback lane once, and a run that beats its deadline owes nothing.
 */
describe('deadlines in standalone', () => {
  let home: string;
  let effects: string;
  let env: NodeJS.ProcessEnv;
  let standalone: StandaloneProcess | undefined;

  beforeEach(async () => {
    home = await makeHome();
    effects = join(home, 'effects');
    await mkdir(effects);
    env = e2eEnv(home, await freePort(), {
      UPDRAFT_DAGS_FOLDER: E2E_DAGS_FOLDER,
      UPDRAFT_E2E_EFFECTS: effects,
      // A minute: a deadline missed within seconds of its time was found by its wake-up, not a tick.
      UPDRAFT_SCHEDULER_TICK_MS: '60000',
    });
  });

  afterEach(async () => {
    await standalone?.kill();
    await removeHome(home);
  });

  it('runs the callback of a missed deadline once, at its time, and meets the deadline of a prompt run', async () => {
    standalone = new StandaloneProcess('node', env);
    const apiUrl = await standalone.waitUntilReady();
    const api = await PublicApi.fromHome(apiUrl, home);
    const cliEnv = { ...env, UPDRAFT_API_URL: apiUrl };

    await api.request<DagRun>('POST', '/dags/dl_slow/dagRuns', { dag_run_id: 's1' });
    const lines = await waitFor(
      'the deadline callback to have its effect',
      async () => {
        const text = (await readTextOrEmpty(join(effects, 'deadlines.log'))).trim();
        return text === '' ? undefined : text.split('\n');
      },
      20_000,
      200,
    );
    const [kind, key, lateByMs] = (lines[0] as string).split(' ');
    expect(kind).toBe('deadline_missed');
    expect(Number(lateByMs)).toBeLessThan(5_000);
    const done = await waitFor(
      'the late run to finish',
      async () => {
        const run = await api.request<DagRun>('GET', '/dags/dl_slow/dagRuns/s1');
        return run.state === 'success' ? run : undefined;
      },
      30_000,
      200,
    );
    expect(done.deadlines?.map((deadline) => deadline.state)).toEqual(['missed']);
    const listed = await runCli(['callbacks', 'list', 'dl_slow', 's1', '--json'], cliEnv);
    const { callbacks } = jsonOf<{ callbacks: { callback_id: string; kind: string; state: string }[] }>(
      listed,
    );
    expect(callbacks.map((callback) => [callback.callback_id, callback.kind, callback.state])).toEqual([
      [key, 'deadline_missed', 'success'],
    ]);

    const prompt = await runCli(['dags', 'trigger', 'dl_prompt', '--run-id', 'p1', '--wait'], cliEnv);
    expect(prompt.code).toBe(0);
    const met = await api.request<DagRun>('GET', '/dags/dl_prompt/dagRuns/p1');
    expect(met.deadlines?.map((deadline) => deadline.state)).toEqual(['met']);
    const shown = await runCli(['runs', 'show', 'dl_prompt', 'p1'], cliEnv);
    expect(shown.stdout).toMatch(/deadlines:\s+\S+ met \(queued_at\)/);
    expect((await readTextOrEmpty(join(effects, 'deadlines.log'))).trim().split('\n')).toHaveLength(1);
  }, 90_000);
});

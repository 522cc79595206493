import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  DagCollection,
  DagRunCollection,
  TaskInstanceCollection,
  XComEntry,
} from '#contracts/public-api.ts';
import {
  e2eEnv,
  freePort,
  jsonOf,
  makeHome,
  removeHome,
  runCli,
  StandaloneProcess,
  waitFor,
} from './harness.ts';

/** `npm start`, then the `updraft` CLI as another process, finding the server and token by itself. */
describe('standalone via npm start, driven by the CLI', () => {
  let home: string;
  let port: number;
  let env: NodeJS.ProcessEnv;
  let server: StandaloneProcess | undefined;
  let apiUrl: string;
  let etlRunId: string;

  const cli = (...args: string[]) => runCli(args, env);
  const tasksByIdOf = (collection: TaskInstanceCollection) =>
    Object.fromEntries(
      collection.task_instances.map((ti) => [ti.task_id, { state: ti.state, try_number: ti.try_number }]),
    );

  beforeAll(async () => {
    home = await makeHome();
    port = await freePort();
    env = e2eEnv(home, port);
    server = new StandaloneProcess('npm', env);
    apiUrl = await server.waitUntilReady();
  }, 60_000);

  afterAll(async () => {
    await server?.kill();
    await removeHome(home);
  });

  it('prints the banner with the API URL on the chosen port', () => {
    expect(apiUrl).toBe(`http://127.0.0.1:${port}`);
  });

  it('lists the example DAGs and no import error', async () => {
    const result = await cli('dags', 'list', '--json');
    expect(result.code).toBe(0);
    const collection = jsonOf<DagCollection>(result);
    // Only the examples: DAG files a user adds to dags/ do not fail this test.
    const examples = (name: string) => name.startsWith('example_');
    expect(
      collection.dags
        .map((dag) => dag.dag_id)
        .filter(examples)
        .sort(),
    ).toEqual([
      'example_branching',
      'example_callbacks',
      'example_deferrable',
      'example_etl',
      'example_schedule',
    ]);
    expect(collection.import_errors.filter((error) => examples(error.filename))).toEqual([]);
  });

  it('triggers example_callbacks: its retry, webhook and DAG callbacks succeed, the webhook kept once', async () => {
    const result = await cli('dags', 'trigger', 'example_callbacks', '--wait', '--timeout', '60');
    expect(result.code).toBe(0);
    const runs = jsonOf<DagRunCollection>(await cli('runs', 'list', 'example_callbacks', '--json'));
    const runId = runs.dag_runs[0]?.dag_run_id as string;
    const listed = await waitFor(
      'the callbacks of example_callbacks to succeed',
      async () => {
        const { callbacks } = jsonOf<{
          callbacks: { kind: string; name: string; state: string; place: string }[];
        }>(await cli('callbacks', 'list', 'example_callbacks', '--json'));
        return callbacks.length === 3 && callbacks.every((c) => c.state === 'success')
          ? callbacks
          : undefined;
      },
      30_000,
      500,
    );
    // The async ones ran on the triggerer, the plain function on a worker.
    expect(listed.map((c) => `${c.kind} ${c.name} on ${c.place}`).sort()).toEqual([
      'dag_success runDone on triggerer',
      'task_retry noteRetry on worker',
      'task_success webhookNotifier on triggerer',
    ]);
    // Its deadline (10 minutes after it was queued) was met when it finished.
    const shown = jsonOf<{ deadlines?: { state: string; reference: string }[] }>(
      await cli('runs', 'show', 'example_callbacks', runId, '--json'),
    );
    expect(shown.deadlines?.map((d) => `${d.reference} ${d.state}`)).toEqual(['queued_at met']);
    const hooks = (await (await fetch(`${apiUrl}/demo/hooks`)).json()) as {
      deliveries: { body: { kind: string; dag_run_id: string } }[];
    };
    expect(hooks.deliveries.filter((d) => d.body.dag_run_id === runId).map((d) => d.body.kind)).toEqual([
      'task_success',
    ]);
  }, 90_000);

  it('triggers example_etl and waits for its success (exit 0)', async () => {
    const result = await cli('dags', 'trigger', 'example_etl', '--wait', '--timeout', '60');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Run \S+ of example_etl finished: success/);
  }, 70_000);

  it('triggers example_deferrable and waits for its success: the job service, the triggerer, two deferrals', async () => {
    const result = await cli('dags', 'trigger', 'example_deferrable', '--wait', '--timeout', '60');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Run \S+ of example_deferrable finished: success/);
    const runs = jsonOf<DagRunCollection>(await cli('runs', 'list', 'example_deferrable', '--json'));
    const runId = runs.dag_runs[0]!.dag_run_id;
    const xcom = jsonOf<XComEntry>(
      await cli('tasks', 'xcom', 'example_deferrable', runId, 'run_job', '--json'),
    );
    expect(xcom.value).toMatchObject({ rows: 42 });
    const log = await cli('tasks', 'logs', 'example_deferrable', runId, 'run_job');
    expect(log.stdout).toMatch(/submitted the job[\s\S]*the job is done[\s\S]*published/);
  }, 70_000);

  it('lists the finished run with runs list --json', async () => {
    const result = await cli('runs', 'list', 'example_etl', '--json');
    const collection = jsonOf<DagRunCollection>(result);
    expect(collection.dag_runs.map((run) => [run.run_type, run.state])).toEqual([['manual', 'success']]);
    etlRunId = collection.dag_runs[0]!.dag_run_id;
  });

  it('shows all five tasks succeeded, transform_b on its second try', async () => {
    const result = await cli('tasks', 'list', 'example_etl', etlRunId, '--json');
    expect(tasksByIdOf(jsonOf<TaskInstanceCollection>(result))).toEqual({
      extract: { state: 'success', try_number: 1 },
      transform_a: { state: 'success', try_number: 1 },
      transform_b: { state: 'success', try_number: 2 },
      transform_c: { state: 'success', try_number: 1 },
      load: { state: 'success', try_number: 1 },
    });
  });

  it("returns load's XCom through tasks xcom --json", async () => {
    const result = await cli('tasks', 'xcom', 'example_etl', etlRunId, 'load', '--json');
    expect(result.code).toBe(0);
    expect(jsonOf<XComEntry>(result)).toEqual({
      key: 'return_value',
      value: { rows: 12, total: 134 },
      dag_id: 'example_etl',
      dag_run_id: etlRunId,
      task_id: 'load',
      map_index: -1,
    });
  });

  it('prints the XCom value alone without --json', async () => {
    const result = await cli('tasks', 'xcom', 'example_etl', etlRunId, 'transform_b');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual([10, 20, 30, 40]);
  });

  it('answers an unknown XCom key with a not-found error (exit 2)', async () => {
    const result = await cli('tasks', 'xcom', 'example_etl', etlRunId, 'load', '--key', 'nope');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`XCom nope of task instance example_etl/${etlRunId}/load not found`);
    expect(result.stderr).toContain('HTTP 404');
  });

  it("shows load's log with its summary", async () => {
    const result = await cli('tasks', 'logs', 'example_etl', etlRunId, 'load');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('loaded');
    expect(result.stdout).toContain('"total":134');
  });

  it('runs example_branching down the slow path with publishing on (exit 0)', async () => {
    const trigger = await cli(
      'dags',
      'trigger',
      'example_branching',
      '--conf',
      '{"path": "slow", "publish": true}',
      '--run-id',
      'e2e_slow_path',
      '--wait',
      '--timeout',
      '60',
    );
    expect(trigger.code).toBe(0);
    expect(trigger.stdout).toContain('Run e2e_slow_path of example_branching finished: success');
    const tasks = await cli('tasks', 'list', 'example_branching', 'e2e_slow_path', '--json');
    expect(tasksByIdOf(jsonOf<TaskInstanceCollection>(tasks))).toEqual({
      start: { state: 'success', try_number: 1 },
      choose_path: { state: 'success', try_number: 1 },
      fast_path: { state: 'skipped', try_number: 0 },
      slow_a: { state: 'success', try_number: 1 },
      slow_b: { state: 'success', try_number: 1 },
      join: { state: 'success', try_number: 1 },
      publish: { state: 'success', try_number: 1 },
      cleanup: { state: 'success', try_number: 1 },
    });
  }, 70_000);

  it('refuses to trigger a DAG that does not exist (exit 2, clear message)', async () => {
    const result = await cli('dags', 'trigger', 'does_not_exist');
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('DAG does_not_exist not found');
    expect(result.stderr).toContain('HTTP 404');
  });

  it('stops on Ctrl-C, after which the CLI says the API is unreachable (exit 2)', async () => {
    const running = server!;
    running.signalGroup('SIGINT');
    await running.waitForExit(15_000);
    // npm may exit before its child: wait until nothing answers on the port any more.
    await waitFor(
      'the API to stop answering',
      async () => {
        try {
          await fetch(`${apiUrl}/api/v2/monitor/health`);
          return undefined;
        } catch {
          return true;
        }
      },
      10_000,
    );
    const result = await cli('dags', 'list');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`Cannot reach the Updraft API at ${apiUrl}`);
  }, 30_000);
});

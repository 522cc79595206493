import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '#cli/main.ts';
import type { Dag, DagCollection, DagRun, TaskInstance } from '#contracts/public-api.ts';
import { closeServer } from '#http/server.ts';

class Capture extends Writable {
  text = '';
  isTTY: boolean | undefined;
  constructor(isTTY?: boolean) {
    super();
    this.isTTY = isTTY;
  }
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

interface RecordedRequest {
  method: string;
  url: string;
  authorization: string | undefined;
  body: unknown;
}

type Route = (request: RecordedRequest) => { status: number; body: unknown };

const DAG: Dag = {
  dag_id: 'sync_users',
  description: 'Copies users',
  fileloc: 'dags/sync_users.ts',
  is_paused: false,
  is_active: true,
  tags: ['etl', 'users'],
  schedule: 'rate(1 hour)',
  next_dagrun_logical_date: '2026-01-01T01:00:00.000Z',
  dag_version: 'abc123',
  last_parsed_time: '2026-01-01T00:00:00.000Z',
};

const DAG_LIST: DagCollection = {
  dags: [
    DAG,
    {
      ...DAG,
      dag_id: 'nightly',
      description: null,
      tags: [],
      schedule: null,
      is_paused: true,
      next_dagrun_logical_date: null,
    },
  ],
  total_entries: 2,
  import_errors: [],
};

const RUN_ID = 'manual__2026-01-01T00:00:00+00:00';

function run(state: DagRun['state']): DagRun {
  return {
    dag_id: 'sync_users',
    dag_run_id: RUN_ID,
    run_type: 'manual',
    state,
    logical_date: '2026-01-01T00:00:00.000Z',
    data_interval_start: null,
    data_interval_end: null,
    queued_at: '2026-01-01T00:00:00.000Z',
    start_date: null,
    end_date: null,
    conf: { a: 1 },
    dag_version: 'abc123',
  };
}

function taskInstance(taskId: string, state: TaskInstance['state'], tryNumber = 1): TaskInstance {
  return {
    dag_id: 'sync_users',
    dag_run_id: RUN_ID,
    task_id: taskId,
    map_index: -1,
    state,
    try_number: tryNumber,
    max_tries: 1,
    start_date: null,
    end_date: null,
    duration: state === 'success' ? 1.5 : null,
    operator: 'PythonOperator',
    pool: 'default_pool',
    pool_slots: 1,
    priority_weight: 1,
    queue: 'default',
    queued_when: null,
    hostname: null,
    error_message: null,
    next_retry_at: null,
    next_method: null,
    trigger_id: null,
    trigger_timeout: null,
    deferral_seq: 0,
  };
}

/** The n-th GET of the run (and, separately, of its task instances) sees `states[n]`, the last one repeating. */
function runProgression(states: (DagRun['state'] & TaskInstance['state'])[]): Record<string, Route> {
  const counters = { run: 0, tis: 0 };
  const next = (counter: 'run' | 'tis') => states[Math.min(counters[counter]++, states.length - 1)]!;
  const runPath = `/api/v2/dags/sync_users/dagRuns/${encodeURIComponent(RUN_ID)}`;
  return {
    'POST /api/v2/dags/sync_users/dagRuns': () => ({ status: 201, body: run('queued') }),
    [`GET ${runPath}`]: () => ({ status: 200, body: run(next('run')) }),
    [`GET ${runPath}/taskInstances`]: () => {
      const state = next('tis');
      const tis =
        state === 'queued'
          ? [taskInstance('extract', 'queued'), taskInstance('load', null)]
          : [taskInstance('extract', 'success'), taskInstance('load', state)];
      return { status: 200, body: { task_instances: tis, total_entries: 2 } };
    },
  };
}

describe('updraft CLI', () => {
  let server: Server;
  let baseUrl: string;
  let home: string;
  let routes: Record<string, Route>;
  let requests: RecordedRequest[];

  beforeEach(async () => {
    home = mkdtempSync(join(tmpdir(), 'updraft-cli-'));
    writeFileSync(join(home, 'api-token'), 'secret-token\n');
    routes = {};
    requests = [];
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let raw = '';
      req.on('data', (chunk: Buffer) => {
        raw += chunk.toString();
      });
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'http://x');
        const recorded: RecordedRequest = {
          method: req.method ?? '',
          url: `${url.pathname}${url.search}`,
          authorization: req.headers.authorization,
          body: raw ? JSON.parse(raw) : undefined,
        };
        requests.push(recorded);
        const route = routes[`${recorded.method} ${url.pathname}`];
        const answer = route
          ? route(recorded)
          : { status: 404, body: { detail: `No route ${recorded.method} ${url.pathname}`, status: 404 } };
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer.body));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    await closeServer(server);
    rmSync(home, { recursive: true, force: true });
  });

  async function cli(args: string[], options: { apiUrl?: string; tty?: boolean } = {}) {
    const stdout = new Capture(options.tty);
    const stderr = new Capture();
    const code = await main(['node', 'updraft', ...args], {
      stdout,
      stderr,
      env: { UPDRAFT_HOME: home, UPDRAFT_API_URL: options.apiUrl ?? baseUrl },
      cwd: home,
      pollIntervalMs: 5,
    });
    return { code, stdout: stdout.text, stderr: stderr.text };
  }

  it('sends the bearer token read from the token file in UPDRAFT_HOME', async () => {
    routes['GET /api/v2/dags'] = () => ({ status: 200, body: DAG_LIST });
    await cli(['dags', 'list']);
    expect(requests.map((r) => [r.method, r.url, r.authorization])).toEqual([
      ['GET', '/api/v2/dags?limit=100', 'Bearer secret-token'],
    ]);
  });

  it('prints DAGs as an aligned table', async () => {
    routes['GET /api/v2/dags'] = () => ({ status: 200, body: DAG_LIST });
    const result = await cli(['dags', 'list']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      [
        'DAG_ID      PAUSED  SCHEDULE      NEXT_RUN                  TAGS       DESCRIPTION',
        'sync_users  no      rate(1 hour)  2026-01-01T01:00:00.000Z  etl,users  Copies users',
        'nightly     yes     -             -                         -          -',
        '',
      ].join('\n'),
    );
  });

  it("prints the API's JSON with --json", async () => {
    routes['GET /api/v2/dags'] = () => ({ status: 200, body: DAG_LIST });
    const result = await cli(['dags', 'list', '--json']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(DAG_LIST);
  });

  it('triggers with --conf, waits through queued → running → success and exits 0', async () => {
    Object.assign(routes, runProgression(['queued', 'running', 'success']));
    const result = await cli(['dags', 'trigger', 'sync_users', '--conf', '{"a":1}', '--wait']);
    expect(result.code).toBe(0);
    expect(requests[0]).toMatchObject({ method: 'POST', body: { conf: { a: 1 } } });
    const lines = result.stdout.split('\n');
    expect(lines.slice(0, 5)).toEqual([
      `Triggered sync_users: run ${RUN_ID}`,
      `${RUN_ID} queued  success 0 · running 0 · queued 1 · failed 0 · up_for_retry 0 · none 1`,
      `${RUN_ID} running  success 1 · running 1 · queued 0 · failed 0 · up_for_retry 0 · none 0`,
      `${RUN_ID} success  success 2 · running 0 · queued 0 · failed 0 · up_for_retry 0 · none 0`,
      `Run ${RUN_ID} of sync_users finished: success`,
    ]);
    expect(lines[6]).toMatch(/^extract +success +1 +- +- +1\.5s +- +-$/);
  });

  it('exits 1 when the waited run fails', async () => {
    Object.assign(routes, runProgression(['queued', 'running', 'failed']));
    const result = await cli(['dags', 'trigger', 'sync_users', '--wait']);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`Run ${RUN_ID} of sync_users finished: failed\n`);
  });

  it('rewrites the progress line in place on a terminal', async () => {
    Object.assign(routes, runProgression(['queued', 'running', 'success']));
    const result = await cli(['runs', 'wait', 'sync_users', RUN_ID], { tty: true });
    expect(result.code).toBe(0);
    const progress = result.stdout.split('\n')[0]!;
    expect(progress.split('\x1b[2K').length).toBe(4);
    expect(
      progress.endsWith(
        `${RUN_ID} success  success 2 · running 0 · queued 0 · failed 0 · up_for_retry 0 · none 0`,
      ),
    ).toBe(true);
  });

  it('gives up with exit 2 after --timeout', async () => {
    Object.assign(routes, runProgression(['running']));
    const result = await cli(['runs', 'wait', 'sync_users', RUN_ID, '--timeout', '1']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `Timed out after 1 s waiting for run ${RUN_ID} of sync_users (state: running).\n`,
    );
  });

  it('refuses --conf that is not JSON, naming --conf, and sends nothing', async () => {
    const result = await cli(['dags', 'trigger', 'sync_users', '--conf', '{a:1}']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /^Error: --conf is not valid JSON \(.+\); expected an object such as --conf/,
    );
    expect(requests).toEqual([]);
  });

  it('refuses --conf that is JSON but not an object', async () => {
    const result = await cli(['dags', 'trigger', 'sync_users', '--conf', '[1]']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`Error: --conf must be a JSON object such as '{"key": "value"}', got: [1]\n`);
    expect(requests).toEqual([]);
  });

  it('explains how to start the API when nothing listens at its URL', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    const result = await cli(['dags', 'list'], { apiUrl: url });
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `Error: Cannot reach the Updraft API at ${url}: is it running? Start it with \`npm start\` (or set UPDRAFT_API_URL).\n`,
    );
  });

  it("prints the latest try's log by default", async () => {
    const tiPath = `/api/v2/dags/sync_users/dagRuns/${encodeURIComponent(RUN_ID)}/taskInstances/load`;
    routes[`GET ${tiPath}`] = () => ({ status: 200, body: taskInstance('load', 'failed', 2) });
    routes[`GET ${tiPath}/logs/2`] = () => ({ status: 200, body: { content: 'line one\nline two\n' } });
    const result = await cli(['tasks', 'logs', 'sync_users', RUN_ID, 'load']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('line one\nline two\n');
    expect(requests.map((r) => r.url)).toEqual([`${tiPath}?map_index=-1`, `${tiPath}/logs/2?map_index=-1`]);
  });

  it('follows the log pages by their continuation tokens and prints the whole log once', async () => {
    const tiPath = `/api/v2/dags/sync_users/dagRuns/${encodeURIComponent(RUN_ID)}/taskInstances/load`;
    const pages: Record<string, { content: string; continuation_token?: string }> = {
      '': { content: 'line one\nline ', continuation_token: 'p2' },
      p2: { content: 'two\nline ', continuation_token: 'p3' },
      p3: { content: 'three\n' },
    };
    routes[`GET ${tiPath}/logs/1`] = (request) => ({
      status: 200,
      body: pages[new URL(request.url, 'http://x').searchParams.get('token') ?? ''],
    });
    const result = await cli(['tasks', 'logs', 'sync_users', RUN_ID, 'load', '--try', '1']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('line one\nline two\nline three\n');
    expect(requests.map((r) => r.url)).toEqual([
      `${tiPath}/logs/1?map_index=-1`,
      `${tiPath}/logs/1?map_index=-1&token=p2`,
      `${tiPath}/logs/1?map_index=-1&token=p3`,
    ]);
  });

  it("prints the API's detail and status on a 404", async () => {
    routes['GET /api/v2/dags/missing'] = () => ({
      status: 404,
      body: { detail: 'DAG missing not found', status: 404 },
    });
    const result = await cli(['dags', 'show', 'missing']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe('Error: DAG missing not found (HTTP 404 from GET /api/v2/dags/missing)\n');
    expect(result.stdout).toBe('');
  });

  it('clears with --yes and --downstream without a dry run', async () => {
    routes['POST /api/v2/dags/sync_users/clearTaskInstances'] = () => ({
      status: 200,
      body: { task_instances: [taskInstance('load', null, 1)] },
    });
    const result = await cli(['tasks', 'clear', 'sync_users', RUN_ID, 'load', '--downstream', '--yes']);
    expect(result.code).toBe(0);
    expect(requests.map((r) => r.body)).toEqual([
      { dag_run_id: RUN_ID, task_ids: ['load'], include_downstream: true },
    ]);
    expect(result.stdout.split('\n')[0]).toBe('Cleared 1 task instance(s):');
  });

  it('exits 2 with a usage message on an unknown command', async () => {
    const result = await cli(['dags', 'explode']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("error: unknown command 'explode'");
    expect(requests).toEqual([]);
  });
});

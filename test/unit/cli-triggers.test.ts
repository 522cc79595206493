import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '#cli/main.ts';
import type { Trigger, TriggerCollection, Triggerer, TriggererCollection } from '#contracts/public-api.ts';
import { closeServer } from '#http/server.ts';

/** `updraft triggers list` and `updraft triggerers list` against a fake API that records the requests. */

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

type Answer = (url: URL) => unknown;

const RUN_ID = 'manual__2026-01-01T00:00:00+00:00';

function trigger(triggerId: string, overrides: Partial<Trigger> = {}): Trigger {
  return {
    trigger_id: triggerId,
    classpath: 'updraft.DateTimeTrigger',
    kwargs: '{"moment":"2026-01-01T01:00:00.000Z"}',
    queue: 'default',
    created_date: '2026-01-01T00:00:05.000Z',
    timeout_date: null,
    state: 'waiting',
    triggerer_id: null,
    task_instance: { dag_id: 'sensors', dag_run_id: RUN_ID, task_id: 'wait', map_index: -1, try_number: 1 },
    deferral_seq: 1,
    log_url: `/api/v2/dags/sensors/dagRuns/${encodeURIComponent(RUN_ID)}/taskInstances/wait/logs/1`,
    ...overrides,
  };
}

function triggerer(jobId: string, overrides: Partial<Triggerer> = {}): Triggerer {
  return {
    job_id: jobId,
    hostname: `host-${jobId}`,
    state: 'running',
    start_date: '2026-01-01T00:00:00.000Z',
    latest_heartbeat: '2026-01-01T00:10:00.000Z',
    end_date: null,
    capacity: 1000,
    queues: ['default'],
    running_triggers: 2,
    ...overrides,
  };
}

const TRIGGERS: TriggerCollection = {
  triggers: [
    trigger('Ab3x', {
      state: 'running',
      triggerer_id: 'job-1',
      timeout_date: '2026-01-01T02:00:00.000Z',
    }),
    trigger('Qz9k', {
      classpath: 'updraft.HttpTrigger',
      state: 'orphaned',
      triggerer_id: 'job-0',
      task_instance: { dag_id: 'sensors', dag_run_id: RUN_ID, task_id: 'poll', map_index: 2, try_number: 3 },
    }),
    trigger('Zw1c'),
  ],
};

const TRIGGERERS: TriggererCollection = {
  triggerers: [
    triggerer('job-0', { state: 'dead', running_triggers: 1, latest_heartbeat: '2026-01-01T00:01:00.000Z' }),
    triggerer('job-1', { queues: ['default', 'slow'] }),
  ],
};

describe('updraft triggers and triggerers', () => {
  let server: Server;
  let baseUrl: string;
  let home: string;
  let routes: Record<string, Answer>;
  let requests: { url: string; authorization: string | undefined }[];

  beforeEach(async () => {
    home = mkdtempSync(join(tmpdir(), 'updraft-cli-triggers-'));
    writeFileSync(join(home, 'api-token'), 'secret-token\n');
    routes = {};
    requests = [];
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      requests.push({ url: `${url.pathname}${url.search}`, authorization: req.headers.authorization });
      const route = routes[`${req.method} ${url.pathname}`];
      res.writeHead(route ? 200 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify(route ? route(url) : { detail: `No route ${url.pathname}`, status: 404 }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    await closeServer(server);
    rmSync(home, { recursive: true, force: true });
  });

  async function cli(args: string[]) {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await main(['node', 'updraft', ...args], {
      stdout,
      stderr,
      env: { UPDRAFT_HOME: home, UPDRAFT_API_URL: baseUrl },
      cwd: home,
    });
    return { code, stdout: stdout.text, stderr: stderr.text };
  }

  describe('triggers list', () => {
    it('prints triggers as a table: state, triggerer, task instance with its map index, try, dates', async () => {
      routes['GET /api/v2/triggers'] = () => TRIGGERS;
      const result = await cli(['triggers', 'list']);
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(
        [
          'TRIGGER_ID  CLASSPATH                STATE     TRIGGERER  TASK_INSTANCE                                      TRY  CREATED                   TIMEOUT',
          `Ab3x        updraft.DateTimeTrigger  running   job-1      sensors/${RUN_ID}/wait     1    2026-01-01T00:00:05.000Z  2026-01-01T02:00:00.000Z`,
          `Qz9k        updraft.HttpTrigger      orphaned  job-0      sensors/${RUN_ID}/poll[2]  3    2026-01-01T00:00:05.000Z  -`,
          `Zw1c        updraft.DateTimeTrigger  waiting   -          sensors/${RUN_ID}/wait     1    2026-01-01T00:00:05.000Z  -`,
          '',
        ].join('\n'),
      );
      expect(requests).toEqual([{ url: '/api/v2/triggers?limit=25', authorization: 'Bearer secret-token' }]);
    });

    it("prints the API's JSON with --json", async () => {
      routes['GET /api/v2/triggers'] = () => TRIGGERS;
      const result = await cli(['triggers', 'list', '--json']);
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual(TRIGGERS);
    });

    it('follows the cursor until --limit triggers are shown, and says when more may follow', async () => {
      const [first, second, third] = TRIGGERS.triggers;
      routes['GET /api/v2/triggers'] = (url) =>
        url.searchParams.get('cursor') === 'c2'
          ? { triggers: [third], next_cursor: 'c3' }
          : { triggers: [first, second], next_cursor: 'c2' };
      const result = await cli(['triggers', 'list', '--limit', '3']);
      expect(result.code).toBe(0);
      expect(requests.map((r) => r.url)).toEqual([
        '/api/v2/triggers?limit=3',
        '/api/v2/triggers?limit=1&cursor=c2',
      ]);
      const lines = result.stdout.trimEnd().split('\n');
      expect(lines.slice(1, 4).map((line) => line.split(' ')[0])).toEqual(['Ab3x', 'Qz9k', 'Zw1c']);
      expect(lines[4]).toBe('(3 triggers shown; more may follow: use --limit to see more)');
    });

    it('keeps next_cursor in the JSON when more may follow', async () => {
      routes['GET /api/v2/triggers'] = () => ({ triggers: TRIGGERS.triggers.slice(0, 1), next_cursor: 'c2' });
      const result = await cli(['triggers', 'list', '--limit', '1', '--json']);
      expect(JSON.parse(result.stdout)).toEqual({
        triggers: TRIGGERS.triggers.slice(0, 1),
        next_cursor: 'c2',
      });
    });

    it('says so when there are none', async () => {
      routes['GET /api/v2/triggers'] = () => ({ triggers: [] });
      const result = await cli(['triggers', 'list']);
      expect(result.stdout).toBe('No triggers found.\n');
    });

    it('refuses a --limit out of range before any request', async () => {
      const result = await cli(['triggers', 'list', '--limit', '0']);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('Expected an integer from 1 to 1000.');
      expect(requests).toEqual([]);
    });
  });

  describe('triggerers list', () => {
    it('prints triggerer jobs as a table, following every page', async () => {
      routes['GET /api/v2/triggerers'] = (url) =>
        url.searchParams.get('cursor') === 'j2'
          ? { triggerers: TRIGGERERS.triggerers.slice(1) }
          : { triggerers: TRIGGERERS.triggerers.slice(0, 1), next_cursor: 'j2' };
      const result = await cli(['triggerers', 'list']);
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(
        [
          'JOB_ID  HOSTNAME    STATE    RUNNING  CAPACITY  QUEUES        LAST_HEARTBEAT',
          'job-0   host-job-0  dead     1        1000      default       2026-01-01T00:01:00.000Z',
          'job-1   host-job-1  running  2        1000      default,slow  2026-01-01T00:10:00.000Z',
          '',
        ].join('\n'),
      );
      expect(requests.map((r) => r.url)).toEqual([
        '/api/v2/triggerers?limit=100',
        '/api/v2/triggerers?limit=100&cursor=j2',
      ]);
    });

    it("prints the API's JSON of every page with --json", async () => {
      routes['GET /api/v2/triggerers'] = () => TRIGGERERS;
      const result = await cli(['triggerers', 'list', '--json']);
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual(TRIGGERERS);
    });

    it('says so when there are none', async () => {
      routes['GET /api/v2/triggerers'] = () => ({ triggerers: [] });
      const result = await cli(['triggerers', 'list']);
      expect(result.stdout).toBe('No triggerers found.\n');
    });
  });
});

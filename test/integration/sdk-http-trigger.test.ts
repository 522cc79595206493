import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { closeServer } from '#http/server.ts';
import { dag, HttpSensor } from '#sdk/index.ts';
import { executeTask } from '#sdk/runtime.ts';
import {
  HTTP_BODY_LIMIT_BYTES,
  HTTP_BODY_TRUNCATED_MARKER,
  HttpPollTrigger,
  type HttpPollTriggerInput,
  type TriggerEvent,
  type TriggerRunContext,
} from '#sdk/triggers/index.ts';
import { testContext } from '../unit/sdk-fixtures.ts';

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

/** Answers the nth request with the nth handler (the last one repeats). */
let handlers: Handler[];
let requests: IncomingMessage[];
let server: Server;
let baseUrl: string;

beforeEach(async () => {
  handlers = [];
  requests = [];
  server = createServer((request, response) => {
    requests.push(request);
    const handler = handlers[Math.min(requests.length, handlers.length) - 1];
    if (handler) handler(request, response);
    else response.writeHead(500).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  await closeServer(server);
});

const json =
  (body: unknown, status = 200): Handler =>
  (_request, response) => {
    response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };

interface PollContext extends TriggerRunContext {
  sleeps: number[];
  lines: { level: string; message: string; fields?: Record<string, unknown> }[];
}

/** Sleeps resolve at once (the trigger's pacing is checked through the recorded wake-up times). */
function pollContext(signal = new AbortController().signal): PollContext {
  const sleeps: number[] = [];
  const lines: PollContext['lines'] = [];
  const record = (level: string) => (message: string, fields?: Record<string, unknown>) => {
    lines.push({ level, message, ...(fields ? { fields } : {}) });
  };
  return {
    sleeps,
    lines,
    log: { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') },
    signal,
    now: () => 10_000,
    async sleepUntil(atMs) {
      sleeps.push(atMs);
    },
  };
}

async function firstEvent(kwargs: HttpPollTriggerInput, ctx: TriggerRunContext): Promise<TriggerEvent> {
  for await (const event of new HttpPollTrigger(kwargs).run(ctx)) return event;
  throw new Error('the trigger ended without an event');
}

describe('HttpPollTrigger against a real server', () => {
  it('fires once a JSON path equals the expected value, polling between tries', async () => {
    handlers = [
      json({ job: { state: 'queued' } }),
      json({ job: { state: 'running' } }),
      json({ job: { state: 'done', rows: 3 } }),
    ];
    const ctx = pollContext();
    const event = await firstEvent(
      { url: `${baseUrl}/jobs/1`, intervalMs: 250, condition: { jsonPath: 'job.state', equals: 'done' } },
      ctx,
    );
    expect(event).toEqual({
      type: 'resume',
      payload: { status: 200, body: { job: { state: 'done', rows: 3 } } },
    });
    expect(requests).toHaveLength(3);
    expect(ctx.sleeps).toEqual([10_250, 10_250]);
    expect(ctx.lines[0]).toMatchObject({
      level: 'info',
      message: `${baseUrl}/jobs/1 does not match yet; polling again`,
      fields: { attempt: 1, status: 200, reason: 'job.state is "queued", not "done"' },
    });
  });

  it('polls again after a status that does not match', async () => {
    handlers = [json({ error: 'busy' }, 503), json({ ok: true })];
    const event = await firstEvent({ url: `${baseUrl}/health`, intervalMs: 100 }, pollContext());
    expect(event).toEqual({ type: 'resume', payload: { status: 200, body: { ok: true } } });
    expect(requests).toHaveLength(2);
  });

  it('logs a network error and polls again until it succeeds', async () => {
    handlers = [(request) => request.socket.destroy(), json({ ok: true })];
    const ctx = pollContext();
    const event = await firstEvent({ url: `${baseUrl}/flaky`, intervalMs: 100 }, ctx);
    expect(event).toEqual({ type: 'resume', payload: { status: 200, body: { ok: true } } });
    expect(ctx.lines[0]).toMatchObject({
      level: 'warn',
      message: `Polling ${baseUrl}/flaky failed; polling again`,
    });
    expect(ctx.sleeps).toHaveLength(1);
  });

  it('treats a request that outlasts requestTimeoutMs as a failed poll', async () => {
    handlers = [() => {}, json({ ok: true })];
    const ctx = pollContext();
    const event = await firstEvent({ url: `${baseUrl}/slow`, intervalMs: 100, requestTimeoutMs: 100 }, ctx);
    expect(event).toMatchObject({ payload: { status: 200 } });
    expect(ctx.lines[0]?.fields).toMatchObject({ error: 'no complete response within 100 ms' });
  });

  it('truncates a long body at the limit, with a marker', async () => {
    handlers = [
      (_request, response) => {
        response.writeHead(200, { 'content-type': 'text/plain' }).end('a'.repeat(HTTP_BODY_LIMIT_BYTES * 2));
      },
    ];
    const event = await firstEvent({ url: `${baseUrl}/big` }, pollContext());
    const body = (event.payload as { body: string }).body;
    expect(body).toBe('a'.repeat(HTTP_BODY_LIMIT_BYTES) + HTTP_BODY_TRUNCATED_MARKER);
  });

  it('keeps a body that is not JSON as text', async () => {
    handlers = [
      (_request, response) => response.writeHead(200, { 'content-type': 'text/plain' }).end('all done'),
    ];
    const event = await firstEvent(
      { url: `${baseUrl}/text`, condition: { bodyContains: 'done' } },
      pollContext(),
    );
    expect(event.payload).toEqual({ status: 200, body: 'all done' });
  });

  it('sends the method and headers it was given', async () => {
    handlers = [(_request, response) => response.writeHead(204).end()];
    const event = await firstEvent(
      { url: `${baseUrl}/head`, method: 'HEAD', headers: { 'x-api-key': 'k' }, condition: { status: [204] } },
      pollContext(),
    );
    expect(event.payload).toEqual({ status: 204, body: null });
    expect(requests[0]?.method).toBe('HEAD');
    expect(requests[0]?.headers['x-api-key']).toBe('k');
  });

  it('stops when its signal aborts', async () => {
    const controller = new AbortController();
    handlers = [() => controller.abort(new Error('trigger cancelled'))];
    await expect(firstEvent({ url: `${baseUrl}/hang` }, pollContext(controller.signal))).rejects.toThrow(
      'trigger cancelled',
    );
  });
});

describe('HttpSensor, not deferrable', () => {
  it('polls from the worker until the condition matches', async () => {
    handlers = [json({ state: 'running' }), json({ state: 'done' })];
    const local = dag({ id: 'http_local' }, (d) => {
      d.add(
        new HttpSensor({
          id: 'wait',
          url: `${baseUrl}/state`,
          condition: { jsonPath: 'state', equals: 'done' },
          pokeIntervalMs: 100,
          deferrable: false,
        }),
      );
    });
    expect(await executeTask(local, 'wait', [], testContext())).toEqual({
      kind: 'success',
      value: { status: 200, body: { state: 'done' } },
    });
    expect(requests).toHaveLength(2);
  });

  it('fails without retrying once its timeout passes', async () => {
    handlers = [json({ state: 'running' })];
    const local = dag({ id: 'http_timeout' }, (d) => {
      d.add(
        new HttpSensor({
          id: 'wait',
          url: `${baseUrl}/state`,
          condition: { jsonPath: 'state', equals: 'done' },
          pokeIntervalMs: 100,
          timeout: 250,
          deferrable: false,
        }),
      );
    });
    expect(await executeTask(local, 'wait', [], testContext())).toEqual({
      kind: 'failed_no_retry',
      reason: 'HttpSensor timed out after 250ms',
    });
  });
});

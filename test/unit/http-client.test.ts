import { describe, expect, it } from 'vitest';
import { backoffDelay, HttpClient, type HttpClientOptions } from '#http/client.ts';
import { HttpError } from '#http/errors.ts';

/** A `fetch` that answers from a list, one entry per call; an Error entry is thrown. */
function scripted(answers: (Response | Error | (() => Promise<Response>))[]) {
  const calls: { url: string; init: RequestInit | undefined }[] = [];
  const stub = async (input: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(input), init });
    const answer = answers[Math.min(calls.length - 1, answers.length - 1)];
    if (answer instanceof Error) throw answer;
    if (typeof answer === 'function') return answer();
    return (answer as Response).clone();
  };
  return { stub: stub as typeof fetch, calls };
}

function client(fetchStub: typeof fetch, options: Partial<HttpClientOptions> = {}) {
  let now = 0;
  const sleeps: number[] = [];
  const http = new HttpClient({
    baseUrl: 'http://api.test/',
    fetch: fetchStub,
    now: () => now,
    sleep: async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
    random: () => 0.5,
    ...options,
  });
  return { http, sleeps, advance: (ms: number) => (now += ms) };
}

const problem = (status: number, detail: string, headers: Record<string, string> = {}) =>
  Response.json({ detail, status }, { status, headers });

describe('HttpClient', () => {
  it('retries a 503 and returns the answer that follows', async () => {
    const { stub, calls } = scripted([problem(503, 'busy'), problem(503, 'busy'), Response.json({ ok: 1 })]);
    const { http } = client(stub);

    const response = await http.request<{ ok: number }>({ method: 'GET', path: '/x' });

    expect(response.body).toEqual({ ok: 1 });
    expect(calls).toHaveLength(3);
  });

  it('does not retry a 403', async () => {
    const { stub, calls } = scripted([problem(403, 'not yours'), Response.json({})]);
    const { http } = client(stub);

    const error = await http.request({ method: 'PUT', path: '/a/b' }).catch((e: unknown) => e);

    expect(calls).toHaveLength(1);
    expect(error).toBeInstanceOf(HttpError);
    expect(error).toMatchObject({ status: 403, retryable: false, message: 'PUT /a/b: 403 not yours' });
  });

  it('counts a request timeout as retryable, with no status', async () => {
    const hang = () => new Promise<Response>(() => undefined);
    const { stub, calls } = scripted([hang, Response.json({ ok: true })]);
    const { http } = client(stub, { timeoutMs: 20 });

    const first = await http
      .request({ method: 'GET', path: '/slow', retry: { attempts: 1 } })
      .catch((e: unknown) => e);
    expect(first).toMatchObject({
      status: undefined,
      retryable: true,
      message: 'GET /slow: no response timed out after 20 ms',
    });
    expect(calls).toHaveLength(1);
  });

  it('retries after a timeout', async () => {
    const hang = () => new Promise<Response>(() => undefined);
    const { stub, calls } = scripted([hang, Response.json({ ok: true })]);
    const { http } = client(stub, { timeoutMs: 20 });

    await expect(http.request({ method: 'GET', path: '/slow' })).resolves.toMatchObject({
      body: { ok: true },
    });
    expect(calls).toHaveLength(2);
  });

  it('retries a network error', async () => {
    const { stub, calls } = scripted([new TypeError('fetch failed'), Response.json({ ok: true })]);
    const { http } = client(stub);

    await http.request({ method: 'GET', path: '/x' });

    expect(calls).toHaveLength(2);
  });

  it('keeps each backoff within [0, min(maxDelay, base·2^(n-1))] (full jitter)', () => {
    const policy = { attempts: 10, baseDelayMs: 100, maxDelayMs: 1_000 };
    expect(backoffDelay(policy, 1, 0)).toBe(0);
    expect(backoffDelay(policy, 1, 0.999)).toBeLessThan(100);
    expect(backoffDelay(policy, 3, 0.999)).toBeLessThan(400);
    expect(backoffDelay(policy, 8, 0.999)).toBeLessThan(1_000);
    expect(backoffDelay(policy, 8, 0.5)).toBe(500);
  });

  it('sleeps the jittered backoff between attempts', async () => {
    const { stub } = scripted([problem(500, 'x'), problem(500, 'x'), problem(500, 'x'), Response.json({})]);
    const { http, sleeps } = client(stub, { retry: { baseDelayMs: 100, maxDelayMs: 1_000 } });

    await http.request({ method: 'GET', path: '/x' });

    expect(sleeps).toEqual([50, 100, 200]);
  });

  it('honours a short Retry-After on 429', async () => {
    const { stub } = scripted([problem(429, 'slow down', { 'retry-after': '3' }), Response.json({})]);
    const { http, sleeps } = client(stub);

    await http.request({ method: 'GET', path: '/x' });

    expect(sleeps).toEqual([3_000]);
  });

  it('starts no attempt after the deadline, the last one at the deadline', async () => {
    const { stub, calls } = scripted([problem(503, 'down')]);
    const { http, sleeps } = client(stub, { random: () => 0.999 });

    const error = await http
      .request({
        method: 'PATCH',
        path: '/s',
        retry: { attempts: Infinity, baseDelayMs: 1_000, maxDelayMs: 4_000, deadline: 10_000 },
      })
      .catch((e: unknown) => e);

    expect(error).toMatchObject({ status: 503, retryable: true });
    expect(sleeps.reduce((sum, ms) => sum + ms, 0)).toBe(10_000);
    expect(calls.length).toBe(sleeps.length + 1);
  });

  it('gives up after the attempts', async () => {
    const { stub, calls } = scripted([problem(502, 'bad gateway')]);
    const { http } = client(stub, { retry: { attempts: 3 } });

    await expect(http.request({ method: 'GET', path: '/x' })).rejects.toMatchObject({ status: 502 });
    expect(calls).toHaveLength(3);
  });

  it('sends the token as a bearer header and never puts it into an error', async () => {
    const token = 'eyJhbGciOi.secret-payload.signature';
    const { stub, calls } = scripted([problem(401, `Invalid token ${token}`)]);
    const { http } = client(stub);

    const error = (await http
      .request({ method: 'GET', path: '/x', token })
      .catch((e: unknown) => e)) as HttpError;

    expect(new Headers(calls[0]?.init?.headers).get('authorization')).toBe(`Bearer ${token}`);
    expect(error.message).not.toContain(token);
    expect(error.message).toContain('[redacted]');
  });

  it('ends at once, without retrying, when the caller aborts', async () => {
    const hang = () => new Promise<Response>(() => undefined);
    const { stub, calls } = scripted([hang]);
    const { http } = client(stub);
    const stop = new AbortController();
    setTimeout(() => stop.abort('shutting down'), 10);

    const error = await http
      .request({ method: 'GET', path: '/x', signal: stop.signal })
      .catch((e: unknown) => e);

    expect(error).toMatchObject({ name: 'HttpAbortedError', retryable: false });
    expect(calls).toHaveLength(1);
  });

  it('ends the wait between attempts at once when the caller aborts', async () => {
    const { stub, calls } = scripted([problem(503, 'busy')]);
    const stop = new AbortController();
    const http = new HttpClient({
      baseUrl: 'http://api.test/',
      fetch: stub,
      // A long backoff that never ends by itself: only the caller's abort can end the wait.
      sleep: () => new Promise<void>(() => undefined),
      retry: { attempts: 5, baseDelayMs: 60_000, maxDelayMs: 60_000 },
    });
    setTimeout(() => stop.abort('shutting down'), 10);

    const error = await http
      .request({ method: 'GET', path: '/x', signal: stop.signal })
      .catch((e: unknown) => e);

    expect(error).toMatchObject({ name: 'HttpAbortedError', retryable: false });
    expect(calls).toHaveLength(1);
  });
});

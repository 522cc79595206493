import { describe, expect, it } from 'vitest';
import {
  BATCH_ROUTE_RETRY_MS,
  ExecutionBatcher,
  type ExecutionBatcherOptions,
} from '#worker/execution-batcher.ts';

const BASE = 'http://api.test';
const runPath = (id: string) => `/execution/task-instances/${id}/run`;

interface Seen {
  url: string;
  method: string;
  headers: Headers;
  body: unknown;
  signal: AbortSignal | null | undefined;
}

/** An inner fetch that records each request and answers with `answer` (a batch: one result per call). */
function harness(
  options: Partial<ExecutionBatcherOptions> = {},
  answer: (seen: Seen) => Response | Promise<Response> = answerEach,
) {
  const seen: Seen[] = [];
  const timers: { ms: number; fire: () => void; cancelled: boolean }[] = [];
  const warnings: string[] = [];
  let nowMs = 1_000_000;
  const batcher = new ExecutionBatcher({
    baseUrl: `${BASE}/`,
    maxCalls: 10,
    windowMs: 20,
    requestMaxBytes: 1024 * 1024,
    setTimer: (ms, fire) => {
      const timer = { ms, fire, cancelled: false };
      timers.push(timer);
      return () => {
        timer.cancelled = true;
      };
    },
    now: () => nowMs,
    log: { warn: (message) => warnings.push(message) },
    ...options,
    fetch: (async (input: string | URL | Request, init?: RequestInit) => {
      const text = typeof init?.body === 'string' ? init.body : '';
      const request: Seen = {
        url: String(input),
        method: init?.method ?? 'GET',
        headers: new Headers(init?.headers),
        body: text ? JSON.parse(text) : undefined,
        signal: init?.signal,
      };
      seen.push(request);
      return answer(request);
    }) as typeof fetch,
  });
  return {
    batcher,
    seen,
    warnings,
    /** Fires the window timers still armed. */
    fireTimers() {
      for (const timer of timers.splice(0)) if (!timer.cancelled) timer.fire();
    },
    armedTimers: () => timers.filter((timer) => !timer.cancelled).length,
    advance(ms: number) {
      nowMs += ms;
    },
  };
}

/** A batch answered call by call (status 200, the call's path echoed, a refreshed token); alone, the same. */
function answerEach(seen: Seen): Response {
  if (seen.url.endsWith('/execution/batch')) {
    const { calls } = seen.body as { calls: { path: string; token: string }[] };
    return Response.json({
      results: calls.map((call) => ({
        status: call.token === 'refused' ? 409 : 200,
        body: { path: call.path },
        refreshed_token: `fresh-${call.token}`,
      })),
    });
  }
  return Response.json(
    { path: new URL(seen.url).pathname, alone: true },
    { headers: { 'updraft-refreshed-token': 'alone' } },
  );
}

/** The calls a recorded batch request carried. */
const callsOf = (seen: Seen | undefined) =>
  (seen?.body as { calls: { path: string }[] } | undefined)?.calls ?? [];

const call = (batcher: ExecutionBatcher, id: string, init: Partial<RequestInit> & { token?: string } = {}) =>
  batcher.fetch(`${BASE}${runPath(id)}`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${init.token ?? `token-${id}`}`, 'updraft-api-version': '2026-11-01' },
    body: JSON.stringify({ hostname: 'h', worker_id: id }),
    ...init,
  });

describe('ExecutionBatcher', () => {
  it('sends calls made together as one batch and answers each caller with its own result', async () => {
    const { batcher, seen } = harness({ maxCalls: 3 });
    const responses = await Promise.all([
      call(batcher, 'a'),
      call(batcher, 'b', { token: 'refused' }),
      call(batcher, 'c'),
    ]);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ url: `${BASE}/execution/batch`, method: 'POST' });
    expect(seen[0]?.headers.get('updraft-api-version')).toBe('2026-11-01');
    expect(seen[0]?.headers.get('authorization')).toBeNull();
    expect(seen[0]?.body).toEqual({
      calls: [
        { method: 'PATCH', path: runPath('a'), token: 'token-a', body: { hostname: 'h', worker_id: 'a' } },
        { method: 'PATCH', path: runPath('b'), token: 'refused', body: { hostname: 'h', worker_id: 'b' } },
        { method: 'PATCH', path: runPath('c'), token: 'token-c', body: { hostname: 'h', worker_id: 'c' } },
      ],
    });
    expect(responses.map((response) => response.status)).toEqual([200, 409, 200]);
    expect(await responses[2]?.json()).toEqual({ path: runPath('c') });
    expect(responses[0]?.headers.get('updraft-refreshed-token')).toBe('fresh-token-a');
  });

  it('holds a call for the window, then sends what came meanwhile together', async () => {
    const h = harness();
    const first = call(h.batcher, 'a');
    const second = call(h.batcher, 'b');
    expect(h.seen).toHaveLength(0);
    expect(h.armedTimers()).toBe(1);
    h.fireTimers();
    await Promise.all([first, second]);
    expect(h.seen).toHaveLength(1);
    expect(callsOf(h.seen[0])).toHaveLength(2);
  });

  it('sends at once when every caller in progress waits, and when one ends (check)', async () => {
    let callers = 2;
    const h = harness({ callers: () => callers });
    await Promise.all([call(h.batcher, 'a'), call(h.batcher, 'b')]);
    expect(h.seen).toHaveLength(1);
    callers = 3;
    const waiting = [call(h.batcher, 'c'), call(h.batcher, 'd')];
    expect(h.seen).toHaveLength(1);
    callers = 2; // the third workload ended without a call
    h.batcher.check();
    await Promise.all(waiting);
    expect(h.seen).toHaveLength(2);
    expect(h.armedTimers()).toBe(0);
  });

  it('sends a call that waited alone as the client made it', async () => {
    const h = harness();
    const response = call(h.batcher, 'a');
    h.fireTimers();
    expect(await (await response).json()).toEqual({ path: runPath('a'), alone: true });
    expect(h.seen[0]).toMatchObject({ url: `${BASE}${runPath('a')}`, method: 'PATCH' });
    expect(h.seen[0]?.headers.get('authorization')).toBe('Bearer token-a');
  });

  it('passes any other request through at once', async () => {
    const h = harness();
    await h.batcher.fetch(`${BASE}/execution/xcoms/d/r/t/k?map_index=-1`, {
      method: 'GET',
      headers: { authorization: 'Bearer x' },
    });
    await h.batcher.fetch(`${BASE}/execution/jobs/j/heartbeat`, {
      method: 'PUT',
      headers: { authorization: 'Bearer x' },
      body: '{}',
    });
    await h.batcher.fetch(`${BASE}${runPath('a')}`, { method: 'PATCH', body: '{}' }); // no token
    await h.batcher.fetch(`http://elsewhere${runPath('a')}`, {
      method: 'PATCH',
      headers: { authorization: 'Bearer x' },
      body: '{}',
    });
    expect(h.seen.map((seen) => seen.url)).toEqual([
      `${BASE}/execution/xcoms/d/r/t/k?map_index=-1`,
      `${BASE}/execution/jobs/j/heartbeat`,
      `${BASE}${runPath('a')}`,
      `http://elsewhere${runPath('a')}`,
    ]);
    expect(h.armedTimers()).toBe(0);
  });

  it('sends every call alone with maxCalls 1', async () => {
    const h = harness({ maxCalls: 1 });
    await Promise.all([call(h.batcher, 'a'), call(h.batcher, 'b')]);
    expect(h.seen.map((seen) => seen.url)).toEqual([`${BASE}${runPath('a')}`, `${BASE}${runPath('b')}`]);
  });

  it('keeps a batch under the request limit: a large call goes alone, the rest split', async () => {
    const h = harness({ requestMaxBytes: 4096, maxCalls: 10 });
    const big = 'x'.repeat(1600);
    const large = call(h.batcher, 'big', { body: JSON.stringify({ hostname: big, worker_id: 'w' }) });
    expect(h.seen[0]?.url).toBe(`${BASE}${runPath('big')}`);
    const medium = 'y'.repeat(900);
    const calls = ['a', 'b', 'c', 'd'].map((id) =>
      call(h.batcher, id, { body: JSON.stringify({ hostname: medium, worker_id: id }) }),
    );
    h.fireTimers();
    await Promise.all([large, ...calls]);
    const batches = h.seen.filter((seen) => seen.url.endsWith('/execution/batch'));
    expect(batches.map((seen) => (seen.body as { calls: unknown[] }).calls.length)).toEqual([2, 2]);
    for (const batch of batches) expect(JSON.stringify(batch.body).length).toBeLessThan(4096);
  });

  it("fails each call with the batch's network error, and answers each with the batch's error status", async () => {
    const down = harness({ maxCalls: 2 }, () => {
      throw new TypeError('fetch failed');
    });
    const results = await Promise.allSettled([call(down.batcher, 'a'), call(down.batcher, 'b')]);
    expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason).toBeInstanceOf(TypeError);

    const busy = harness({ maxCalls: 2 }, () =>
      Response.json({ detail: 'busy', status: 503 }, { status: 503 }),
    );
    const responses = await Promise.all([call(busy.batcher, 'a'), call(busy.batcher, 'b')]);
    expect(responses.map((response) => response.status)).toEqual([503, 503]);
    expect(await responses[1]?.json()).toEqual({ detail: 'busy', status: 503 });
  });

  it('without a batch route, sends each call alone and batches nothing for a while', async () => {
    const h = harness({ maxCalls: 2 }, (seen) =>
      seen.url.endsWith('/execution/batch') ? new Response('not found', { status: 404 }) : answerEach(seen),
    );
    const first = await Promise.all([call(h.batcher, 'a'), call(h.batcher, 'b')]);
    expect(first.map((response) => response.status)).toEqual([200, 200]);
    expect(h.seen.map((seen) => new URL(seen.url).pathname)).toEqual([
      '/execution/batch',
      runPath('a'),
      runPath('b'),
    ]);
    expect(h.warnings[0]).toContain('no batch route');
    await Promise.all([call(h.batcher, 'c'), call(h.batcher, 'd')]);
    expect(h.seen).toHaveLength(5);
    h.advance(BATCH_ROUTE_RETRY_MS);
    await Promise.all([call(h.batcher, 'e'), call(h.batcher, 'f')]);
    expect(h.seen[5]?.url).toBe(`${BASE}/execution/batch`);
  });

  it('sends each call of a batch refused whole (413, 422) or answered unreadably alone', async () => {
    for (const refusal of [
      () => Response.json({ detail: 'too large', status: 413 }, { status: 413 }),
      () =>
        Response.json({ detail: 'A batch of 2 calls is over the limit of 1', status: 422 }, { status: 422 }),
      () => Response.json({ results: [{ status: 200, body: {} }] }), // one result for two calls
      () => new Response('<html>', { status: 200 }),
    ]) {
      const h = harness({ maxCalls: 2 }, (seen) =>
        seen.url.endsWith('/execution/batch') ? refusal() : answerEach(seen),
      );
      const responses = await Promise.all([call(h.batcher, 'a'), call(h.batcher, 'b')]);
      expect(await Promise.all(responses.map((response) => response.json()))).toEqual([
        { path: runPath('a'), alone: true },
        { path: runPath('b'), alone: true },
      ]);
      expect(h.warnings).toHaveLength(1);
    }
  });

  it("gives up a caller's call when its signal aborts, and the batch only when every caller did", async () => {
    const h = harness();
    const gone = new AbortController();
    const abandoned = call(h.batcher, 'a', { signal: gone.signal });
    const kept = call(h.batcher, 'b');
    const third = call(h.batcher, 'c');
    gone.abort(new Error('timed out'));
    await expect(abandoned).rejects.toThrow('timed out');
    h.fireTimers();
    await Promise.all([kept, third]);
    expect(callsOf(h.seen[0]).map((c) => c.path)).toEqual([runPath('b'), runPath('c')]);

    const stalled = harness({ maxCalls: 2 }, () => new Promise<Response>(() => undefined));
    const one = new AbortController();
    const two = new AbortController();
    const calls = [
      call(stalled.batcher, 'a', { signal: one.signal }),
      call(stalled.batcher, 'b', { signal: two.signal }),
    ];
    const batchSignal = stalled.seen[0]?.signal;
    one.abort(new Error('one gone'));
    await expect(calls[0]).rejects.toThrow('one gone');
    expect(batchSignal?.aborted).toBe(false);
    two.abort(new Error('two gone'));
    await expect(calls[1]).rejects.toThrow('two gone');
    expect(batchSignal?.aborted).toBe(true);
  });

  it('sends a call alone when its result asks for it, or when the answer carries a status no answer can have', async () => {
    const asks = harness({ maxCalls: 2 }, (seen) =>
      seen.url.endsWith('/execution/batch')
        ? Response.json({
            results: [
              { status: 200, body: { first: true } },
              { status: 503, body: { detail: 'too large', status: 503 }, send_alone: true },
            ],
          })
        : answerEach(seen),
    );
    const answers = await Promise.all([call(asks.batcher, 'a'), call(asks.batcher, 'b')]);
    expect(await Promise.all(answers.map((response) => response.json()))).toEqual([
      { first: true },
      { path: runPath('b'), alone: true },
    ]);

    const odd = harness({ maxCalls: 2 }, (seen) =>
      seen.url.endsWith('/execution/batch')
        ? Response.json({
            results: [
              { status: 204, body: null },
              { status: 200, body: {} },
            ],
          })
        : answerEach(seen),
    );
    const responses = await Promise.all([call(odd.batcher, 'a'), call(odd.batcher, 'b')]);
    expect(responses.map((response) => response.status)).toEqual([200, 200]);
    expect(odd.seen.map((seen) => new URL(seen.url).pathname)).toEqual([
      '/execution/batch',
      runPath('a'),
      runPath('b'),
    ]);
  });

  it('after a batch refused as too large or too many, sends smaller batches for a while', async () => {
    let limit = 2;
    const h = harness({ maxCalls: 4 }, (seen) => {
      if (!seen.url.endsWith('/execution/batch')) return answerEach(seen);
      return callsOf(seen).length > limit
        ? Response.json({ detail: 'over the limit', status: 422 }, { status: 422 })
        : answerEach(seen);
    });
    await Promise.all(['a', 'b', 'c', 'd'].map((id) => call(h.batcher, id)));
    await Promise.all(['e', 'f', 'g', 'h'].map((id) => call(h.batcher, id)));
    const batches = h.seen
      .filter((seen) => seen.url.endsWith('/execution/batch'))
      .map((seen) => callsOf(seen).length);
    expect(batches).toEqual([4, 2, 2]);
    expect(h.warnings).toHaveLength(1);
    h.advance(BATCH_ROUTE_RETRY_MS);
    limit = 10;
    await Promise.all(['i', 'j', 'k', 'l'].map((id) => call(h.batcher, id)));
    expect(callsOf(h.seen.at(-1))).toHaveLength(4);
  });

  it('fails a call whose fetch throws at once, and a batch whose fetch does, without an unhandled rejection', async () => {
    const throwing = (() => {
      throw new TypeError('bad fetch');
    }) as unknown as typeof fetch;
    let fire: () => void = () => undefined;
    const batcher = new ExecutionBatcher({
      fetch: throwing,
      baseUrl: BASE,
      maxCalls: 2,
      windowMs: 20,
      requestMaxBytes: 1024 * 1024,
      setTimer: (_ms, fired) => {
        fire = fired;
        return () => undefined;
      },
    });
    const h = { batcher };
    const alone = call(h.batcher, 'a');
    fire();
    await expect(alone).rejects.toThrow('bad fetch');
    const pair = await Promise.allSettled([call(h.batcher, 'b'), call(h.batcher, 'c')]);
    expect(pair.map((result) => result.status)).toEqual(['rejected', 'rejected']);
  });

  it('lets go of a signal once its call settled', async () => {
    const h = harness({ maxCalls: 2 });
    const controller = new AbortController();
    let listeners = 0;
    const signal = controller.signal;
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    signal.addEventListener = ((...args: Parameters<AbortSignal['addEventListener']>) => {
      listeners += 1;
      add(...args);
    }) as AbortSignal['addEventListener'];
    signal.removeEventListener = ((...args: Parameters<AbortSignal['removeEventListener']>) => {
      listeners -= 1;
      remove(...args);
    }) as AbortSignal['removeEventListener'];
    for (let round = 0; round < 5; round += 1)
      await Promise.all([call(h.batcher, 'a', { signal }), call(h.batcher, 'b')]);
    expect(listeners).toBe(0);
  });

  it('keeps the smallest cap of refusals close together, and splits what waits to stay under it', async () => {
    const h = harness({ maxCalls: 4 }, (seen) => {
      if (!seen.url.endsWith('/execution/batch')) return answerEach(seen);
      return callsOf(seen).length > 2
        ? Response.json({ detail: 'over the limit', status: 422 }, { status: 422 })
        : answerEach(seen);
    });
    await Promise.all(['a', 'b', 'c', 'd'].map((id) => call(h.batcher, id))); // refused: cap 2
    await Promise.all(['e', 'f', 'g', 'h'].map((id) => call(h.batcher, id)));
    const sizes = h.seen
      .filter((seen) => seen.url.endsWith('/execution/batch'))
      .map((seen) => callsOf(seen).length);
    expect(sizes).toEqual([4, 2, 2]);

    // Calls that waited under a larger cap leave in batches of the new one.
    let answerFirst: (response: Response) => void = () => undefined;
    let batches = 0;
    const later = harness({ maxCalls: 10 }, (seen) => {
      if (!seen.url.endsWith('/execution/batch')) return answerEach(seen);
      batches += 1;
      if (batches > 1) return answerEach(seen);
      return new Promise<Response>((resolve) => {
        answerFirst = resolve;
      });
    });
    const first = ['a', 'b', 'c', 'd'].map((id) => call(later.batcher, id));
    later.fireTimers(); // the first batch of 4 is in flight
    const waiting = ['e', 'f', 'g', 'h', 'i'].map((id) => call(later.batcher, id));
    answerFirst(Response.json({ detail: 'too large', status: 413 }, { status: 413 }));
    await Promise.all(first);
    later.fireTimers();
    await Promise.all(waiting);
    const laterSizes = later.seen
      .filter((seen) => seen.url.endsWith('/execution/batch'))
      .map((seen) => callsOf(seen).length);
    expect(laterSizes).toEqual([4, 2, 2]); // and the fifth alone
  });

  it('sends a call whose token the batch route would refuse alone', async () => {
    const h = harness({ maxCalls: 2 });
    const calls = [
      call(h.batcher, 'a', { token: 'bad token' }),
      call(h.batcher, 'b', { token: 'good.token' }),
    ];
    expect(h.seen[0]?.url).toBe(`${BASE}${runPath('a')}`);
    h.fireTimers();
    await Promise.all(calls);
    expect(h.seen[1]?.url).toBe(`${BASE}${runPath('b')}`);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import type { Logger } from '#engine/logger.ts';
import { HttpError } from '#http/errors.ts';
import { MetricsRegistry } from '#metrics/registry.ts';
import { type OutboxClient, ReportOutbox } from '#triggerer/outbox.ts';
import { systemClock } from '#worker/clock.ts';

/** A client whose answers the test scripts per call kind; every call is recorded. */
function scriptedClient(answer: (kind: string, body: unknown) => unknown) {
  const calls: { kind: string; triggerId?: string; body: unknown }[] = [];
  let jobId = 'job-1';
  const call = async (kind: string, body: unknown, triggerId?: string) => {
    calls.push({ kind, body, ...(triggerId ? { triggerId } : {}) });
    const result = answer(kind, body);
    if (result instanceof Error) throw result;
    return result;
  };
  const client = {
    get job() {
      return { jobId, token: 't', heartbeatIntervalMs: 1, heartbeatTimeoutMs: 2 };
    },
    event: (triggerId: string, body: unknown) => call('event', body, triggerId),
    events: (events: unknown) => call('events', events),
    failure: (triggerId: string, body: unknown) => call('failure', body, triggerId),
    logs: (body: unknown) => call('logs', body),
  } as unknown as OutboxClient;
  return { client, calls, setJob: (id: string) => (jobId = id) };
}

const unavailable = () => new HttpError('POST /x', 503, 'busy', true);
const refused = (status: number, detail: string) => new HttpError('POST /x', status, detail, false);

interface LogLine {
  level: string;
  message: string;
}

const outboxes: { outbox: ReportOutbox; stop: AbortController }[] = [];

function start(
  client: OutboxClient,
  options: {
    onTakenOver?: (id: string) => void;
    logBatchMaxBytes?: number;
    eventsPerCall?: number;
    eventCallMaxBytes?: number;
    maxInFlight?: number;
    /** Added to the real clock's time. */
    offsetMs?: () => number;
  } = {},
) {
  const lines: LogLine[] = [];
  const at = (level: string) => (message: string) => {
    lines.push({ level, message });
  };
  const log: Logger = {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: () => log,
  };
  const metrics = new MetricsRegistry();
  const outbox = new ReportOutbox({
    client,
    log,
    metrics,
    clock: { now: () => Date.now() + (options.offsetMs?.() ?? 0), sleep: systemClock.sleep },
    random: () => 0.5,
    retry: { baseDelayMs: 5, maxDelayMs: 20 },
    callTimeoutMs: 1_000,
    maxInFlight: options.maxInFlight ?? 4,
    eventsPerCall: options.eventsPerCall ?? 1,
    eventCallMaxBytes: options.eventCallMaxBytes ?? 1_000_000,
    logBatchMaxBytes: options.logBatchMaxBytes ?? 1_000,
    logBacklogMaxBytes: 100_000,
    onTakenOver: options.onTakenOver,
  });
  const stop = new AbortController();
  void outbox.run(stop.signal);
  outboxes.push({ outbox, stop });
  return { outbox, lines, metrics };
}

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

afterEach(() => {
  for (const { outbox, stop } of outboxes.splice(0)) {
    stop.abort();
    outbox.abandon();
  }
});

const EVENT = { type: 'resume' as const, payload: '1' };

describe('ReportOutbox', () => {
  it('keeps an event through transient failures and sends it again until it is applied', async () => {
    let failures = 3;
    const { client, calls } = scriptedClient(() => (failures-- > 0 ? unavailable() : 'applied'));
    const { outbox, metrics } = start(client);

    outbox.event('t1', EVENT);

    await until(() => outbox.empty);
    expect(calls.map((call) => call.kind)).toEqual(['event', 'event', 'event', 'event']);
    const { counters } = await metrics.snapshot();
    expect(counters['triggerer.reports_retried']).toBe(3);
    expect(counters['triggerer.reports_applied']).toBe(1);
  });

  it('drops a refused report after one call, logging the status and detail at error level', async () => {
    const { client, calls } = scriptedClient(() => refused(422, 'payload is not serde JSON'));
    const { outbox, lines, metrics } = start(client);

    outbox.failure('t1', { error: 'boom' });

    await until(() => outbox.empty);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(calls).toHaveLength(1);
    expect(outbox.refused).toBe(1);
    expect((await metrics.snapshot()).counters['triggerer.reports_refused']).toBe(1);
    expect(lines.filter((line) => line.level === 'error').map((line) => line.message)).toEqual([
      'The Execution API refused the failure of trigger t1: 422 payload is not serde JSON. It is dropped',
    ]);
  });

  it('drops a report answered 409 at info level, and says the trigger was taken over', async () => {
    const { client } = scriptedClient(() => refused(409, 'held by another triggerer'));
    const takenOver: string[] = [];
    const { outbox, lines } = start(client, { onTakenOver: (id) => takenOver.push(id) });

    outbox.event('t1', EVENT);

    await until(() => outbox.empty);
    expect(takenOver).toEqual(['t1']);
    expect(outbox.refused).toBe(0);
    expect(lines.some((line) => line.level === 'info' && line.message.includes('trigger t1'))).toBe(true);
    expect(lines.some((line) => line.level === 'error')).toBe(false);
  });

  it('sends a report again when the 409 was for a job replaced since', async () => {
    let answered = 0;
    const { client, calls, setJob } = scriptedClient(() => {
      answered += 1;
      if (answered === 1) {
        setJob('job-2');
        return refused(409, 'job-1 is not running');
      }
      return 'applied';
    });
    const { outbox } = start(client);

    outbox.event('t1', EVENT);

    await until(() => outbox.empty);
    expect(calls).toHaveLength(2);
  });

  it('keeps one report per trigger', async () => {
    const { client, calls } = scriptedClient(() => 'applied');
    const { outbox } = start(client);

    outbox.event('t1', EVENT);
    outbox.event('t1', { type: 'resume', payload: '2' });

    await until(() => outbox.empty);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.body).toMatchObject({ payload: '1' });
  });

  it('ships log chunks in calls of at most 100 chunks and the byte bound', async () => {
    const { client, calls } = scriptedClient(() => ({ ok: true }));
    const { outbox } = start(client, { logBatchMaxBytes: 1_000 });

    for (let seq = 1; seq <= 150; seq += 1) outbox.log('t1', { seq, text: 'x'.repeat(5) });
    for (let seq = 151; seq <= 153; seq += 1) outbox.log('t1', { seq, text: 'y'.repeat(600) });

    await until(() => outbox.empty);
    const sizes = calls.map((call) => (call.body as { chunks: unknown[] }).chunks.length);
    expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(153);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(100);
    for (const call of calls) {
      const { chunks } = call.body as { chunks: { text: string }[] };
      const bytes = chunks.reduce((sum, chunk) => sum + chunk.text.length, 0);
      expect(chunks.length === 1 || bytes <= 1_000).toBe(true);
    }
    const seqs = calls.flatMap((call) =>
      (call.body as { chunks: { seq: number }[] }).chunks.map((c) => c.seq),
    );
    expect(seqs).toEqual(Array.from({ length: 153 }, (_, index) => index + 1));
  });

  describe('events in batches', () => {
    type Sent = { trigger_id: string; type: string; payload: string };
    const sentIds = (body: unknown) => (body as Sent[]).map((event) => event.trigger_id);
    const outcomes = (body: unknown, outcome = 'applied') =>
      (body as Sent[]).map((event) => ({ trigger_id: event.trigger_id, outcome }));

    it('gathers the events that are due into calls of at most eventsPerCall, and sends failures alone', async () => {
      const { client, calls } = scriptedClient((kind, body) =>
        kind === 'events' ? outcomes(body) : 'applied',
      );
      const { outbox, metrics } = start(client, { eventsPerCall: 100 });

      for (let i = 0; i < 150; i++) outbox.event(`t${i}`, EVENT);
      outbox.failure('f1', { error: 'boom' });

      await until(() => outbox.empty);
      const batches = calls.filter((call) => call.kind === 'events').map((call) => sentIds(call.body));
      expect(batches.map((ids) => ids.length)).toEqual([100, 50]);
      expect(batches.flat()).toEqual(Array.from({ length: 150 }, (_, i) => `t${i}`));
      expect(calls.filter((call) => call.kind !== 'events')).toEqual([
        { kind: 'failure', triggerId: 'f1', body: { error: 'boom' } },
      ]);
      expect((await metrics.snapshot()).counters['triggerer.reports_applied']).toBe(151);
    });

    it('keeps the body of a batch under the byte bound, JSON escapes counted (one event at least)', async () => {
      const { client, calls } = scriptedClient((kind, body) =>
        kind === 'events' ? outcomes(body) : 'applied',
      );
      const { outbox } = start(client, { eventsPerCall: 100, eventCallMaxBytes: 400 });

      // 60 text bytes, 120 once escaped: three fit by their text, two by their JSON.
      const quotes = { type: 'resume' as const, payload: '"'.repeat(60) };
      for (let i = 0; i < 5; i++) outbox.event(`t${i}`, quotes);
      outbox.event('big', { type: 'resume', payload: 'x'.repeat(500) });

      await until(() => outbox.empty);
      expect(calls.map((call) => sentIds(call.body))).toEqual([['t0', 't1'], ['t2', 't3'], ['t4'], ['big']]);
      for (const call of calls.slice(0, 3)) {
        expect(Buffer.byteLength(JSON.stringify({ events: call.body }))).toBeLessThanOrEqual(400);
      }
    });

    it('answers each event by its own result: done, retried, taken over, or turned into a failure', async () => {
      let busy = 2;
      const { client, calls } = scriptedClient((kind, body) => {
        if (kind !== 'events') return 'applied';
        return (body as Sent[]).map(({ trigger_id }) => {
          if (trigger_id === 'not-ready' && busy-- > 0)
            return { trigger_id, status: 503, detail: 'its task is not waiting yet' };
          if (trigger_id === 'taken') return { trigger_id, status: 409, detail: 'held by job-2' };
          if (trigger_id === 'too-big')
            return { trigger_id, status: 413, detail: 'over UPDRAFT_XCOM_MAX_BYTES' };
          return { trigger_id, outcome: trigger_id === 'late' ? 'stale' : 'applied' };
        });
      });
      const takenOver: string[] = [];
      const { outbox, metrics } = start(client, {
        eventsPerCall: 100,
        onTakenOver: (id) => takenOver.push(id),
      });

      for (const id of ['ok', 'not-ready', 'taken', 'too-big', 'late']) outbox.event(id, EVENT);

      await until(() => outbox.empty);
      expect(calls.filter((call) => call.kind === 'events').map((call) => sentIds(call.body))).toEqual([
        ['ok', 'not-ready', 'taken', 'too-big', 'late'],
        ['not-ready'],
        ['not-ready'],
      ]);
      expect(takenOver).toEqual(['taken']);
      const failure = calls.find((call) => call.kind === 'failure');
      expect(failure?.triggerId).toBe('too-big');
      expect(failure?.body).toEqual({
        error: 'its event was refused by the Execution API: 413 over UPDRAFT_XCOM_MAX_BYTES',
      });
      const { counters } = await metrics.snapshot();
      expect(counters['triggerer.reports_retried']).toBe(2);
      expect(counters['triggerer.reports_stale']).toBe(1);
      expect(counters['triggerer.reports_applied']).toBe(3);
    });

    it('sends every event of a batch again after a transient failure of the whole call', async () => {
      let failures = 1;
      const { client, calls } = scriptedClient((kind, body) =>
        failures-- > 0 ? unavailable() : kind === 'events' ? outcomes(body) : 'applied',
      );
      const { outbox } = start(client, { eventsPerCall: 100 });

      outbox.event('a', EVENT);
      outbox.event('b', EVENT);

      await until(() => outbox.empty);
      expect(calls.map((call) => call.kind)).not.toContain('event');
      expect(sentIds(calls[0]?.body)).toEqual(['a', 'b']);
      // Each is due again after its own backoff: together or apart.
      expect(calls.flatMap((call) => sentIds(call.body)).sort()).toEqual(['a', 'a', 'b', 'b']);
    });

    it('sends the events of a batch refused as a whole (413) one a call, each answered on its own', async () => {
      const { client, calls } = scriptedClient((kind, body) => {
        if (kind === 'events') return refused(413, 'Request body is larger than 1048576 bytes');
        return (body as { payload: string }).payload === 'huge' ? refused(413, 'too large') : 'applied';
      });
      const { outbox, lines, metrics } = start(client, { eventsPerCall: 100 });

      outbox.event('a', EVENT);
      outbox.event('b', { type: 'resume', payload: 'huge' });

      await until(() => outbox.empty);
      expect(calls.map((call) => `${call.kind} ${call.triggerId ?? sentIds(call.body).join(',')}`)).toEqual([
        'events a,b',
        'event a',
        'event b',
        'failure b',
      ]);
      // The body fitted this triggerer's limit: the API's must be smaller, which is worth saying.
      const warnings = lines.filter((line) => line.level === 'warn').map((line) => line.message);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(
        /^The Execution API refused a batch of trigger events of \d+ bytes as too large \(this triggerer's bound: 1000000, from UPDRAFT_REQUEST_MAX_BYTES\)/,
      );
      expect((await metrics.snapshot()).counters['triggerer.event_batches_too_large']).toBe(1);
    });

    it('keeps batches under half a refused size after a 413, so the next ones fit the API', async () => {
      let apiLimit: number | undefined = 700;
      const { client, calls } = scriptedClient((kind, body) => {
        if (kind !== 'events') return 'applied';
        const size = Buffer.byteLength(JSON.stringify({ events: body }));
        return apiLimit !== undefined && size > apiLimit ? refused(413, 'too large') : outcomes(body);
      });
      const { outbox } = start(client, { eventsPerCall: 100 });
      const event = { type: 'resume' as const, payload: 'x'.repeat(100) };
      for (let i = 0; i < 10; i++) outbox.event(`a${i}`, event);
      await until(() => outbox.empty);
      const refusedSize = Buffer.byteLength(JSON.stringify({ events: calls[0]?.body }));
      for (let i = 0; i < 10; i++) outbox.event(`b${i}`, event);
      await until(() => outbox.empty);
      apiLimit = undefined;

      const later = calls.filter((call) => call.kind === 'events' && sentIds(call.body)[0]?.startsWith('b'));
      expect(later.length).toBeGreaterThan(1);
      for (const call of later) {
        expect(Buffer.byteLength(JSON.stringify({ events: call.body }))).toBeLessThanOrEqual(refusedSize / 2);
      }
      expect(calls.filter((call) => call.kind === 'event').map((call) => call.triggerId)).toEqual(
        Array.from({ length: 10 }, (_, i) => `a${i}`),
      );
    });

    it('sends the events of a batch whose answer cannot be read one a call, losing none', async () => {
      const { client, calls } = scriptedClient((kind) =>
        kind === 'events'
          ? new HttpError(
              'POST /execution/triggers/events',
              200,
              'the answer does not match the contract',
              false,
            )
          : 'applied',
      );
      const { outbox, lines, metrics } = start(client, { eventsPerCall: 100 });
      for (const id of ['a', 'b', 'c']) outbox.event(id, EVENT);
      await until(() => outbox.empty);
      expect(calls.filter((call) => call.kind === 'event').map((call) => call.triggerId)).toEqual([
        'a',
        'b',
        'c',
      ]);
      expect(outbox.refused).toBe(0);
      expect((await metrics.snapshot()).counters['triggerer.reports_applied']).toBe(3);
      expect(lines.filter((line) => line.level === 'warn').map((line) => line.message)).toEqual([
        'The answer to a batch of trigger events could not be read: its events go one a call',
      ]);
    });

    it('warns of an answer naming a trigger it did not carry, and sends an event it has no result for again alone', async () => {
      let first = true;
      const { client, calls } = scriptedClient((kind, body) => {
        if (kind !== 'events') return 'applied';
        if (!first) return outcomes(body);
        first = false;
        return [{ trigger_id: 'zzz', outcome: 'applied' }];
      });
      const { outbox, lines } = start(client, { eventsPerCall: 100 });
      outbox.event('a', EVENT);
      await until(() => outbox.empty);
      // Sent again alone, where the answer is its own.
      expect(calls.map((call) => `${call.kind} ${call.triggerId ?? sentIds(call.body).join(',')}`)).toEqual([
        'events a',
        'event a',
      ]);
      expect(lines.filter((line) => line.level === 'warn').map((line) => line.message)).toContain(
        'The answer to a batch of trigger events names triggers it did not carry, or one twice',
      );
    });

    it('sends an event refused as too large again without its log chunk, once the chunk is on the logs route', async () => {
      const { client, calls } = scriptedClient((kind, body) => {
        if (kind === 'logs') return undefined;
        const withLog = (body as { log?: unknown }).log !== undefined;
        return withLog ? refused(413, 'Request body is larger than 1048576 bytes') : 'applied';
      });
      const { outbox, metrics } = start(client);
      outbox.event('a', { ...EVENT, log: { seq: 0, text: 'a long log' } });
      await until(() => outbox.empty);
      // The chunk first: once the event is applied its trigger is gone, and a late chunk with it.
      expect(calls.map((call) => call.kind)).toEqual(['event', 'logs', 'event']);
      expect(calls[2]?.body).toEqual(EVENT);
      expect((await metrics.snapshot()).counters['triggerer.reports_applied']).toBe(1);
      expect(outbox.refused).toBe(0);
    });

    it('sends batches of events with one call allowed while log chunks stream in', async () => {
      const { client, calls } = scriptedClient(async (kind, body) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return kind === 'events' ? outcomes(body) : kind === 'logs' ? undefined : 'applied';
      });
      const { outbox } = start(client, { eventsPerCall: 100, maxInFlight: 1 });
      let index = 0;
      const stream = setInterval(() => outbox.log(`l${index}`, { seq: index++, text: 'line' }), 1);
      try {
        await until(() => calls.length >= 3);
        outbox.event('a', EVENT);
        await until(() => calls.some((call) => call.kind === 'events'));
      } finally {
        clearInterval(stream);
      }
    });

    it('sends log chunks while events sent one a call stream in', async () => {
      const { client, calls } = scriptedClient(async (kind) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return kind === 'logs' ? undefined : 'applied';
      });
      const { outbox } = start(client, { eventsPerCall: 1, maxInFlight: 2 });
      let index = 0;
      const stream = setInterval(() => {
        for (let i = 0; i < 5; i++) outbox.event(`e${index++}`, EVENT);
      }, 1);
      try {
        await until(() => calls.length >= 10);
        outbox.log('t', { seq: 0, text: 'line' });
        await until(() => calls.some((call) => call.kind === 'logs'));
      } finally {
        clearInterval(stream);
      }
    });

    it('sends a failure however few calls are allowed, while events stream in', async () => {
      const { client, calls } = scriptedClient(async (kind, body) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return kind === 'events' ? outcomes(body) : 'applied';
      });
      const { outbox } = start(client, { eventsPerCall: 100, maxInFlight: 1 });
      let index = 0;
      const stream = setInterval(() => outbox.event(`e${index++}`, EVENT), 1);
      try {
        await until(() => calls.length >= 3);
        outbox.failure('f1', { error: 'boom' });
        outbox.log('f1', { seq: 0, text: 'its log' });
        await until(
          () => calls.some((call) => call.kind === 'failure') && calls.some((call) => call.kind === 'logs'),
        );
      } finally {
        clearInterval(stream);
      }
    });

    it('sends one call an event for five minutes when the API has no batch route (404), then tries a batch again', async () => {
      let routeAdded = false;
      const { client, calls } = scriptedClient((kind, body) => {
        if (kind !== 'events') return 'applied';
        return routeAdded ? outcomes(body) : refused(404, 'Not Found');
      });
      let offsetMs = 0;
      const { outbox, lines } = start(client, { eventsPerCall: 100, offsetMs: () => offsetMs });

      outbox.event('a', EVENT);
      await until(() => outbox.empty);
      outbox.event('b', EVENT);
      await until(() => outbox.empty);
      routeAdded = true;
      offsetMs = 5 * 60_000 - 1_000;
      outbox.event('c', EVENT);
      await until(() => outbox.empty);
      offsetMs = 5 * 60_000 + 1_000;
      outbox.event('d', EVENT);
      await until(() => outbox.empty);

      expect(calls.map((call) => `${call.kind} ${call.triggerId ?? sentIds(call.body).join(',')}`)).toEqual([
        'events a',
        'event a',
        'event b',
        'event c',
        'events d',
      ]);
      expect(lines.filter((line) => line.level === 'warn').map((line) => line.message)).toEqual([
        'The Execution API has no batch route for trigger events (an older version): each event goes on a call of its own for the next 5 minutes',
      ]);
    });

    it('is behind only when more events wait than a round of four batch calls carries', async () => {
      const { client, calls } = scriptedClient(() => new Promise(() => undefined));
      const { outbox } = start(client, { eventsPerCall: 100, maxInFlight: 16 });
      for (let i = 0; i < 4; i++) {
        outbox.event(`first${i}`, EVENT);
        await until(() => calls.length === i + 1);
      }
      for (let i = 0; i < 400; i++) outbox.event(`later${i}`, EVENT);
      expect(outbox.backlogged).toBe(false);
      outbox.event('one-more', EVENT);
      expect(outbox.backlogged).toBe(true);
    });

    it('keeps a call free for a failure while batch calls take the rest', async () => {
      const { client, calls } = scriptedClient((kind) =>
        kind === 'events' ? new Promise(() => undefined) : 'applied',
      );
      const { outbox } = start(client, { eventsPerCall: 100, maxInFlight: 2 });
      outbox.event('a', EVENT);
      await until(() => calls.length === 1);
      outbox.event('b', EVENT);
      outbox.failure('f1', { error: 'boom' });
      await until(() => calls.some((call) => call.kind === 'failure'));
      expect(calls.filter((call) => call.kind === 'events')).toHaveLength(1);
    });

    it('keeps at most four batch calls in flight, so that events due meanwhile gather', async () => {
      const releases: (() => void)[] = [];
      const { client, calls } = scriptedClient((kind, body) =>
        kind === 'events'
          ? new Promise((resolve) => releases.push(() => resolve(outcomes(body))))
          : 'applied',
      );
      // More report calls allowed than batch calls: the waiting events must not spin the loop.
      const { outbox } = start(client, { eventsPerCall: 100, maxInFlight: 16 });

      for (let i = 0; i < 4; i++) {
        outbox.event(`first${i}`, EVENT);
        await until(() => calls.length === i + 1);
      }
      for (let i = 0; i < 30; i++) outbox.event(`later${i}`, EVENT);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(calls).toHaveLength(4);
      releases.shift()?.();
      await until(() => calls.length === 5);
      expect(sentIds(calls[4]?.body)).toHaveLength(30);
      for (const release of releases.splice(0)) release();
      await until(() => outbox.empty);
      expect(calls).toHaveLength(5);
    });
  });
});

import { randomUUID } from 'node:crypto';

/**
 * A tiny external job service for `dags/example_deferrable.ts`, served by standalone under
 * `/demo/jobs` (never on AWS): `POST /demo/jobs` submits a job that finishes `duration_ms` later
 * (default 3 s, at most 60 s), `GET /demo/jobs/<id>` says `running` or `done`. It stands in for
 * the systems a deferrable operator waits on; it keeps at most MAX_JOBS jobs, oldest dropped first.
 */
const MAX_JOBS = 1_000;
const DEFAULT_DURATION_MS = 3_000;
const MAX_DURATION_MS = 60_000;
const PREFIX = '/demo/jobs';

interface DemoJob {
  id: string;
  submittedAt: number;
  doneAt: number;
}

export class DemoJobService {
  readonly #jobs = new Map<string, DemoJob>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** The answer for a request under `/demo/jobs`, or undefined for any other path. */
  async handle(request: Request): Promise<Response | undefined> {
    const { pathname } = new URL(request.url);
    if (pathname !== PREFIX && !pathname.startsWith(`${PREFIX}/`)) return undefined;
    if (pathname === PREFIX && request.method === 'POST') return this.#submit(request);
    const id = pathname.slice(PREFIX.length + 1);
    if (id && !id.includes('/') && request.method === 'GET') return this.#status(id);
    return json({ detail: 'POST /demo/jobs or GET /demo/jobs/<id>' }, 404);
  }

  async #submit(request: Request): Promise<Response> {
    let durationMs = DEFAULT_DURATION_MS;
    const text = await request.text();
    if (text) {
      try {
        const body = JSON.parse(text) as { duration_ms?: unknown };
        if (body.duration_ms !== undefined) durationMs = Number(body.duration_ms);
      } catch {
        return json({ detail: 'The body must be JSON: { "duration_ms": <0 to 60000> }' }, 400);
      }
    }
    if (!Number.isFinite(durationMs) || durationMs < 0 || durationMs > MAX_DURATION_MS)
      return json({ detail: `duration_ms must be 0 to ${MAX_DURATION_MS}` }, 400);
    const now = this.#now();
    const job = { id: randomUUID(), submittedAt: now, doneAt: now + durationMs };
    this.#jobs.set(job.id, job);
    if (this.#jobs.size > MAX_JOBS) this.#jobs.delete(this.#jobs.keys().next().value as string);
    return json(this.#view(job), 201);
  }

  #status(id: string): Response {
    const job = this.#jobs.get(id);
    if (!job) return json({ detail: `No demo job ${id}` }, 404);
    return json(this.#view(job), 200);
  }

  #view(job: DemoJob) {
    const done = this.#now() >= job.doneAt;
    return {
      id: job.id,
      state: done ? 'done' : 'running',
      submitted_at: new Date(job.submittedAt).toISOString(),
      ...(done ? { result: { rows: 42 } } : {}),
    };
  }
}

function json(body: unknown, status: number): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
}

const HOOKS_PATH = '/demo/hooks';
const MAX_DELIVERIES = 100;

/**
 * A tiny webhook receiver for `dags/example_callbacks.ts`, served by standalone under `/demo/hooks`
 * (never on AWS): `POST /demo/hooks` takes a JSON notification and keeps it once per
 * `Idempotency-Key` (a repeat is answered 200 and not kept again), `GET /demo/hooks` lists the last
 * MAX_DELIVERIES kept, newest last. It stands in for the chat or paging service a notifier calls.
 */
export class DemoHookReceiver {
  readonly #deliveries = new Map<string, { idempotency_key: string; received_at: string; body: unknown }>();

  async handle(request: Request): Promise<Response | undefined> {
    if (new URL(request.url).pathname !== HOOKS_PATH) return undefined;
    if (request.method === 'GET') return json({ deliveries: [...this.#deliveries.values()] }, 200);
    if (request.method !== 'POST') return json({ detail: 'POST /demo/hooks or GET /demo/hooks' }, 404);
    let body: unknown;
    try {
      body = JSON.parse(await request.text());
    } catch {
      return json({ detail: 'The body must be JSON' }, 400);
    }
    const key = request.headers.get('idempotency-key') ?? randomUUID();
    if (this.#deliveries.has(key)) return json({ duplicate: true }, 200);
    this.#deliveries.set(key, { idempotency_key: key, received_at: new Date().toISOString(), body });
    if (this.#deliveries.size > MAX_DELIVERIES)
      this.#deliveries.delete(this.#deliveries.keys().next().value as string);
    return json({ kept: true }, 200);
  }
}

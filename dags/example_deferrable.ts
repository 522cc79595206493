import { BaseOperator, dag, HttpPollTrigger, type OperatorContext, TimeDeltaTrigger } from 'updraft';

/**
 * A deferrable operator: it submits a job to an external service, gives its worker slot back while
 * the HTTP poll trigger waits (on the triggerer) for the job to finish, resumes to read the result,
 * defers again on a time delta, and succeeds. Standalone serves a small demo job service at
 * /demo/jobs (a job finishes a few seconds after it is submitted); `jobService` points at it.
 *
 *   npx updraft dags trigger example_deferrable --wait
 */
const host = process.env.UPDRAFT_HOST ?? '127.0.0.1';
const port = process.env.PORT ?? '8080';

interface RunJobOptions {
  durationMs: number;
}

class RunExternalJob extends BaseOperator<RunJobOptions> {
  async execute(ctx: OperatorContext) {
    const service = String(ctx.params.jobService);
    const response = await fetch(service, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ duration_ms: this.options.durationMs }),
      signal: ctx.signal,
    });
    if (!response.ok) throw new Error(`POST ${service}: ${response.status} ${await response.text()}`);
    const job = (await response.json()) as { id: string };
    ctx.log.info('submitted the job; deferring until it is done', { id: job.id });
    return ctx.defer({
      trigger: new HttpPollTrigger({
        url: `${service}/${job.id}`,
        intervalMs: 1_000,
        condition: { jsonPath: 'state', equals: 'done' },
      }),
      method: 'fetchResult',
      timeout: '5m',
      kwargs: { jobId: job.id },
    });
  }

  async fetchResult(ctx: OperatorContext, event: unknown, kwargs: { jobId: string }) {
    const { body } = event as { body: { result: { rows: number } } };
    ctx.log.info('the job is done', { id: kwargs.jobId, rows: body.result.rows });
    // Wait a little before publishing, still without holding a worker slot.
    return ctx.defer({
      trigger: new TimeDeltaTrigger({ delta: '2s' }),
      method: 'publish',
      kwargs: { jobId: kwargs.jobId, rows: body.result.rows },
    });
  }

  async publish(ctx: OperatorContext, _event: unknown, kwargs: { jobId: string; rows: number }) {
    ctx.log.info('published', kwargs);
    return kwargs;
  }
}

export default dag(
  {
    id: 'example_deferrable',
    description: 'Submit a job, defer until it is done, resume, defer again, succeed',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    tags: ['example'],
    params: { jobService: `http://${host}:${port}/demo/jobs` },
  },
  (d) => {
    d.add(new RunExternalJob({ id: 'run_job', durationMs: 3_000, retries: 1 }));
  },
);

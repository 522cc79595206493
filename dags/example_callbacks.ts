import { type CallbackContext, dag, type TaskContext, webhookNotifier } from 'updraft';

/**
 * Callbacks: `extract` fails on its first try (its `onRetry` callback, a plain function, runs on a
 * worker) and succeeds on the second (its `onSuccess` callback, a webhook notifier, POSTs to a
 * webhook); the run's `onSuccess` callback logs the run. Async callbacks (the notifier, `runDone`)
 * run on the triggerer. The run has a deadline, 10 minutes after it was queued, which it meets:
 * `npx updraft runs show example_callbacks <run_id>` shows it `met`. Standalone serves a small
 * webhook receiver at /demo/hooks (it keeps each notification once per Idempotency-Key; GET
 * /demo/hooks lists them); UPDRAFT_EXAMPLE_WEBHOOK_URL points the notifier elsewhere. See the
 * callbacks with `npx updraft callbacks list example_callbacks`.
 */
const host = process.env.UPDRAFT_HOST ?? '127.0.0.1';
const port = process.env.PORT ?? '8080';
const hook = webhookNotifier({
  url: process.env.UPDRAFT_EXAMPLE_WEBHOOK_URL ?? `http://${host}:${port}/demo/hooks`,
  timeout: '5s',
});

/** Runs only if a run is still unfinished 10 minutes after it was queued (it is not: the deadline is met). */
async function lateAlert(ctx: CallbackContext): Promise<void> {
  ctx.log(`run ${ctx.runId} missed its deadline by ${ctx.deadline?.lateByMs} ms`);
}

function noteRetry(ctx: CallbackContext): void {
  ctx.log(`try ${ctx.tryNumber} of ${ctx.taskId} failed (${ctx.errorMessage}); it will be retried`);
}

/** Async: it runs in the triggerer's event loop (UPDRAFT_ASYNC_CALLBACKS_RUN_ON), not in a worker slot. */
async function runDone(ctx: CallbackContext): Promise<void> {
  ctx.log(`run ${ctx.runId} of ${ctx.dagId} succeeded`);
}

export default dag(
  {
    id: 'example_callbacks',
    description: 'Retry, success and DAG callbacks, a webhook notifier, and a deadline',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    onSuccess: runDone,
    deadline: { within: '10m', of: 'queued_at', callback: lateAlert },
    defaultArgs: { onFailure: hook },
  },
  (d) => {
    const extract = d.task(
      { id: 'extract', retries: 1, retryDelay: '1s', onRetry: noteRetry, onSuccess: hook },
      async (ctx: TaskContext) => {
        if (ctx.tryNumber === 1) throw new Error('the source was not ready yet');
        return { rows: 42 };
      },
    );
    d.task({ id: 'report' }, async (ctx: TaskContext) => {
      ctx.log.info('reporting');
      return 'done';
    }).after(extract);
  },
);

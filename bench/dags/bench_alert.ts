import { type CallbackContext, dag } from 'updraft';

/** The failure callback the callbacks benchmark times from the TI's end to its start. */
function alertOnCall(ctx: CallbackContext) {
  ctx.log('alert', ctx.dagId, ctx.runId, ctx.taskId, ctx.errorMessage);
}

/**
 * The callbacks benchmark's probe: one task that fails at once, for good, with a failure callback.
 * Its workloads go to the `high` queue, so the task starts at the next free slot instead of behind
 * the flood's backlog; the callback has a lane of its own whatever the queue.
 */
export default dag({ id: 'bench_alert', schedule: null, maxActiveRuns: 64 }, (d) => {
  d.task({ id: 'fail_now', retries: 0, queue: 'high', onFailure: alertOnCall }, () => {
    throw new Error('bench_alert fails at once');
  });
});

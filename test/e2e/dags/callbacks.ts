import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CallbackContext, dag, type TaskContext } from 'updraft';

/**
 * The callback tests' DAGs. Every callback appends one line (`<kind> <name> <idempotency key>`)
 * to `$UPDRAFT_E2E_EFFECTS/effects.log`, so a test counts the effects a callback had.
 */
function record(name: string) {
  const effect = (ctx: CallbackContext) => {
    const folder = process.env.UPDRAFT_E2E_EFFECTS;
    if (!folder) throw new Error('UPDRAFT_E2E_EFFECTS is not set');
    ctx.log('recording', name, 'for', ctx.kind, 'try', ctx.tryNumber ?? '-');
    appendFileSync(join(folder, 'effects.log'), `${ctx.kind} ${name} ${ctx.idempotencyKey}\n`);
  };
  Object.defineProperty(effect, 'name', { value: name });
  return effect;
}

export const flaky = dag(
  {
    id: 'cb_flaky',
    description: 'e2e: a task that fails once, then succeeds; retry, success and DAG callbacks',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    onSuccess: record('dag_done'),
    onFailure: record('dag_failed'),
  },
  (d) => {
    d.task(
      {
        id: 'flaky',
        retries: 1,
        retryDelay: 0,
        onRetry: record('retrying'),
        onSuccess: record('succeeded'),
        onFailure: record('failed_for_good'),
        onExecute: record('started'),
      },
      async (ctx: TaskContext) => {
        if (ctx.tryNumber === 1) throw new Error('first try fails');
        return 'ok';
      },
    );
  },
);

export const doomed = dag(
  {
    id: 'cb_doomed',
    description: 'e2e: a task that fails for good; failure callbacks, and a callback that raises',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    onFailure: [record('dag_failed'), { callback: raising, retries: 1, retryDelay: 0 }],
  },
  (d) => {
    d.task({ id: 'doomed', retries: 0, onFailure: record('task_failed') }, async () => {
      throw new Error('always fails');
    });
  },
);

function raising(ctx: CallbackContext): never {
  ctx.log('about to raise on attempt', ctx.attempt);
  throw new Error(`callback raised on attempt ${ctx.attempt}`);
}

/**
 * Success callbacks that take a while: the kill -9 test stops standalone while they run, one in
 * the triggerer's event loop (async, so placed there), one in a worker's runner (`runOn`).
 */
export const slow = dag(
  {
    id: 'cb_slow',
    description: 'e2e: a success callback that is running when standalone is killed',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
  },
  (d) => {
    d.task(
      {
        id: 'quick',
        onSuccess: { callback: slowEffect, timeout: '15s', retries: 2, retryDelay: 0 },
      },
      async () => 'done',
    );
    d.task(
      {
        id: 'quick_on_worker',
        onSuccess: { callback: slowEffect, timeout: '15s', retries: 2, retryDelay: 0, runOn: 'worker' },
      },
      async () => 'done',
    );
  },
);

async function slowEffect(ctx: CallbackContext): Promise<void> {
  const folder = process.env.UPDRAFT_E2E_EFFECTS as string;
  appendFileSync(
    join(folder, 'slow.log'),
    `begin ${ctx.idempotencyKey} ${ctx.attempt} ${ctx.previousAttemptMayHaveRun}\n`,
  );
  // Long enough for the killed worker's runner and the triggerer to notice their parent is gone
  // (their watchdogs poll every 200 ms) before they would have the effect, even on a loaded machine.
  await new Promise((resolve) => setTimeout(resolve, 4_000));
  appendFileSync(join(folder, 'slow.log'), `done ${ctx.idempotencyKey} ${ctx.attempt}\n`);
}

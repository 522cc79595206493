import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CallbackContext, dag } from 'updraft';

/**
 * The deadline tests' DAGs. The deadline callback appends one line (`<kind> <idempotency key>
 * <late by ms>`) to `$UPDRAFT_E2E_EFFECTS/deadlines.log`, so a test counts its effects.
 */
function late(ctx: CallbackContext): void {
  const folder = process.env.UPDRAFT_E2E_EFFECTS;
  if (!folder) throw new Error('UPDRAFT_E2E_EFFECTS is not set');
  appendFileSync(
    join(folder, 'deadlines.log'),
    `${ctx.kind} ${ctx.idempotencyKey} ${ctx.deadline?.lateByMs ?? '-'}\n`,
  );
}

export const slowRun = dag(
  {
    id: 'dl_slow',
    description: 'e2e: a run that takes longer than its deadline',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    deadline: { within: '2s', of: 'queued_at', callback: late },
  },
  (d) => {
    d.task({ id: 'nap' }, async () => {
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      return 'done';
    });
  },
);

export const promptRun = dag(
  {
    id: 'dl_prompt',
    description: 'e2e: a run that finishes well within its deadline',
    schedule: null,
    startDate: '2026-01-01T00:00:00Z',
    deadline: { within: '1m', of: 'queued_at', callback: late },
  },
  (d) => {
    d.task({ id: 'quick' }, async () => 'done');
  },
);

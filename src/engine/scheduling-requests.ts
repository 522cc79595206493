import type { SchedulingRequest } from '#contracts/messages.ts';
import type { DagRunKey } from '#core/models.ts';
import type { Queues } from '#queue/port.ts';
import { sendAll } from '#queue/send.ts';
import type { Logger } from './logger.ts';

/**
 * Asks for runs to be scheduled by another pass, awaited so the request has left before the
 * caller returns. A failed send is logged, not thrown: requests are hints and the tick reaches
 * every active run anyway.
 */
export async function requestScheduling(
  deps: { queues: Queues; log: Logger },
  runs: readonly DagRunKey[],
): Promise<void> {
  if (runs.length === 0) return;
  try {
    await sendAll(
      deps.queues.scheduler,
      runs.map((run) => {
        const body: SchedulingRequest = { type: 'schedule_run', dag_id: run.dagId, run_id: run.runId };
        return { body: JSON.stringify(body) };
      }),
    );
  } catch (error) {
    deps.log.warn('Sending scheduling requests failed; the tick reaches these runs', {
      count: runs.length,
      error,
    });
  }
}

import type { DagRunKey } from '#core/models.ts';
import type { Queues } from '#queue/port.ts';
import { sendAll } from '#queue/send.ts';
import type { Logger } from './logger.ts';
import { schedulingRequestsFor } from './notifier.ts';

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
      runs.flatMap((run) => schedulingRequestsFor(run, []).map((body) => ({ body: JSON.stringify(body) }))),
    );
  } catch (error) {
    deps.log.warn('Sending scheduling requests failed; the tick reaches these runs', {
      count: runs.length,
      error,
    });
  }
}

import type { TaskWorkload } from '#contracts/messages.ts';
import type { DagRun, TaskInstance } from '#core/models.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import type { Queues } from '#queue/port.ts';
import { sendAll } from '#queue/send.ts';
import type { TaskTokenSigner } from './tokens.ts';

const TASK_QUEUE_OF = { high: 'tasks_high', default: 'tasks_default', low: 'tasks_low' } as const;

/**
 * Builds the workloads of queued task instances, each with a token for its TI and try, and sends
 * them to the task queue of their priority class in batch calls. Stateless: a new one per pass is fine.
 */
export class WorkloadSender {
  readonly #deps: { queues: Queues; tokens: TaskTokenSigner; now: () => number };

  constructor(deps: { queues: Queues; tokens: TaskTokenSigner; now: () => number }) {
    this.#deps = deps;
  }

  async send(run: DagRun, taskInstances: readonly TaskInstance[], dag: SerializedDag): Promise<void> {
    const nowMs = this.#deps.now();
    const byQueue = new Map<keyof typeof TASK_QUEUE_OF, { body: string }[]>();
    const tokens = await Promise.all(
      taskInstances.map((ti) =>
        this.#deps.tokens.issue(
          {
            dagId: ti.dagId,
            runId: ti.runId,
            taskId: ti.taskId,
            mapIndex: ti.mapIndex,
            tryNumber: ti.tryNumber,
            dagVersion: run.dagVersion,
          },
          nowMs,
        ),
      ),
    );
    for (const [index, ti] of taskInstances.entries()) {
      const workload: TaskWorkload = {
        type: 'execute_task',
        ti: { dag_id: ti.dagId, run_id: ti.runId, task_id: ti.taskId, map_index: ti.mapIndex },
        try_number: ti.tryNumber,
        token: tokens[index] as string,
        fileloc: dag.fileloc,
        dag_version: run.dagVersion,
      };
      const queueName = ti.queue in TASK_QUEUE_OF ? (ti.queue as keyof typeof TASK_QUEUE_OF) : 'default';
      const messages = byQueue.get(queueName) ?? [];
      messages.push({ body: JSON.stringify(workload) });
      byQueue.set(queueName, messages);
    }
    // Each queue's batch is retried per refused entry; a send that still fails throws, and the TIs
    // stay queued for the queued timeout to send them again.
    for (const [queueName, messages] of byQueue)
      await sendAll(this.#deps.queues[TASK_QUEUE_OF[queueName]], messages);
  }
}

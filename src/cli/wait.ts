import { clearLine, cursorTo } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DagRun, TaskInstance } from '#contracts/public-api.ts';
import type { ApiClient } from './client.ts';
import { formatProgress } from './format.ts';

export const DEFAULT_POLL_INTERVAL_MS = 500;

/** A stream the progress goes to; on a terminal the line is rewritten in place. */
export type ProgressStream = NodeJS.WritableStream & { isTTY?: boolean };

export interface WaitOptions {
  client: ApiClient;
  dagId: string;
  runId: string;
  /** Gives up after this long; no limit when undefined. */
  timeoutSeconds?: number;
  pollIntervalMs?: number;
  progress: ProgressStream;
}

export interface WaitOutcome {
  outcome: 'finished' | 'timeout';
  run: DagRun;
  taskInstances: TaskInstance[];
}

export function isFinishedRunState(state: string): boolean {
  return state === 'success' || state === 'failed';
}

/**
 * Polls a run and its task instances until the run finishes or the timeout passes, showing the
 * task counts by state as it goes: one line rewritten in place on a terminal, a new line per
 * change otherwise (logs and CI output stay readable).
 */
export async function waitForRun(options: WaitOptions): Promise<WaitOutcome> {
  const interval = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  const deadline =
    options.timeoutSeconds === undefined
      ? Number.POSITIVE_INFINITY
      : Date.now() + options.timeoutSeconds * 1000;
  const line = new ProgressLine(options.progress);
  try {
    for (;;) {
      const [run, collection] = await Promise.all([
        options.client.getRun(options.dagId, options.runId),
        options.client.listTaskInstances(options.dagId, options.runId),
      ]);
      line.show(formatProgress(run, collection.task_instances));
      if (isFinishedRunState(run.state)) {
        return { outcome: 'finished', run, taskInstances: collection.task_instances };
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) return { outcome: 'timeout', run, taskInstances: collection.task_instances };
      await sleep(Math.min(interval, remaining));
    }
  } finally {
    line.end();
  }
}

class ProgressLine {
  readonly #stream: ProgressStream;
  #last: string | undefined;

  constructor(stream: ProgressStream) {
    this.#stream = stream;
  }

  show(text: string): void {
    if (text === this.#last) return;
    if (this.#stream.isTTY) {
      cursorTo(this.#stream, 0);
      clearLine(this.#stream, 0);
      this.#stream.write(text);
    } else {
      this.#stream.write(`${text}\n`);
    }
    this.#last = text;
  }

  /** Leaves the in-place line on screen and moves below it. */
  end(): void {
    if (this.#stream.isTTY && this.#last !== undefined) this.#stream.write('\n');
  }
}

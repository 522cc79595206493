import type { DagRun } from './models.ts';

/**
 * The queued runs of one DAG that may start now under `maxActiveRuns`, oldest logical date first
 * (then run id, so equal dates start in a stable order), as Airflow moves queued runs to running.
 * `runningCount` is the DAG's runs already running; runs in `queuedRuns` that are not queued are ignored.
 */
export function startableRuns(queuedRuns: DagRun[], runningCount: number, maxActiveRuns: number): DagRun[] {
  const free = Math.max(0, maxActiveRuns - runningCount);
  if (free === 0) return [];
  return queuedRuns
    .filter((run) => run.state === 'queued')
    .sort((a, b) => compareStrings(a.logicalDate, b.logicalDate) || compareStrings(a.runId, b.runId))
    .slice(0, free);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

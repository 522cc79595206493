import { TRIGGER_RULES, type TriggerRule } from '#core/serialized-dag.ts';
import { type Dag, dag } from '#sdk/index.ts';
import type { Prng } from './prng.ts';

/**
 * Random workloads built with the real SDK: DAGs of chains, fan-outs and fan-ins over every
 * trigger rule, retries with short delays, pools shared across DAGs, small `maxActiveRuns` and
 * `maxActiveTasks`; and the runs to trigger, each at a sim time. About one task in five is
 * deferrable: what its tries do (defer, resume, end from the trigger) is planned in plans.ts.
 */

export interface PlannedRun {
  dagId: string;
  runId: string;
  atMs: number;
}

export interface Workload {
  dags: Dag[];
  pools: Record<string, number>;
  runs: PlannedRun[];
  /** `dagId/taskId` of the deferrable tasks (none in the wide DAG). */
  deferrable: ReadonlySet<string>;
}

export function generateWorkload(prng: Prng, options: { triggerWindowMs: number; wide?: boolean }): Workload {
  const pools: Record<string, number> = {
    default_pool: prng.range(3, 8),
    shared_a: prng.range(1, 2),
    shared_b: prng.range(2, 3),
  };
  const dags: Dag[] = [];
  const runs: PlannedRun[] = [];
  const dagCount = prng.range(2, 3);
  for (let d = 0; d < dagCount; d++) {
    const dagId = `dag_${d}`;
    dags.push(randomDag(prng, dagId, pools));
    const runCount = prng.range(2, 4);
    for (let r = 0; r < runCount; r++) {
      runs.push({ dagId, runId: `run_${r}`, atMs: prng.range(0, options.triggerWindowMs) });
    }
  }
  const deferrable = pickDeferrable(prng.fork('deferrable'), dags);
  if (options.wide) addWideDag(prng.fork('wide'), pools, dags, runs, options.triggerWindowMs);
  runs.sort((a, b) => a.atMs - b.atMs);
  return { dags, pools, runs, deferrable };
}

/**
 * One task in five defers. Drawn from a stream of its own, after the DAGs are built, so a seed's
 * DAGs and runs are the ones it had before tasks could defer (pinned seeds keep their workloads).
 */
function pickDeferrable(prng: Prng, dags: readonly Dag[]): Set<string> {
  const deferrable = new Set<string>();
  for (const built of dags)
    for (const taskId of built.taskIds) if (prng.chance(0.2)) deferrable.add(`${built.dagId}/${taskId}`);
  return deferrable;
}

/**
 * `--wide`: one more DAG whose root fans out to 30–70 tasks (some retried), on a pool of its own
 * of 20–40 slots and the shared ones, with room for most of them at once: a pass then reserves
 * more than one store update may name, in rounds, and gives back many ended tries at once. Drawn
 * from a stream of its own, so the rest of a seed's workload is the same with or without it.
 */
function addWideDag(
  prng: Prng,
  pools: Record<string, number>,
  dags: Dag[],
  runs: PlannedRun[],
  triggerWindowMs: number,
): void {
  pools.wide_pool = prng.range(20, 40);
  const width = prng.range(30, 70);
  dags.push(
    dag({ id: 'dag_wide', maxActiveRuns: 2, maxActiveTasks: prng.range(25, 60) }, (d) => {
      d.task({ id: 'root' }, () => null);
      for (let i = 0; i < width; i++) {
        const pool = prng.chance(0.8) ? 'wide_pool' : prng.pick(['default_pool', 'shared_b']);
        d.task(
          {
            id: `w${i}`,
            retries: prng.pick([0, 0, 1]),
            retryDelay: prng.range(1, 3),
            pool,
            upstream: ['root'],
          },
          () => null,
        );
      }
    }),
  );
  for (let r = 0; r < 2; r++)
    runs.push({ dagId: 'dag_wide', runId: `run_${r}`, atMs: prng.range(0, triggerWindowMs) });
}

/**
 * Callbacks drawn from a stream of their own (a fork does not move its parent), so a seed's DAGs
 * and runs are the ones it had before callbacks existed. Their code never runs in the sim: the
 * sim's callback executor decides each attempt's outcome (see `SimCallbackExecutor`).
 */
function callbackOptions(prng: Prng, events: readonly string[]): Record<string, unknown> {
  if (!prng.chance(0.5)) return {};
  // Some run on a triggerer (claimed by the sim's triggerers), the rest on the workers' lane.
  const places = prng.fork('places');
  return Object.fromEntries(
    events.map((event) => {
      const callback = named(`cb_${event}`);
      return [event, places.chance(0.3) ? { callback, runOn: 'triggerer' } : callback];
    }),
  );
}

/**
 * Deadlines on some DAGs: from when a run was queued, within a span some runs meet and some miss
 * (the sim's runs take from seconds to minutes), with a callback on a worker or a triggerer.
 */
function deadlineOptions(prng: Prng): Record<string, unknown> {
  if (!prng.chance(0.6)) return {};
  const count = prng.range(1, 2);
  const deadlines = Array.from({ length: count }, (_, d) => {
    const callback = named(`cb_deadline_${d}`);
    return {
      within: `${prng.range(2, 60)}s`,
      of: prng.pick(['queued_at', 'logical_date'] as const),
      callback: prng.chance(0.3) ? { callback, runOn: 'triggerer' } : callback,
    };
  });
  return { deadline: deadlines };
}

function named(name: string): () => void {
  const fn = () => undefined;
  Object.defineProperty(fn, 'name', { value: name });
  return fn;
}

function randomDag(prng: Prng, dagId: string, pools: Record<string, number>): Dag {
  const taskCount = prng.range(3, 7);
  const callbacks = prng.fork('callbacks');
  const dagOptions = {
    id: dagId,
    maxActiveRuns: prng.range(1, 2),
    maxActiveTasks: prng.range(1, 4),
    ...callbackOptions(callbacks, ['onSuccess', 'onFailure']),
    ...deadlineOptions(prng.fork('deadlines')),
  };
  return dag(dagOptions, (d) => {
    for (let i = 0; i < taskCount; i++) {
      const pool = prng.pick(['default_pool', 'default_pool', 'shared_a', 'shared_b']);
      d.task(
        {
          ...callbackOptions(callbacks, ['onSuccess', 'onFailure', 'onRetry', 'onExecute', 'onSkipped']),
          id: `t${i}`,
          retries: prng.pick([0, 0, 1, 2]),
          retryDelay: prng.range(1, 3),
          triggerRule: i === 0 ? 'all_success' : triggerRule(prng),
          pool,
          poolSlots: prng.range(1, Math.min(2, pools[pool] ?? 1)),
          upstream: upstreamOf(prng, i),
        },
        () => null,
      );
    }
  });
}

/** Mostly all_success, so runs go deep; every rule appears. */
function triggerRule(prng: Prng): TriggerRule {
  return prng.chance(0.5) ? 'all_success' : prng.pick(TRIGGER_RULES);
}

/** 1–3 distinct earlier tasks, biased toward the previous one (chains), sometimes several (fan-in). */
function upstreamOf(prng: Prng, index: number): string[] {
  if (index === 0) return [];
  const chosen = new Set<number>([prng.chance(0.6) ? index - 1 : prng.int(index)]);
  const extra = prng.chance(0.3) ? prng.range(1, Math.min(2, index)) : 0;
  for (let k = 0; k < extra; k++) chosen.add(prng.int(index));
  return [...chosen].sort((a, b) => a - b).map((i) => `t${i}`);
}

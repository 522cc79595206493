import { formatTaskInstanceKey, type TaskInstance } from '#core/models.ts';
import { percentile } from './costs.ts';
import type { SeededTrigger, TriggerStack } from './triggers-stack.ts';

/** What the triggerer benchmark's scenarios share: latency figures, job reads, waits. */

export interface LatencyFigures {
  p50: number;
  p99: number;
  max: number;
}

export const MB = 1024 * 1024;

export function round(value: number, digits = 0): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function figuresOf(values: readonly number[]): LatencyFigures {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) ?? Number.NaN };
}

/** States of a TI whose event was applied: scheduled to resume, or resumed since. */
const RESUMED: ReadonlySet<string> = new Set(['scheduled', 'queued', 'running', 'success']);

/**
 * Over the resumed TIs (in a RESUMED state, `nextEventAt` set): applied (nextEventAt) −
 * moment, and its two parts where the API saw the event call: moment → the call reached the API
 * (the triggerer: its timer, its outbox and the outbox's queue), and the call's arrival → applied
 * (the API and the store).
 */
export function resumeLatencies(
  seeded: readonly SeededTrigger[],
  tis: readonly TaskInstance[],
  arrivals: ReadonlyMap<string, number> = new Map(),
) {
  const byKey = new Map(tis.map((ti) => [formatTaskInstanceKey(ti), ti]));
  const latencies: number[] = [];
  const toApi: number[] = [];
  const inApi: number[] = [];
  let firstApplied = Number.POSITIVE_INFINITY;
  let lastApplied = Number.NEGATIVE_INFINITY;
  for (const entry of seeded) {
    const ti = byKey.get(formatTaskInstanceKey(entry.key));
    if (!ti || !RESUMED.has(ti.state) || !ti.nextEventAt) continue;
    const at = Date.parse(ti.nextEventAt);
    firstApplied = Math.min(firstApplied, at);
    lastApplied = Math.max(lastApplied, at);
    latencies.push(at - entry.momentMs);
    const arrived = arrivals.get(entry.triggerId);
    if (arrived !== undefined) {
      toApi.push(arrived - entry.momentMs);
      inApi.push(at - arrived);
    }
  }
  const span = lastApplied - firstApplied;
  return {
    resumed: latencies.length,
    figures: figuresOf(latencies),
    toApi: figuresOf(toApi),
    inApi: figuresOf(inApi),
    over2s: latencies.filter((ms) => ms > 2_000).length,
    appliedPerSecond: span > 0 ? round(latencies.length / (span / 1000)) : Number.NaN,
  };
}

/** How many of the sorted moments are at or before `now`. */
export function dueBy(moments: readonly number[], now: number): number {
  let low = 0;
  let high = moments.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if ((moments[middle] as number) <= now) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Triggers the job holds, as the claims the API made say. */
export function heldBy(stack: TriggerStack, jobId: string): number {
  let count = 0;
  for (const claim of stack.claims.holder.values()) if (claim.jobId === jobId) count += 1;
  return count;
}

/** Triggers the running jobs run, as their last heartbeats said (one Query). */
export async function runningOnJobs(stack: TriggerStack): Promise<number> {
  const page = await stack.store.listJobs({ limit: 100 });
  return page.items.filter((job) => job.state === 'running').reduce((sum, job) => sum + job.running, 0);
}

/** Ids of the running triggerer jobs, in the order they registered. */
export async function jobIds(stack: TriggerStack): Promise<string[]> {
  const page = await stack.store.listJobs({ limit: 100 });
  return page.items
    .filter((job) => job.state === 'running')
    .sort((a, b) => a.startedAt.localeCompare(b.startedAt))
    .map((job) => job.jobId);
}

export async function until<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

import { settingsSchema } from '#config/settings.ts';
import {
  dueBy,
  heldBy,
  jobIds,
  type LatencyFigures,
  MB,
  resumeLatencies,
  round,
  runningOnJobs,
  sleep,
  until,
} from './triggers-measure.ts';
import { startTriggerer, type TriggererChild } from './triggers-process.ts';
import { startTriggerStack, TASKS_PER_RUN } from './triggers-stack.ts';

/**
 * The triggerer benchmark's scenarios (see bench/triggers.ts): `loadScenario` (N triggers, one
 * triggerer, moments spread over a window) and `failoverScenario` (two triggerers, one killed).
 * Each runs on a stack of its own (API, store) and kills every triggerer it started, also on failure.
 */

const POLL_MS = 500;

export interface LoadResult {
  triggers: number;
  window_ms: number;
  /** Writing the deferred TIs and their triggers, before the triggerer starts. */
  setup: { ms: number; task_instances_ms: number; triggers_ms: number; triggers_per_second: number };
  /** From the setup's end to the first moment. */
  lead_ms: number;
  /** TIs whose trigger's event was applied (`scheduled` to resume, or past it), when the run ended. */
  resumed: number;
  /** With workers: TIs that resumed on a worker and ended in success. */
  completed?: number;
  /** With workers (started once every event was applied): from the window's end to the last run's success (polled every 500 ms), or to the time-out. */
  completed_after_window_ms?: number;
  /** The wait for the TIs to end timed out. */
  completion_timed_out?: boolean;
  /** nextEventAt (the event applied) − the trigger's moment, over the resumed TIs. */
  event_to_resume_ms: LatencyFigures;
  /** Its first part: moment → the event call reached the API (the triggerer, its outbox's queue). */
  moment_to_api_ms: LatencyFigures;
  /** Its second part: the call's arrival → applied (the API and the store). */
  api_to_applied_ms: LatencyFigures;
  resumed_over_2s_late: number;
  /** Events applied per second, first to last. */
  applied_per_second: number;
  /** Most triggers past their moment and not yet applied at once (polled every 500 ms). */
  max_backlog: number;
  claim: {
    /** From the triggerer's start to its first load reaching the store. */
    first_load_after_start_ms: number | undefined;
    /** The first load call (the API otherwise idle): claims made and its duration. */
    first_load: { claims: number; ms: number } | undefined;
    /** First load → every trigger claimed (undefined: not all were). */
    all_claimed_ms: number | undefined;
    claimed: number;
    /** Conditional claims that lost to another (load calls overlapping on the same oldest-first list). */
    refused: number;
    /** Claimed triggers whose workloads the triggerer asked for: those it knew it held. */
    fetched: number;
    /** Triggers whose moment passed before they were claimed. */
    claimed_after_moment: number;
    load_calls: number;
    /** Load calls the API took longer than 10 s to answer: the triggerer had given up on them. */
    load_calls_over_10s: number;
    slowest_load_call_ms: number;
  };
  triggerer: {
    /** Most triggers it ran at once, as its heartbeats said (every 2 s). */
    max_running: number;
    peak_rss_mb: number | undefined;
    /** VmRSS at its first load (before it held any trigger). */
    rss_at_first_load_mb: number | undefined;
    /** VmRSS a second after the last claim, once every trigger was claimed. */
    rss_after_load_mb: number | undefined;
    cpu_s: number | undefined;
    /** Its warnings and errors, by message. */
    warnings: Record<string, number>;
  };
  /** This process: the API (and the benchmark's few reads). */
  api_process_cpu_s: number;
  /** The embedded store's own process, over the same span. */
  store_process_cpu_s: number | undefined;
  /** The API's warnings and errors, by message. */
  api_warnings: Record<string, number>;
  /** Store requests from the triggerer's start to the end, per trigger (the bench's polling included). */
  store_requests_per_trigger: { reads: number; writes: number };
  store_requests: Record<string, number>;
  /** Execution API calls from the triggerer's start to the end, by route and status. */
  api_calls: Record<string, number>;
  outcome: string;
}

export interface LoadOptions {
  count: number;
  windowMs: number;
  /** From the setup's end to the first moment, at least. */
  leadMs: number;
  /** How long after the window's end the events may still come. */
  graceMs: number;
  /**
   * Once every event is applied (or the grace is over), run each resumed TI to its end on a
   * scheduler and worker pool (standalone's wiring), waiting this long for the last; undefined:
   * the TIs stay `scheduled`. Started after the window, so that on a machine of few cores they do
   * not take the CPU the triggerer, API and store are measured with (on AWS they run elsewhere).
   */
  completeTimeoutMs?: number;
  runPrefix: string;
  log: (line: string) => void;
}

/** N deferred TIs, one triggerer with capacity N, moments spread evenly over the window. */
export async function loadScenario(options: LoadOptions): Promise<LoadResult> {
  const { count, windowMs, log } = options;
  if (options.completeTimeoutMs !== undefined && count % TASKS_PER_RUN !== 0) {
    // A partial run would get its missing TIs from the scheduler, which defer with no triggerer.
    throw new Error(
      `${count} triggers (BENCH_TRIGGERS_COUNT): to run their TIs to their end the count must be a multiple of ${TASKS_PER_RUN} (the tasks of one bench_deferred run)`,
    );
  }
  const stack = await startTriggerStack();
  let child: TriggererChild | undefined;
  try {
    const setupStart = Date.now();
    const seededTis = await stack.seedTaskInstances(options.runPrefix, count);
    const tisMs = Date.now() - setupStart;
    // The triggers take no longer than the TIs (smaller items): the window starts `leadMs` after.
    const windowStart = Date.now() + tisMs + options.leadMs;
    const moments = seededTis.map((_, index) => windowStart + Math.floor((index * windowMs) / count));
    const triggersStart = Date.now();
    const seeded = await stack.seedTriggers(seededTis, moments);
    const setupEnd = Date.now();
    log(
      `  ${count} deferred TIs and their triggers written in ${round((setupEnd - setupStart) / 1000, 1)} s; the first fires in ${round((windowStart - setupEnd) / 1000, 1)} s`,
    );

    stack.resetRequests();
    const cpuBefore = process.cpuUsage();
    const storeCpuBefore = await stack.storeCpuMs();
    const startedAt = Date.now();
    child = await startTriggerer({
      apiUrl: stack.apiUrl,
      credential: await stack.triggererCredential(),
      env: { UPDRAFT_TRIGGERER_CAPACITY: String(count) },
    });
    const deadline = windowStart + windowMs + options.graceMs;
    let allClaimedAt: number | undefined;
    let rssAtFirstLoad: number | undefined;
    let rssAfterLoad: number | undefined;
    let maxBacklog = 0;
    let maxRunning = 0;
    let outcome = ALL_APPLIED;
    let nextProgress = Date.now() + 10_000;
    for (;;) {
      await sleep(POLL_MS);
      const now = Date.now();
      if (rssAtFirstLoad === undefined && stack.claims.firstLoadAt !== undefined)
        rssAtFirstLoad = (await child.memory())?.rssBytes;
      if (allClaimedAt === undefined && stack.claims.holder.size >= count) allClaimedAt = now;
      if (allClaimedAt !== undefined && rssAfterLoad === undefined && now - allClaimedAt >= 1_000)
        rssAfterLoad = (await child.memory())?.rssBytes;
      const applied = await stack.eventsApplied();
      maxRunning = Math.max(maxRunning, await runningOnJobs(stack));
      const due = dueBy(moments, now);
      maxBacklog = Math.max(maxBacklog, due - applied);
      if (now >= nextProgress) {
        nextProgress = now + 10_000;
        log(
          `    ${round((now - startedAt) / 1000)} s: ${stack.claims.holder.size} claimed, ${due} due, ${applied} applied`,
        );
      }
      if (applied >= count) break;
      if (child.exitCode() !== null) {
        outcome = `the triggerer exited (${child.exitCode()}): ${child.output().slice(-500)}`;
        break;
      }
      if (now > deadline) {
        outcome = `${count - applied} events not applied ${round(options.graceMs / 1000)} s after the window`;
        break;
      }
    }
    const memory = await child.memory();
    const cpuMs = await child.cpuMs();
    const cpu = process.cpuUsage(cpuBefore);
    const storeCpuAfter = await stack.storeCpuMs();
    const requests = stack.requests();
    const apiCalls = stack.apiCalls();
    const loadCalls = stack.loadCalls();
    const warnings = child.warnings();
    child.kill();
    await child.exited;
    // Runs whose events did not all come cannot finish: nothing to wait for then.
    const completion =
      options.completeTimeoutMs === undefined || outcome !== ALL_APPLIED
        ? undefined
        : await waitForCompletion(stack, count, options.completeTimeoutMs, log);

    const tis = await stack.readTaskInstances(seeded.map((entry) => entry.key));
    const latency = resumeLatencies(seeded, tis, stack.eventArrivals);
    const { claims } = stack;
    const firstLoad = claims.firstLoadAt;
    const firstCall = loadCalls[0];
    const momentOf = new Map(seeded.map((entry) => [entry.triggerId, entry.momentMs]));
    let claimedAfterMoment = 0;
    let lastClaim = 0;
    let fetched = 0;
    for (const [triggerId, claim] of claims.holder) {
      if (claim.at > (momentOf.get(triggerId) ?? Number.POSITIVE_INFINITY)) claimedAfterMoment += 1;
      if (stack.fetched.has(triggerId)) fetched += 1;
      lastClaim = Math.max(lastClaim, claim.at);
    }
    const endOfFirstCall = firstCall ? firstCall.at + firstCall.ms : 0;
    return {
      triggers: count,
      window_ms: windowMs,
      setup: {
        ms: setupEnd - setupStart,
        task_instances_ms: tisMs,
        triggers_ms: setupEnd - triggersStart,
        triggers_per_second: round(count / ((setupEnd - setupStart) / 1000)),
      },
      lead_ms: windowStart - setupEnd,
      resumed: latency.resumed,
      ...(completion === undefined
        ? {}
        : {
            completed: tis.filter((ti) => ti.state === 'success').length,
            completed_after_window_ms: completion.lastAt - (windowStart + windowMs),
            completion_timed_out: completion.timedOut,
          }),
      event_to_resume_ms: latency.figures,
      moment_to_api_ms: latency.toApi,
      api_to_applied_ms: latency.inApi,
      resumed_over_2s_late: latency.over2s,
      applied_per_second: latency.appliedPerSecond,
      max_backlog: maxBacklog,
      claim: {
        first_load_after_start_ms: firstLoad === undefined ? undefined : firstLoad - startedAt,
        first_load: firstCall
          ? {
              claims: [...claims.holder.values()].filter((claim) => claim.at <= endOfFirstCall).length,
              ms: firstCall.ms,
            }
          : undefined,
        all_claimed_ms:
          firstLoad !== undefined && allClaimedAt !== undefined ? lastClaim - firstLoad : undefined,
        claimed: claims.holder.size,
        refused: claims.refused,
        fetched,
        claimed_after_moment: claimedAfterMoment,
        load_calls: loadCalls.length,
        load_calls_over_10s: loadCalls.filter((call) => call.ms > 10_000).length,
        slowest_load_call_ms: Math.max(0, ...loadCalls.map((call) => call.ms)),
      },
      triggerer: {
        max_running: maxRunning,
        peak_rss_mb: memory ? round(memory.peakBytes / MB) : undefined,
        rss_at_first_load_mb: rssAtFirstLoad === undefined ? undefined : round(rssAtFirstLoad / MB),
        rss_after_load_mb: rssAfterLoad === undefined ? undefined : round(rssAfterLoad / MB),
        cpu_s: cpuMs === undefined ? undefined : round(cpuMs / 1000, 1),
        warnings,
      },
      api_process_cpu_s: round((cpu.user + cpu.system) / 1e6, 1),
      store_process_cpu_s:
        storeCpuBefore === undefined || storeCpuAfter === undefined
          ? undefined
          : round((storeCpuAfter - storeCpuBefore) / 1000, 1),
      api_warnings: stack.apiWarnings(),
      store_requests_per_trigger: {
        reads: round(requests.reads / count, 2),
        writes: round(requests.writes / count, 2),
      },
      store_requests: requests.byOperation,
      api_calls: apiCalls,
      outcome,
    };
  } finally {
    child?.kill();
    await child?.exited;
    await stack.close();
  }
}

const ALL_APPLIED = 'all applied';

/** Waits until the runs of `count` TIs succeeded or `timeoutMs` passed; when the last one did. */
async function waitForCompletion(
  stack: Awaited<ReturnType<typeof startTriggerStack>>,
  count: number,
  timeoutMs: number,
  log: (line: string) => void,
): Promise<{ lastAt: number; timedOut: boolean }> {
  stack.startRunning();
  const runs = count / TASKS_PER_RUN;
  const deadline = Date.now() + timeoutMs;
  let nextProgress = Date.now() + 10_000;
  for (;;) {
    const succeeded = await stack.runsSucceeded();
    const now = Date.now();
    if (succeeded >= runs || now > deadline) return { lastAt: now, timedOut: succeeded < runs };
    if (now >= nextProgress) {
      nextProgress = now + 10_000;
      log(`    completing: ${succeeded} of ${runs} runs (${TASKS_PER_RUN} TIs each) succeeded`);
    }
    await sleep(POLL_MS);
  }
}

export interface FailoverResult {
  triggers: number;
  /** The defaults both triggerers and the API ran with. */
  settings: { heartbeat_interval_ms: number; heartbeat_timeout_ms: number; load_interval_ms: number };
  /** Triggers each triggerer held when one was killed. */
  held: { killed: number; survivor: number };
  /** kill -9 → every trigger the killed one held claimed by the survivor. */
  failover_ms: number | undefined;
  /** applied − moment over the killed triggerer's triggers… */
  killed_triggers_lateness_ms: LatencyFigures;
  /** …and over the survivor's own. */
  survivor_triggers_lateness_ms: LatencyFigures;
  resumed: number;
  /** The API's warnings and errors, by message. */
  api_warnings: Record<string, number>;
  outcome: string;
}

/**
 * Two triggerers with the default heartbeat, timeout and load settings. The first (capacity half
 * the triggers) claims the oldest half, the second (capacity all of them, so it can take the
 * first's over) the rest; then the first is killed with SIGKILL.
 */
export async function failoverScenario(options: {
  count: number;
  log: (line: string) => void;
}): Promise<FailoverResult> {
  const { count, log } = options;
  const half = Math.floor(count / 2);
  const stack = await startTriggerStack();
  const children: TriggererChild[] = [];
  try {
    const seededTis = await stack.seedTaskInstances('failover', count);
    const first = await startTriggerer({
      apiUrl: stack.apiUrl,
      credential: await stack.triggererCredential(),
      env: { UPDRAFT_TRIGGERER_CAPACITY: String(half) },
    });
    children.push(first);
    const firstJob = await until(async () => (await jobIds(stack))[0], 15_000, 'the first triggerer');
    // Moments 20–40 s out.
    const base = Date.now() + 20_000;
    const moments = seededTis.map((_, index) => base + Math.floor((index * 20_000) / count));
    const seeded = await stack.seedTriggers(seededTis, moments);
    await until(() => (heldBy(stack, firstJob) >= half ? true : undefined), 15_000, 'the first to fill up');
    const second = await startTriggerer({
      apiUrl: stack.apiUrl,
      credential: await stack.triggererCredential(),
      env: { UPDRAFT_TRIGGERER_CAPACITY: String(count) },
    });
    children.push(second);
    const secondJob = await until(
      async () => (await jobIds(stack)).find((id) => id !== firstJob),
      15_000,
      'the second triggerer',
    );
    await until(() => (stack.claims.holder.size >= count ? true : undefined), 15_000, 'every claim');
    // Let the second fetch and start what it claimed.
    await sleep(1_000);
    const killedSet = new Set(
      [...stack.claims.holder].filter(([, claim]) => claim.jobId === firstJob).map(([id]) => id),
    );
    const heldBySurvivor = heldBy(stack, secondJob);
    first.kill();
    const killedAt = Date.now();
    log(`  killed the triggerer holding ${killedSet.size} triggers (the other holds ${heldBySurvivor})`);
    let failoverMs: number | undefined;
    const deadline = Math.max(...moments) + 20_000;
    let outcome = ALL_APPLIED;
    for (;;) {
      await sleep(100);
      if (failoverMs === undefined) {
        const takenAt = [...killedSet].map((id) => {
          const claim = stack.claims.holder.get(id);
          return claim?.jobId === secondJob ? claim.at : undefined;
        });
        if (takenAt.every((at) => at !== undefined)) {
          failoverMs = Math.max(...(takenAt as number[])) - killedAt;
          log(`  all ${killedSet.size} taken over ${round(failoverMs / 1000, 1)} s after the kill`);
        }
      }
      const applied = await stack.eventsApplied();
      if (applied >= count) break;
      if (second.exitCode() !== null) {
        outcome = `the surviving triggerer exited (${second.exitCode()}): ${second.output().slice(-500)}`;
        break;
      }
      if (Date.now() > deadline) {
        outcome = `${count - applied} events not applied 20 s after the last moment`;
        break;
      }
    }
    second.kill();
    await second.exited;
    const tis = await stack.readTaskInstances(seeded.map((entry) => entry.key));
    const settings = settingsSchema.parse({});
    return {
      triggers: count,
      settings: {
        heartbeat_interval_ms: settings.triggererHeartbeatIntervalMs,
        heartbeat_timeout_ms: settings.triggererHeartbeatTimeoutMs,
        load_interval_ms: settings.triggererLoadIntervalMs,
      },
      held: { killed: killedSet.size, survivor: heldBySurvivor },
      failover_ms: failoverMs,
      killed_triggers_lateness_ms: resumeLatencies(
        seeded.filter((entry) => killedSet.has(entry.triggerId)),
        tis,
      ).figures,
      survivor_triggers_lateness_ms: resumeLatencies(
        seeded.filter((entry) => !killedSet.has(entry.triggerId)),
        tis,
      ).figures,
      resumed: resumeLatencies(seeded, tis).resumed,
      api_warnings: stack.apiWarnings(),
      outcome,
    };
  } finally {
    for (const child of children) child.kill();
    await Promise.all(children.map((child) => child.exited));
    await stack.close();
  }
}

import type { TriggerWorkload } from '#contracts/triggers.ts';
import type { Metrics } from '#metrics/port.ts';
import type { TriggererClient } from './client.ts';
import type { ReportOutbox } from './outbox.ts';
import { isRefusal } from './retry.ts';
import type { TriggerRunner } from './runner.ts';

/**
 * Which triggers run here: claims unclaimed or orphaned triggers while there is capacity, fetches
 * their workloads and starts them, and stops the ones the API no longer wants here. A claimed
 * trigger is held by this job and by no other until the job ends, so one whose workload could not
 * be fetched is kept and fetched again; one whose report still waits in the outbox is not run
 * again (its report settles it), unless that report is refused as no longer this job's.
 */

export type ClaimsClient = Pick<TriggererClient, 'load' | 'workloads' | 'cleanup' | 'held'>;

export interface TriggerClaimsOptions {
  client: ClaimsClient;
  runner: TriggerRunner;
  outbox: ReportOutbox;
  queues: string[];
  callTimeoutMs: number;
  /** Changes when the job is lost or replaced: the answer to a call sent before is ignored. */
  epoch: () => number;
  metrics?: Metrics | undefined;
}

/** Ids per load / workloads / cleanup call (the contract's bound). */
const IDS_PER_CALL = 1_000;
const STOPPED_BY_API = { reason: 'The API stopped the trigger', discardLog: true };

export class TriggerClaims {
  readonly #options: TriggerClaimsOptions;
  /** Claimed, workload not fetched yet (the fetch failed): fetched on the next round. */
  #unfetched = new Set<string>();
  /** Claimed but not run, since the trigger's report waits in the outbox. */
  #heldForReport = new Set<string>();
  /** Fetched, waiting for capacity. */
  #waiting: TriggerWorkload[] = [];
  /** Held by this job, but the API refused their reports for good: never run here again. */
  readonly #abandoned = new Set<string>();

  constructor(options: TriggerClaimsOptions) {
    this.#options = options;
  }

  /** Forgets every claim: the job they were made for is lost. */
  reset(): void {
    this.#unfetched.clear();
    this.#heldForReport.clear();
    this.#waiting = [];
    this.#abandoned.clear();
    this.#publishAbandoned();
  }

  /** Triggers held by this job that it will not run again (their reports were refused). */
  get abandoned(): number {
    return this.#abandoned.size;
  }

  #publishAbandoned(): void {
    this.#options.metrics?.gauge('triggerer.triggers_abandoned', this.#abandoned.size);
  }

  /** A trigger whose failure report the API refused for good: it is not run here again. */
  refused(triggerId: string): void {
    this.#unfetched.delete(triggerId);
    this.#heldForReport.delete(triggerId);
    this.#abandoned.add(triggerId);
    this.#publishAbandoned();
  }

  /** A report refused with a 409: if this job claimed the trigger meanwhile, it runs it after all. */
  takenOver(triggerId: string): void {
    if (this.#heldForReport.delete(triggerId)) this.#unfetched.add(triggerId);
  }

  /**
   * One round: start what waits, fetch what is unfetched, claim up to the free capacity. True when
   * the API claimed as many as one call may ask for and capacity is left: more may be waiting to
   * be claimed, so the next round need not wait for the load interval.
   */
  async load(signal: AbortSignal): Promise<boolean> {
    const { client, runner, outbox, epoch } = this.#options;
    const claimedUnder = epoch();
    for (const id of this.#heldForReport) if (!outbox.hasReport(id)) this.#heldForReport.delete(id);
    this.#startWaiting();
    if (this.#unfetched.size > 0) await this.#fetch([...this.#unfetched], claimedUnder, signal);
    const free = this.#free();
    if (free <= 0 || claimedUnder !== epoch()) return false;
    const limit = Math.min(IDS_PER_CALL, free);
    const ids = await client.load({ limit, queues: this.#options.queues }, this.#callOptions(signal));
    if (claimedUnder !== epoch()) return false;
    for (const id of ids) {
      if (outbox.hasReport(id)) this.#heldForReport.add(id);
      else if (!runner.has(id) && !this.#abandoned.has(id)) this.#unfetched.add(id);
    }
    if (this.#unfetched.size > 0) await this.#fetch([...this.#unfetched], claimedUnder, signal);
    // Full: the API may hold more. A load asking less than a call's worth had less room than that.
    return claimedUnder === epoch() && limit === IDS_PER_CALL && ids.length >= limit && this.#free() > 0;
  }

  /** Triggers this job may still claim (see #free): the capacity left that the gauge and status line show. */
  get free(): number {
    return Math.max(0, this.#free());
  }

  /**
   * Triggers this job may still claim: its capacity less what it runs, what waits to run, and the
   * fired triggers whose report still waits for the API (so under a slow API it holds no more
   * outcomes in memory than its capacity, and claims again as the reports go out).
   */
  #free(): number {
    const { runner, outbox } = this.#options;
    return runner.capacityLeft - this.#waiting.length - this.#unfetched.size - outbox.size.reports;
  }

  /** Asks which of the triggers held here to stop, and stops them. */
  async cleanup(signal: AbortSignal): Promise<void> {
    const { client, runner, epoch } = this.#options;
    const askedUnder = epoch();
    const ids = [
      ...runner.runningIds(),
      ...this.#waiting.map((workload) => workload.trigger_id),
      ...this.#unfetched,
      ...this.#heldForReport,
      ...this.#abandoned,
    ];
    // All it knows in one call: the API then also names what the job holds without knowing it.
    const complete = ids.length <= IDS_PER_CALL;
    for (let index = 0; index < Math.max(ids.length, 1); index += IDS_PER_CALL) {
      const { stop, adopt } = await client.cleanup(ids.slice(index, index + IDS_PER_CALL), {
        ...this.#callOptions(signal),
        complete,
      });
      if (askedUnder !== epoch()) return;
      const stopped = new Set(stop);
      this.#waiting = this.#waiting.filter((workload) => !stopped.has(workload.trigger_id));
      for (const id of stop) {
        this.#unfetched.delete(id);
        if (this.#abandoned.delete(id)) this.#publishAbandoned();
        void runner.cancel(id, STOPPED_BY_API);
      }
      // Claimed for this job by a load whose answer was lost: fetched and run on the next round.
      this.#adopt(adopt);
    }
    if (!complete) await this.#adoptUnknown(new Set(ids), askedUnder, signal);
  }

  /**
   * With more than one call's worth held, no cleanup call names everything: the job's triggers
   * are listed instead, page by page, and the ones this triggerer does not know are run.
   */
  async #adoptUnknown(known: ReadonlySet<string>, askedUnder: number, signal: AbortSignal): Promise<void> {
    const { client, epoch } = this.#options;
    let cursor: string | undefined;
    do {
      const page = await client.held(cursor, this.#callOptions(signal));
      if (askedUnder !== epoch()) return;
      this.#adopt(page.triggerIds.filter((id) => !known.has(id)));
      cursor = page.nextCursor;
    } while (cursor !== undefined);
  }

  /**
   * Held by this job but unknown here: run (fetched on the next round) as far as the capacity
   * allows, unless its report waits; the rest are found again by the next cleanup.
   */
  #adopt(ids: readonly string[]): void {
    if (ids.length === 0) return;
    const { runner, outbox } = this.#options;
    const waiting = new Set(this.#waiting.map((workload) => workload.trigger_id));
    let free = this.#free();
    for (const id of ids) {
      if (runner.has(id) || waiting.has(id) || this.#heldForReport.has(id) || this.#abandoned.has(id))
        continue;
      if (outbox.hasReport(id)) this.#heldForReport.add(id);
      else if (free > 0 && !this.#unfetched.has(id)) {
        this.#unfetched.add(id);
        free -= 1;
      }
    }
  }

  async #fetch(ids: string[], claimedUnder: number, signal: AbortSignal): Promise<void> {
    const { client, runner, outbox, epoch } = this.#options;
    for (let index = 0; index < ids.length; index += IDS_PER_CALL) {
      const chunk = ids.slice(index, index + IDS_PER_CALL);
      let answer: Awaited<ReturnType<ClaimsClient['workloads']>>;
      try {
        answer = await client.workloads(chunk, this.#callOptions(signal));
      } catch (error) {
        // Refused for good: asking again would be refused forever. The API hands them on when the job ends.
        if (isRefusal(error) && !signal.aborted) for (const id of chunk) this.#unfetched.delete(id);
        throw error;
      }
      if (claimedUnder !== epoch()) return;
      for (const id of chunk) this.#unfetched.delete(id);
      for (const id of answer.stop) void runner.cancel(id, STOPPED_BY_API);
      for (const workload of answer.workloads) {
        if (outbox.hasReport(workload.trigger_id)) this.#heldForReport.add(workload.trigger_id);
        else if (!runner.has(workload.trigger_id)) this.#waiting.push(workload);
      }
      this.#startWaiting();
    }
  }

  #startWaiting(): void {
    const { runner } = this.#options;
    while (this.#waiting.length > 0 && runner.capacityLeft > 0) {
      runner.start(this.#waiting.shift() as TriggerWorkload);
    }
  }

  #callOptions(signal: AbortSignal) {
    return { retry: { attempts: 1 }, timeoutMs: this.#options.callTimeoutMs, signal };
  }
}

import type { TriggerEventBody, TriggerEventOutcome, TriggerFailureBody } from '#contracts/triggers.ts';
import type { Logger } from '#engine/logger.ts';
import { isRetryable } from '#http/client.ts';
import { HttpAbortedError, HttpError } from '#http/errors.ts';
import type { Metrics } from '#metrics/port.ts';
import type { WorkerClock } from '#worker/clock.ts';
import type { TriggererClient } from './client.ts';
import { type Backoff, backoffDelay, isRefusal, messageOf, truncate, WarningThrottle } from './retry.ts';
import type { TriggerReports } from './runner.ts';

/**
 * What the API must learn from the triggers (events, failures, log chunks), kept until it did.
 * A transient failure (no answer, a timeout, 5xx, 408, 429) keeps the item and tries it again
 * after a backoff with jitter, while everything else goes on; so no event is lost while the
 * process lives. A refusal (another 4xx, or an answer that breaks the contract) is logged at
 * error level with the status and the API's detail, counted as `triggerer.reports_refused`, and
 * dropped: it would be refused forever. A 409 on a report (another triggerer holds the trigger
 * now) is expected after a takeover: dropped at info level; but a 409 to a report sent under a job
 * that has since been replaced goes again under the new one, which may hold the trigger now.
 */

export type OutboxClient = Pick<TriggererClient, 'event' | 'events' | 'failure' | 'logs' | 'job'>;

export interface OutboxOptions {
  client: OutboxClient;
  log: Logger;
  metrics?: Metrics | undefined;
  clock: WorkerClock;
  random: () => number;
  /** Backoff after a transient failure: a delay in [cap/2, cap], cap = min(max, base·2^(attempts-1)). */
  retry: Backoff;
  callTimeoutMs: number;
  /** Report calls sent at once. */
  maxInFlight: number;
  /**
   * Events one call carries at most (`POST /execution/triggers/events`); 1: each event on a call
   * of its own. Failures always go one a call.
   */
  eventsPerCall: number;
  /** Body bytes (serialized JSON) one call of events carries at most; one event always goes. */
  eventCallMaxBytes: number;
  /** Text bytes one logs call carries at most (at least one chunk goes). */
  logBatchMaxBytes: number;
  /** Log chunks kept waiting at most, in bytes: the oldest go first when the logs route is down long. */
  logBacklogMaxBytes: number;
  /** The job reports go out under now; undefined while it registers again (default: the client's). */
  currentJob?: (() => string | undefined) | undefined;
  /** A report dropped on a 409: the trigger may be this triggerer's again, to run anew. */
  onTakenOver?: ((triggerId: string) => void) | undefined;
  /** A trigger's failure report refused for what it says (400, 413, 422): it must not be run again here. */
  onRefused?: ((triggerId: string) => void) | undefined;
}

type FinalReport =
  | { kind: 'event'; triggerId: string; body: TriggerEventBody }
  | { kind: 'failure'; triggerId: string; body: TriggerFailureBody };

interface Pending<T> {
  item: T;
  attempts: number;
  dueAt: number;
  inFlight: boolean;
  /** An event sent on a call of its own, not in a batch: a batch carrying it was refused as a whole. */
  solo?: boolean;
  /** The event's bytes in a batch call's body, once measured. */
  bytes?: number;
  /** Sent once its trigger's log chunks waiting here are delivered (they were taken off it). */
  afterLog?: boolean;
}

interface LogItem {
  trigger_id: string;
  seq: number;
  text: string;
  bytes: number;
}

const LOG_CHUNKS_PER_CALL = 100;
/**
 * Batch calls of events in flight at once. Few, so that events due meanwhile gather into the next
 * call: under load a call carries up to `eventsPerCall` events, at rest each event goes at once.
 */
const EVENT_CALLS_IN_FLIGHT = 4;
const EVENTS_CALL = 'POST /execution/triggers/events';
/**
 * Refusals of a batch as a whole that say nothing of most of its events (one too large or
 * malformed, the body over the limit, the route missing): its events are sent one a call.
 */
const SEND_ALONE: ReadonlySet<number> = new Set([400, 404, 405, 413, 422]);

/** A batch call's body without its events: `{"events":[]}`. */
const EVENTS_BODY_BYTES = 13;
/**
 * How long events go one a call after the API answered the batch route with 404 or 405, before
 * a batch is tried again (the API may have been upgraded meanwhile).
 */
const BATCH_ROUTE_RECHECK_MS = 5 * 60_000;

/** An event as a batch call carries it. */
function batchItem(triggerId: string, body: TriggerEventBody) {
  return { trigger_id: triggerId, ...body };
}
/** Refusals of what a report says (malformed, too large, invalid), not of who sends it or where. */
const CONTENT_REFUSALS: ReadonlySet<number> = new Set([400, 413, 422]);
/** The failure body's limit on its error (the contract's). */
const FAILURE_MAX_CHARS = 10_000;

export class ReportOutbox implements TriggerReports {
  readonly #options: OutboxOptions;
  readonly #finals = new Map<string, Pending<FinalReport>>();
  #logs: LogItem[] = [];
  #logBytes = 0;
  #logAttempts = 0;
  #logDueAt = 0;
  /** Chunks at the head of `#logs` that a logs call in flight carries (0: none in flight). */
  #logsInFlight = 0;
  readonly #inFlight = new Set<Promise<void>>();
  /** Aborts the calls in flight (the drain's time is up, or the triggerer stops abruptly). */
  readonly #calls = new AbortController();
  #kick = new AbortController();
  /** Which kind of call goes first in the next round (see `#sendDue`). */
  #turn = 0;
  #refused = 0;
  /** Batch calls of events in flight. */
  #eventCalls = 0;
  /**
   * Until when (clock ms) events go one a call: the API answered the batch route with 404 or 405.
   * Cleared at the start of the round after it (`#sendDue`), not checked per report.
   */
  #batchRouteMissingUntil: number | undefined;
  /** A lower bound on a batch's body after the API refused one as too large, and until when. */
  #batchBytesCap: { bytes: number; until: number } | undefined;
  readonly #warnings: WarningThrottle;

  constructor(options: OutboxOptions) {
    this.#options = options;
    this.#warnings = new WarningThrottle(() => options.clock.now());
  }

  /** Reports waiting or in flight, and log chunks waiting. */
  get size(): { reports: number; logChunks: number } {
    return { reports: this.#finals.size, logChunks: this.#logs.length };
  }

  /** Reports the API refused (not counting 409 takeovers). */
  get refused(): number {
    return this.#refused;
  }

  /**
   * Whether the API is behind: more reports wait than one round of calls in flight carries (for
   * events in batches, the batch calls allowed at once, of `eventsPerCall` each). The count stops there, so
   * asking takes at most a round's worth of steps.
   */
  get backlogged(): boolean {
    const { maxInFlight, eventsPerCall } = this.#options;
    let alone = 0;
    let batched = 0;
    for (const pending of this.#finals.values()) {
      if (pending.inFlight) continue;
      if (this.#batched(pending)) batched += 1;
      else alone += 1;
      if (alone > maxInFlight || batched > this.#batchCallsAllowed * eventsPerCall) return true;
    }
    return false;
  }

  get empty(): boolean {
    return this.#finals.size === 0 && this.#logs.length === 0;
  }

  /** Whether the trigger's outcome waits here: it must not be run again meanwhile. */
  hasReport(triggerId: string): boolean {
    return this.#finals.has(triggerId);
  }

  event(triggerId: string, body: TriggerEventBody): void {
    this.#addFinal({ kind: 'event', triggerId, body });
  }

  failure(triggerId: string, body: TriggerFailureBody): void {
    this.#addFinal({ kind: 'failure', triggerId, body });
  }

  log(triggerId: string, chunk: { seq: number; text: string }): void {
    const bytes = Buffer.byteLength(chunk.text);
    this.#logs.push({ trigger_id: triggerId, seq: chunk.seq, text: chunk.text, bytes });
    this.#logBytes += bytes;
    let dropped = 0;
    // The chunks in flight (at the head) stay: their answer removes them.
    const keep = this.#logsInFlight;
    while (this.#logBytes > this.#options.logBacklogMaxBytes && this.#logs.length > keep + 1) {
      const [oldest] = this.#logs.splice(keep, 1);
      this.#logBytes -= oldest?.bytes ?? 0;
      dropped += 1;
    }
    if (dropped > 0) {
      this.#options.metrics?.increment('triggerer.log_chunks_dropped', dropped);
      this.#warn(
        'outbox',
        'Trigger log chunks waiting for the API exceed the backlog limit: the oldest are dropped',
        {
          dropped,
        },
      );
    }
    this.#wake();
  }

  /** Sends what is due until `signal` aborts; calls in flight then go on (see `drain`). */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.#sendDue();
      await this.#waitForWork(signal, Number.POSITIVE_INFINITY);
    }
  }

  /** On a graceful stop: sends until nothing is left or `deadline` (clock ms), then abandons the rest. */
  async drain(deadline: number): Promise<void> {
    const { clock } = this.#options;
    const never = new AbortController().signal;
    while (!this.empty && clock.now() < deadline) {
      this.#sendDue();
      await this.#waitForWork(never, deadline);
    }
    this.abandon();
    await Promise.all(this.#inFlight);
  }

  /** Stops every call in flight; what is left is lost with the process. */
  abandon(): void {
    this.#calls.abort('The triggerer is stopping');
    this.#wake();
  }

  #addFinal(report: FinalReport): void {
    // One outcome per trigger: a second run of it (taken back after a takeover) is a duplicate.
    if (this.#finals.has(report.triggerId)) return;
    this.#finals.set(report.triggerId, { item: report, attempts: 0, dueAt: 0, inFlight: false });
    this.#wake();
  }

  /**
   * Starts the calls that are due: reports sent alone (failures, single events), the logs, and
   * batches of events, taking turns at going first (the kind after the last that went first), so
   * that with few calls allowed a stream of one kind cannot keep the others from going.
   */
  #sendDue(): void {
    const now = this.#options.clock.now();
    if (this.#batchRouteMissingUntil !== undefined && this.#batchRouteMissingUntil <= now)
      this.#batchRouteMissingUntil = undefined;
    const senders = [
      () => this.#sendAlone(now),
      () => this.#sendLogsIfDue(now),
      () => this.#sendEventBatches(now),
    ];
    let first: number | undefined;
    for (let step = 0; step < senders.length; step += 1) {
      const kind = (this.#turn + step) % senders.length;
      if (senders[kind]?.() && first === undefined) first = kind;
    }
    if (first !== undefined) this.#turn = (first + 1) % senders.length;
  }

  /** Starts the due reports that go on calls of their own; whether it started any. */
  #sendAlone(now: number): boolean {
    let started = false;
    for (const pending of this.#finals.values()) {
      if (this.#inFlight.size >= this.#options.maxInFlight) break;
      if (pending.inFlight || pending.dueAt > now || this.#batched(pending) || this.#waitsForLog(pending))
        continue;
      this.#track(this.#sendFinal(pending));
      started = true;
    }
    return started;
  }

  #sendLogsIfDue(now: number): boolean {
    if (
      this.#logsInFlight > 0 ||
      this.#logs.length === 0 ||
      this.#logDueAt > now ||
      this.#inFlight.size >= this.#options.maxInFlight
    ) {
      return false;
    }
    this.#track(this.#sendLogs());
    return true;
  }

  /**
   * Whether the report waits for its trigger's log chunks to be delivered first: once its trigger
   * is gone (the report applied), the API has nothing to file them under.
   */
  #waitsForLog(pending: Pending<FinalReport>): boolean {
    if (!pending.afterLog) return false;
    const { triggerId } = pending.item;
    if (this.#logs.some((chunk) => chunk.trigger_id === triggerId)) return true;
    pending.afterLog = false;
    return false;
  }

  #track(call: Promise<void>): void {
    this.#inFlight.add(call);
    void call.finally(() => {
      this.#inFlight.delete(call);
      this.#wake();
    });
  }

  /** The job reports go out under now. */
  #currentJob(): string | undefined {
    return (this.#options.currentJob ?? (() => this.#options.client.job?.jobId))();
  }

  /** Whether the report goes in a batch of events rather than a call of its own. */
  #batched(pending: Pending<FinalReport>): boolean {
    return (
      pending.item.kind === 'event' &&
      !pending.solo &&
      this.#options.eventsPerCall > 1 &&
      this.#batchRouteMissingUntil === undefined
    );
  }

  /**
   * Batch calls of events in flight at most: EVENT_CALLS_IN_FLIGHT, with one report call left for
   * failures and events sent alone, so a stream of events cannot starve them.
   */
  get #batchCallsAllowed(): number {
    return Math.min(EVENT_CALLS_IN_FLIGHT, Math.max(1, this.#options.maxInFlight - 1));
  }

  /** Starts batch calls of the events that are due, up to EVENT_CALLS_IN_FLIGHT of them; whether it started any. */
  #sendEventBatches(now: number): boolean {
    const { eventsPerCall, maxInFlight } = this.#options;
    const maxBytes = this.#batchMaxBytes(now);
    let started = false;
    while (this.#eventCalls < this.#batchCallsAllowed && this.#inFlight.size < maxInFlight) {
      const batch: Pending<FinalReport>[] = [];
      let bytes = EVENTS_BODY_BYTES;
      for (const pending of this.#finals.values()) {
        if (batch.length >= eventsPerCall) break;
        const { item } = pending;
        if (
          pending.inFlight ||
          pending.dueAt > now ||
          item.kind !== 'event' ||
          !this.#batched(pending) ||
          this.#waitsForLog(pending)
        ) {
          continue;
        }
        // Measured as sent, escapes included, plus the comma before it.
        pending.bytes ??= Buffer.byteLength(JSON.stringify(batchItem(item.triggerId, item.body))) + 1;
        if (batch.length > 0 && bytes + pending.bytes > maxBytes) break;
        batch.push(pending);
        bytes += pending.bytes;
      }
      if (batch.length === 0) return started;
      for (const pending of batch) pending.inFlight = true;
      this.#eventCalls += 1;
      this.#track(this.#sendEvents(batch, bytes));
      started = true;
    }
    return started;
  }

  /** The bound on a batch's body now: the setting's, or lower for a while after a 413. */
  #batchMaxBytes(now: number): number {
    const cap = this.#batchBytesCap;
    // Half a batch that was within the setting's bound: always the lower of the two.
    if (cap !== undefined && cap.until > now) return cap.bytes;
    this.#batchBytesCap = undefined;
    return this.#options.eventCallMaxBytes;
  }

  async #sendEvents(batch: Pending<FinalReport>[], bytes: number): Promise<void> {
    const { client, callTimeoutMs } = this.#options;
    const options = { retry: { attempts: 1 }, timeoutMs: callTimeoutMs, signal: this.#calls.signal };
    const sentUnder = this.#currentJob();
    try {
      const events = batch.flatMap(({ item }) =>
        item.kind === 'event' ? [batchItem(item.triggerId, item.body)] : [],
      );
      const answer = await client.events(events, options);
      const results = new Map(answer.map((result) => [result.trigger_id, result]));
      const sent = new Set(events.map((event) => event.trigger_id));
      const unknown = answer.filter((result) => !sent.has(result.trigger_id)).length;
      if (unknown > 0 || results.size !== answer.length) {
        this.#warn(
          'batch-answer',
          'The answer to a batch of trigger events names triggers it did not carry, or one twice',
          {
            events: events.length,
            results: answer.length,
            unknown,
          },
        );
      }
      for (const pending of batch) {
        const result = results.get(pending.item.triggerId);
        if (result !== undefined && 'outcome' in result) this.#delivered(pending, result.outcome);
        else {
          // An event the answer left out goes alone next time, where the answer is its own.
          if (result === undefined) pending.solo = true;
          const error =
            result === undefined
              ? new HttpError(EVENTS_CALL, 200, 'the answer had no result for this trigger', true)
              : new HttpError(EVENTS_CALL, result.status, result.detail, isRetryable(result.status));
          this.#undelivered(pending, error, sentUnder);
        }
      }
    } catch (error) {
      if (isRefusal(error) && (SEND_ALONE.has(error.status) || error.status < 300)) {
        // Too large or refused as a whole for one event's content: each goes on its own call, whose
        // answer is that event's; an API without this route (an older version) gets single calls;
        // an answer that could not be read says nothing of any event.
        if (error.status === 404 || error.status === 405) this.#noBatchRoute(error);
        else if (error.status === 413 && batch.length > 1) this.#batchTooLarge(batch.length, bytes, error);
        else if (error.status < 300) {
          this.#warn(
            'batch-answer',
            'The answer to a batch of trigger events could not be read: its events go one a call',
            {
              events: batch.length,
              detail: error.detail,
            },
          );
        }
        for (const pending of batch) pending.solo = true;
        return;
      }
      for (const pending of batch) this.#undelivered(pending, error, sentUnder);
    } finally {
      this.#eventCalls -= 1;
      for (const pending of batch) pending.inFlight = false;
    }
  }

  /**
   * A batch within this triggerer's bound refused as too large: the API's limit is lower. Batches
   * are kept to half the refused size for BATCH_ROUTE_RECHECK_MS, so the next ones fit.
   */
  #batchTooLarge(events: number, bytes: number, error: HttpError): void {
    const now = this.#options.clock.now();
    const cap = Math.max(1, Math.floor(bytes / 2));
    this.#batchBytesCap = { bytes: cap, until: now + BATCH_ROUTE_RECHECK_MS };
    this.#options.metrics?.increment('triggerer.event_batches_too_large');
    this.#warn(
      'batch-too-large',
      `The Execution API refused a batch of trigger events of ${bytes} bytes as too large (this triggerer's bound: ${this.#options.eventCallMaxBytes}, from UPDRAFT_REQUEST_MAX_BYTES): its events go one a call, and batches stay under ${cap} bytes for 5 minutes. Is UPDRAFT_REQUEST_MAX_BYTES smaller on the API than here?`,
      { events, bytes, detail: error.detail },
    );
  }

  #noBatchRoute(error: HttpError & { status: number }): void {
    if (this.#batchRouteMissingUntil !== undefined) return;
    this.#batchRouteMissingUntil = this.#options.clock.now() + BATCH_ROUTE_RECHECK_MS;
    this.#options.log.warn(
      'The Execution API has no batch route for trigger events (an older version): each event goes on a call of its own for the next 5 minutes',
      { status: error.status, detail: error.detail },
    );
  }

  async #sendFinal(pending: Pending<FinalReport>): Promise<void> {
    const { client, callTimeoutMs } = this.#options;
    const report = pending.item;
    pending.inFlight = true;
    const options = { retry: { attempts: 1 }, timeoutMs: callTimeoutMs, signal: this.#calls.signal };
    const sentUnder = this.#currentJob();
    try {
      const outcome =
        report.kind === 'event'
          ? await client.event(report.triggerId, report.body, options)
          : await client.failure(report.triggerId, report.body, options);
      this.#delivered(pending, outcome);
    } catch (error) {
      this.#undelivered(pending, error, sentUnder);
    } finally {
      pending.inFlight = false;
    }
  }

  /** The API answered the report: it is done with. */
  #delivered(pending: Pending<FinalReport>, outcome: TriggerEventOutcome): void {
    const report = pending.item;
    this.#finals.delete(report.triggerId);
    this.#options.metrics?.increment(`triggerer.reports_${outcome}`);
    if (outcome === 'stale') {
      this.#options.log.info(`The ${report.kind} of trigger ${report.triggerId} was not needed`, {
        triggerId: report.triggerId,
        detail:
          'the task no longer waits on this deferral: applied already (an answer lost on the way), timed out, cleared or ended',
      });
    }
  }

  /**
   * The report was not taken: kept and sent again after a backoff (transient), sent again under a
   * new job (409 to a job replaced since), turned into a failure (an event refused for its
   * content), or dropped (refused).
   */
  #undelivered(pending: Pending<FinalReport>, error: unknown, sentUnder: string | undefined): void {
    const report = pending.item;
    const jobNow = this.#currentJob();
    if (
      error instanceof HttpError &&
      error.status === 409 &&
      (jobNow === undefined || jobNow !== sentUnder)
    ) {
      // Refused to a job that is lost or replaced since: the next job may hold the trigger again.
      pending.attempts += 1;
      pending.dueAt =
        this.#options.clock.now() +
        backoffDelay(this.#options.retry, pending.attempts, this.#options.random());
      return;
    }
    const contentRefused = isRefusal(error) && CONTENT_REFUSALS.has(error.status);
    if (report.kind === 'event' && contentRefused && error.status === 413 && report.body.log) {
      // Its log chunk may be what made it too large: the chunk goes on the logs route, and the
      // event again without it once the chunk is delivered (after the event, the chunk would
      // find its trigger gone).
      const { log, ...body } = report.body;
      this.log(report.triggerId, log);
      pending.item = { kind: 'event', triggerId: report.triggerId, body };
      pending.afterLog = true;
      delete pending.bytes;
      pending.attempts = 0;
      pending.dueAt = 0;
      return;
    }
    if (report.kind === 'event' && contentRefused) {
      // An event the API will never take (too large, malformed): the task fails with the reason
      // (its retries apply, as after any trigger failure) rather than wait for its timeout.
      this.#refusedReport(report.kind, report.triggerId, error);
      const { log } = report.body;
      pending.item = {
        kind: 'failure',
        triggerId: report.triggerId,
        body: {
          error: truncate(
            `its event was refused by the Execution API: ${error.status} ${error.detail}`,
            FAILURE_MAX_CHARS,
          ),
          ...(log ? { log } : {}),
        },
      };
      pending.attempts = 0;
      pending.dueAt = 0;
      return;
    }
    this.#failed(error, `the ${report.kind} of trigger ${report.triggerId}`, pending, () => {
      this.#finals.delete(report.triggerId);
      if (error instanceof HttpError && error.status === 409) this.#options.onTakenOver?.(report.triggerId);
      // A failure refused for what it says would be refused again: the trigger is not run again
      // under the job that sent it. Other refusals (auth, a gone route) may pass another time.
      else if (report.kind === 'failure' && contentRefused && this.#currentJob() === sentUnder)
        this.#options.onRefused?.(report.triggerId);
    });
  }

  async #sendLogs(): Promise<void> {
    const { client, callTimeoutMs, logBatchMaxBytes } = this.#options;
    const batch: LogItem[] = [];
    let bytes = 0;
    for (const item of this.#logs) {
      if (batch.length >= LOG_CHUNKS_PER_CALL || (batch.length > 0 && bytes + item.bytes > logBatchMaxBytes))
        break;
      batch.push(item);
      bytes += item.bytes;
    }
    this.#logsInFlight = batch.length;
    const remove = () => {
      this.#logs.splice(0, batch.length);
      this.#logBytes -= bytes;
    };
    const pending = { attempts: this.#logAttempts, dueAt: 0 };
    try {
      await client.logs(
        { chunks: batch.map(({ trigger_id, seq, text }) => ({ trigger_id, seq, text })) },
        { retry: { attempts: 1 }, timeoutMs: callTimeoutMs, signal: this.#calls.signal },
      );
      remove();
      this.#logAttempts = 0;
    } catch (error) {
      this.#failed(error, `${batch.length} trigger log chunk(s)`, pending, remove, { goneIsExpected: true });
      this.#logAttempts = pending.attempts;
      this.#logDueAt = pending.dueAt;
    } finally {
      this.#logsInFlight = 0;
    }
  }

  /**
   * A failed call: kept for later when transient, dropped (and said so) when refused. A 409 (and a
   * 404 when `goneIsExpected`: log chunks of a trigger that ended) is a takeover, not a fault.
   */
  #failed(
    error: unknown,
    what: string,
    pending: { attempts: number; dueAt: number },
    drop: () => void,
    options: { goneIsExpected?: boolean } = {},
  ): void {
    const { log, metrics, clock } = this.#options;
    if (error instanceof HttpAbortedError) return;
    if (isRefusal(error)) {
      drop();
      if (error.status === 409 || (error.status === 404 && options.goneIsExpected)) {
        log.info(
          `Dropped ${what}: another triggerer holds it now, or it ended (${error.status} ${error.detail})`,
        );
        return;
      }
      this.#refusedReport(what, undefined, error, 'It is dropped');
      return;
    }
    pending.attempts += 1;
    pending.dueAt = clock.now() + backoffDelay(this.#options.retry, pending.attempts, this.#options.random());
    metrics?.increment('triggerer.reports_retried');
    this.#warn('outbox', `Could not send ${what}; it is kept and sent again`, {
      attempts: pending.attempts,
      error: messageOf(error),
    });
  }

  /** A refusal: logged at error level with the API's answer, and counted. */
  #refusedReport(
    what: string,
    triggerId: string | undefined,
    error: HttpError & { status: number },
    then = 'The task is failed with that reason instead',
  ): void {
    this.#refused += 1;
    this.#options.metrics?.increment('triggerer.reports_refused');
    const subject = triggerId === undefined ? what : `the ${what} of trigger ${triggerId}`;
    this.#options.log.error(
      `The Execution API refused ${subject}: ${error.status} ${error.detail}. ${then}`,
      {
        status: error.status,
        detail: error.detail,
      },
    );
  }

  /** Sleeps until new work, a call's end, the next due item, `deadline` or `signal`. */
  async #waitForWork(signal: AbortSignal, deadline: number): Promise<void> {
    const { clock } = this.#options;
    const now = clock.now();
    let wakeAt = deadline;
    if (this.#logs.length > 0 && this.#logsInFlight === 0) wakeAt = Math.min(wakeAt, this.#logDueAt);
    // Events that wait for a batch call to end are woken by that call's end.
    const batchesFull = this.#eventCalls >= this.#batchCallsAllowed;
    for (const pending of this.#finals.values()) {
      // One waiting for its log chunks is woken by the logs call's end.
      if (!pending.inFlight && !(batchesFull && this.#batched(pending)) && !this.#waitsForLog(pending))
        wakeAt = Math.min(wakeAt, pending.dueAt);
    }
    if (wakeAt <= now && this.#inFlight.size < this.#options.maxInFlight) return;
    // Everything due is in flight: a call's end wakes the loop.
    const waitMs = Number.isFinite(wakeAt) && wakeAt > now ? wakeAt - now : 60_000;
    const kick = this.#kick;
    await clock.sleep(waitMs, AbortSignal.any([kick.signal, signal]));
    if (kick.signal.aborted && this.#kick === kick) this.#kick = new AbortController();
  }

  #wake(): void {
    this.#kick.abort();
  }

  /** A warning, at most one per `topic` per throttle interval. */
  #warn(topic: string, message: string, fields: Record<string, unknown>): void {
    if (this.#warnings.allows(topic)) this.#options.log.warn(message, fields);
  }
}

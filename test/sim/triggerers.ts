import type { Settings } from '#config/settings.ts';
import { TRIGGER_EVENT_TYPES, type TriggerEventOutcome, type TriggerEventType } from '#contracts/triggers.ts';
import type { TimerHost } from '#triggerer/timers.ts';
import type { Triggerer } from '#triggerer/triggerer.ts';
import type { CallbackExecutor } from '#worker/callback-pool.ts';
import { createTriggerer, triggererCredential } from './engine.ts';
import type { TriggererFaults } from './faults.ts';
import { type Actor, type Kernel, SimFailure } from './kernel.ts';
import type { Ledger, TriggerAnswer } from './ledger.ts';
import type { Prng } from './prng.ts';

/**
 * The triggerers: actors running the real `Triggerer` on the sim clock, whose calls reach the API
 * through the world's fetch (503s before the router, connections dropped after it) and through
 * faults of their own: heartbeats lost for a while (the job is found dead, its triggers taken over
 * while it still runs them), event calls held back or sent twice, triggerers stopped (mostly not
 * gracefully: no `complete`, so their claims move on only after the heartbeat timeout) and
 * replaced a little later. The answers of the event and failure routes go to the ledger.
 */

/** The world's fetch: `observe` sees every answer that left the router, with the API invocation's actor. */
export type SimFetch = (
  request: Request,
  observe?: (status: number, requestText: string, responseText: string, apiActor: string) => void,
) => Promise<Response>;

export interface SimTriggerersDeps {
  kernel: Kernel;
  prng: Prng;
  ledger: Ledger;
  settings: Settings;
  fetch: SimFetch;
  faults(): TriggererFaults;
  /** Called with each trigger answer as it leaves the router (its store writes are all done). */
  onAnswer(answer: TriggerAnswer): void;
  /** Runs the callbacks the triggerers claim. */
  callbackExecutor: CallbackExecutor;
}

interface Slot {
  name: string;
  triggerer: Triggerer;
  actor: Actor;
  stopped: boolean;
  /** Heartbeats sent before this sim time are lost. */
  heartbeatsLostUntil: number;
  /** Called when the triggerer's actor is killed (its `run()` then never ends). */
  died: () => void;
  /** Resolves when it is. */
  dead: Promise<void>;
}

const TRIGGER_REPORT = /^\/execution\/triggers\/([^/]+)\/(event|failure)$/;
const TRIGGER_EVENTS = '/execution/triggers/events';
const JOB_HEARTBEAT = /^\/execution\/jobs\/[^/]+\/heartbeat$/;

export class SimTriggerers {
  readonly #deps: SimTriggerersDeps;
  readonly #slots: Slot[] = [];
  #credential: Promise<string> | undefined;
  started = 0;
  stops = 0;
  heartbeatsLost = 0;
  eventsDuplicated = 0;
  eventsDelayed = 0;
  /** Answers other than 200 to the triggerers' calls, by route and status (409: a job lost, a trigger taken). */
  readonly refusals: Record<string, number> = {};

  constructor(deps: SimTriggerersDeps) {
    this.#deps = deps;
  }

  live(): number {
    return this.#slots.filter((slot) => !slot.stopped && !slot.actor.done).length;
  }

  /** A new triggerer process, registering its job and running until stopped. */
  start(): void {
    const { kernel } = this.#deps;
    const name = `triggerer-${++this.started}`;
    const slot = { name, stopped: false, heartbeatsLostUntil: 0 } as Slot;
    slot.dead = new Promise<void>((resolve) => {
      slot.died = resolve;
    });
    this.#credential ??= triggererCredential(kernel.now);
    const { actor } = kernel.spawn('triggerer', async () => {
      slot.triggerer = createTriggerer({
        fetch: (request) => this.#fetch(slot, request),
        clock: {
          now: () => kernel.now,
          sleep: (ms, signal) => kernel.sleep(ms, signal).catch(() => undefined),
        },
        timerHost: this.#timerHost(),
        random: () => this.#deps.prng.next(),
        settings: this.#deps.settings,
        hostname: name,
        credential: await (this.#credential as Promise<string>),
        callbackExecutor: this.#deps.callbackExecutor,
      });
      kernel.log(`${name} starts`);
      // The real program exits when `run()` ends on its own (and is restarted): a failure here.
      const ended = await slot.triggerer.run().then(
        () => 'without an error',
        (error: unknown) => `with ${(error as Error).message}`,
      );
      if (!slot.stopped) kernel.fail(new SimFailure('9-triggerer', `${name} ended on its own, ${ended}`));
      kernel.log(`${name} ended`);
    });
    slot.actor = actor;
    this.#slots.push(slot);
  }

  /** Stops a running triggerer (graceful or not, as the faults draw), and starts another later. */
  async stopOne(): Promise<void> {
    const { kernel, prng } = this.#deps;
    const running = this.#slots.filter((slot) => !slot.stopped && !slot.actor.done && slot.triggerer);
    if (running.length === 0) return;
    const slot = prng.pick(running);
    const graceful = prng.chance(this.#deps.faults().graceful);
    slot.stopped = true;
    this.stops++;
    kernel.log(`${slot.name} stopped (${graceful ? 'graceful' : 'crash: no complete'})`);
    // A callback attempt's fault may kill the triggerer while it stops: its stop never ends then.
    await Promise.race([slot.triggerer.stop({ graceful }), slot.dead]);
    await kernel.sleep(prng.range(1_000, 10_000));
    this.start();
  }

  /**
   * A triggerer's actor was killed (a callback attempt's fault crashed the process): it is
   * replaced a little later, as a crashed triggerer task is restarted.
   */
  killed(actor: Actor): void {
    const slot = this.#slots.find((candidate) => candidate.actor === actor);
    slot?.died();
    if (!slot || slot.stopped) return;
    const { kernel, prng } = this.#deps;
    slot.stopped = true;
    this.stops++;
    kernel.spawn('triggerer-restart', async () => {
      await kernel.sleep(prng.range(1_000, 10_000));
      this.start();
    });
  }

  /** The heal phase: a triggerer must run, so deferred task instances can resume. */
  heal(): void {
    if (this.live() === 0) this.start();
  }

  /** At the end of a simulation: no triggerer outlives its world. */
  stopAll(): void {
    for (const slot of this.#slots) {
      slot.stopped = true;
      if (slot.triggerer) void slot.triggerer.stop({ graceful: false });
    }
  }

  /** The one timer of a triggerer's trigger timers, on the sim clock. */
  #timerHost(): TimerHost {
    const { kernel } = this.#deps;
    return {
      setTimeout: (callback, ms) => {
        const cancel = new AbortController();
        kernel.sleep(ms, cancel.signal).then(callback, () => undefined);
        return cancel;
      },
      clearTimeout: (handle) => (handle as AbortController).abort(),
    };
  }

  async #fetch(slot: Slot, request: Request): Promise<Response> {
    const { kernel, prng } = this.#deps;
    const faults = this.#deps.faults();
    const path = new URL(request.url).pathname;
    if (JOB_HEARTBEAT.test(path) && this.#heartbeatLost(slot, faults)) {
      this.heartbeatsLost++;
      kernel.log(`${slot.name} POST ${path} lost (sim, before the router)`);
      throw new TypeError('sim: the heartbeat was lost on the way');
    }
    const report = TRIGGER_REPORT.exec(path);
    const route = path.replace(
      /^\/execution\/(jobs|triggers)\/[^/]+\/(heartbeat|complete|event|failure)$/,
      '$1/$2',
    );
    const count = (status: number) => {
      if (status !== 200 && status !== 201)
        this.refusals[`${route} ${status}`] = (this.refusals[`${route} ${status}`] ?? 0) + 1;
    };
    if (!report && path !== TRIGGER_EVENTS) return this.#deps.fetch(request, count);
    const requestText = await request.clone().text();
    if (prng.chance(faults.delayEvent)) {
      const delayMs = prng.range(1, faults.delayEventMaxMs);
      this.eventsDelayed++;
      kernel.log(`${slot.name} POST ${path} held back ${delayMs}ms (sim)`);
      await kernel.sleep(delayMs);
    }
    const answered = (answer: Omit<TriggerAnswer, 'atMs'>) => {
      this.#deps.ledger.triggerAnswers.push({ ...answer, atMs: kernel.now });
      this.#deps.onAnswer(this.#deps.ledger.triggerAnswers.at(-1) as TriggerAnswer);
    };
    const observe = (status: number, _request: string, responseText: string, apiActor: string) => {
      count(status);
      if (status !== 200) return;
      if (!report) {
        // A batch of events: each result is that event's answer, as the single route's would be.
        const sent = (JSON.parse(requestText) as { events: { trigger_id: string; type?: string }[] }).events;
        const { results } = JSON.parse(responseText) as {
          results: { trigger_id: string; outcome?: TriggerEventOutcome; status?: number }[];
        };
        for (const [index, result] of results.entries()) {
          if (result.outcome === undefined) {
            count(result.status ?? 0);
            continue;
          }
          const type = eventTypeOf(JSON.stringify(sent[index] ?? {}));
          answered({
            triggerId: result.trigger_id,
            route: 'event',
            ...(type ? { type } : {}),
            outcome: result.outcome,
            apiActor,
            batch: sent.map((event) => event.trigger_id),
          });
        }
        return;
      }
      const [, triggerId, kind] = report as unknown as [string, string, 'event' | 'failure'];
      const { outcome } = JSON.parse(responseText) as { outcome: TriggerEventOutcome };
      const type = kind === 'event' ? eventTypeOf(requestText) : undefined;
      answered({ triggerId, route: kind, ...(type ? { type } : {}), outcome, apiActor });
    };
    if (prng.chance(faults.duplicateEvent)) {
      const delayMs = prng.range(0, 3_000);
      this.eventsDuplicated++;
      const copy = () =>
        new Request(request.url, { method: request.method, headers: request.headers, body: requestText });
      kernel.spawn('resend', async () => {
        await kernel.sleep(delayMs);
        kernel.log(`${slot.name} POST ${path} sent again (sim duplicate)`);
        await this.#deps.fetch(copy(), observe).catch(() => undefined);
      });
    }
    return this.#deps.fetch(request, observe);
  }

  /** Lost while a blackout lasts; a heartbeat may start one (only while faults are on). */
  #heartbeatLost(slot: Slot, faults: TriggererFaults): boolean {
    const { kernel, prng } = this.#deps;
    if (faults.heartbeatLoss === 0) return false;
    if (kernel.now < slot.heartbeatsLostUntil) return true;
    if (!prng.chance(faults.heartbeatLoss)) return false;
    slot.heartbeatsLostUntil = kernel.now + prng.range(1_000, faults.heartbeatLossMaxMs);
    return true;
  }
}

function eventTypeOf(requestText: string): TriggerEventType | undefined {
  const type = (JSON.parse(requestText) as { type?: string }).type;
  return (TRIGGER_EVENT_TYPES as readonly string[]).includes(type ?? '')
    ? (type as TriggerEventType)
    : undefined;
}

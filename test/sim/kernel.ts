import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The simulation kernel: actors, gates and the sim clock. Every store call an actor makes waits
 * at a gate; the kernel lets exactly one gate through at a time, chosen by the world with the
 * seeded PRNG, and waits for quiescence (every actor parked at a gate, a sleep, or done) before
 * the next choice. With one store call in flight at a time, a seed replays exactly.
 */

export interface Actor {
  readonly id: number;
  readonly kind: string;
  readonly name: string;
  alive: boolean;
  done: boolean;
}

export interface Gate {
  readonly seq: number;
  readonly actor: Actor;
  readonly label: string;
  /** Sim time before which the gate may not pass (a slow store call). */
  readonly readyAt: number;
  readonly isWrite: boolean;
  release(): void;
}

interface Sleeper {
  seq: number;
  actor: Actor | undefined;
  wakeAt: number;
  resolve(): void;
}

/** An invariant broke: the run stops, the CLI prints the seed, this, and the trace tail. */
export class SimFailure extends Error {
  override name = 'SimFailure';
  readonly invariant: string;
  constructor(invariant: string, message: string) {
    super(`[${invariant}] ${message}`);
    this.invariant = invariant;
  }
}

const STABLE_PASSES = 3;
const QUIESCENCE_LIMIT_MS = 15_000;
const never = <T>(): Promise<T> => new Promise<T>(() => {});

export class Kernel {
  now: number;
  readonly startMs: number;
  step = 0;
  readonly #context = new AsyncLocalStorage<Actor>();
  readonly #gates: Gate[] = [];
  readonly #sleepers: Sleeper[] = [];
  #executing = 0;
  #activity = 0;
  #seq = 0;
  #nextActorId = 1;
  readonly #trace: string[] = [];
  readonly #verbose: boolean;
  readonly errors: { actor: string; error: unknown }[] = [];
  readonly failures: SimFailure[] = [];
  readonly #live = new Set<Actor>();

  constructor(startMs: number, options: { verbose?: boolean } = {}) {
    this.now = startMs;
    this.startMs = startMs;
    this.#verbose = options.verbose ?? false;
  }

  current(): Actor | undefined {
    return this.#context.getStore();
  }

  /** Runs `work` as a new actor; its store calls and sleeps are gated. Errors are recorded, not thrown. */
  spawn<T>(
    kind: string,
    work: (actor: Actor) => Promise<T>,
  ): { actor: Actor; result: Promise<T | undefined> } {
    const id = this.#nextActorId++;
    const actor: Actor = { id, kind, name: `${kind}#${id}`, alive: true, done: false };
    this.#activity++;
    this.#live.add(actor);
    const result = this.#context.run(actor, async () => {
      try {
        return await work(actor);
      } catch (error) {
        if (error instanceof SimFailure) this.fail(error);
        else this.errors.push({ actor: actor.name, error });
        this.log(`${actor.name} threw: ${(error as Error).message ?? String(error)}`);
        return undefined;
      } finally {
        actor.done = true;
        this.#activity++;
      }
    });
    return { actor, result };
  }

  /**
   * Parks the calling actor until the world releases this gate; returns the function to call when
   * the gated work has settled. A dead actor never passes.
   */
  async gate(label: string, options: { delayMs?: number; isWrite?: boolean } = {}): Promise<() => void> {
    const actor = this.current();
    if (!actor) throw new Error(`a store call outside any actor: ${label}`);
    if (!actor.alive) return never();
    await new Promise<void>((resolve) => {
      this.#gates.push({
        seq: ++this.#seq,
        actor,
        label,
        readyAt: this.now + (options.delayMs ?? 0),
        isWrite: options.isWrite ?? false,
        release: resolve,
      });
      this.#activity++;
    });
    let settled = false;
    return () => {
      if (settled) return;
      settled = true;
      this.#executing--;
      this.#activity++;
    };
  }

  /** Waits `ms` of sim time; rejects when `signal` aborts. A dead actor never wakes. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    const actor = this.current();
    if (actor && !actor.alive) return never();
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<void>((resolve, reject) => {
      const sleeper: Sleeper = { seq: ++this.#seq, actor, wakeAt: this.now + Math.max(0, ms), resolve };
      const onAbort = () => {
        const index = this.#sleepers.indexOf(sleeper);
        if (index >= 0) this.#sleepers.splice(index, 1);
        this.#activity++;
        reject(abortError(signal as AbortSignal));
      };
      sleeper.resolve = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#sleepers.push(sleeper);
      this.#activity++;
    });
  }

  /** The actor stops where it is: its gates and sleeps are dropped and never resume. */
  kill(actor: Actor, why: string): void {
    if (!actor.alive) return;
    actor.alive = false;
    for (let i = this.#gates.length - 1; i >= 0; i--)
      if (this.#gates[i]?.actor === actor) this.#gates.splice(i, 1);
    for (let i = this.#sleepers.length - 1; i >= 0; i--)
      if (this.#sleepers[i]?.actor === actor) this.#sleepers.splice(i, 1);
    this.#activity++;
    this.log(`${actor.name} killed: ${why}`);
  }

  /** Resolves with `value` only while the calling actor lives: a dead actor does nothing more. */
  async whileAlive<T>(promise: Promise<T>): Promise<T> {
    const actor = this.current();
    const value = await promise;
    if (actor && !actor.alive) return never();
    return value;
  }

  /** Records a broken invariant (once per invariant); the world stops at the next step. */
  fail(failure: SimFailure): void {
    if (this.failures.some((known) => known.invariant === failure.invariant)) return;
    this.failures.push(failure);
    this.log(`FAILURE ${failure.message}`);
  }

  /** Tracks spawned actors so the world can tell when only its drivers remain. */
  hasLiveActors(matching: (actor: Actor) => boolean): boolean {
    for (const actor of this.#live) {
      if (!actor.alive || actor.done) this.#live.delete(actor);
      else if (matching(actor)) return true;
    }
    return false;
  }

  touch(): void {
    this.#activity++;
  }

  /** Waits until no store call is in flight and nothing moved for a few event-loop turns. */
  async quiesce(): Promise<void> {
    const deadline = performance.now() + QUIESCENCE_LIMIT_MS;
    let stable = 0;
    let last = -1;
    for (;;) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.#executing === 0 && this.#activity === last) {
        stable++;
        if (stable >= STABLE_PASSES) return;
      } else {
        stable = 0;
        last = this.#activity;
      }
      if (performance.now() > deadline) {
        throw new SimFailure(
          'harness',
          `no quiescence after ${QUIESCENCE_LIMIT_MS} ms (store calls in flight: ${this.#executing}); something waits on a real timer or I/O`,
        );
      }
    }
  }

  eligibleGates(): Gate[] {
    return this.#gates.filter((gate) => gate.readyAt <= this.now);
  }

  pendingGates(): readonly Gate[] {
    return this.#gates;
  }

  release(gate: Gate): void {
    const index = this.#gates.indexOf(gate);
    if (index < 0) throw new Error('releasing an unknown gate');
    this.#gates.splice(index, 1);
    this.#executing++;
    this.#activity++;
    this.step++;
    this.log(`${gate.actor.name} ${gate.label}`);
    gate.release();
  }

  /** The next sim time something is due: a sleeper or a slow gate. */
  nextDueAt(): number | undefined {
    let next: number | undefined;
    for (const sleeper of this.#sleepers)
      if (next === undefined || sleeper.wakeAt < next) next = sleeper.wakeAt;
    for (const gate of this.#gates)
      if (gate.readyAt > this.now && (next === undefined || gate.readyAt < next)) next = gate.readyAt;
    return next;
  }

  /** Moves the clock to `atMs` and wakes every sleeper due by then, earliest first. */
  advanceTo(atMs: number): void {
    if (atMs < this.now) return;
    this.now = atMs;
    this.step++;
    const due = this.#sleepers
      .filter((s) => s.wakeAt <= atMs)
      .sort((a, b) => a.wakeAt - b.wakeAt || a.seq - b.seq);
    for (const sleeper of due) this.#sleepers.splice(this.#sleepers.indexOf(sleeper), 1);
    this.#activity++;
    for (const sleeper of due) sleeper.resolve();
  }

  log(line: string): void {
    const text = `t=${((this.now - this.startMs) / 1000).toFixed(3)}s #${this.step} ${line}`;
    if (this.#verbose) console.log(text);
    this.#trace.push(text);
    if (this.#trace.length > 200) this.#trace.shift();
  }

  traceTail(lines = 40): string[] {
    return this.#trace.slice(-lines);
  }
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const error = new Error(typeof reason === 'string' ? reason : 'aborted');
  error.name = 'AbortError';
  return error;
}

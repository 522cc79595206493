import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadSettings } from '#config/settings.ts';
import {
  BaseTrigger,
  DateTimeTrigger,
  FileExistsTrigger,
  HttpPollTrigger,
  registeredTriggerNames,
  registerTrigger,
  TimeDeltaTrigger,
  type TriggerEvent,
  type TriggerRunContext,
  triggerClassOf,
} from '#sdk/triggers/index.ts';

interface FakeContext extends TriggerRunContext {
  sleeps: number[];
  lines: string[];
}

/** A triggerer context whose sleeps resolve at once and are recorded; `onSleep` runs before each resolves. */
function fakeContext(nowMs: number, onSleep: (atMs: number) => Promise<void> | void = () => {}): FakeContext {
  const sleeps: number[] = [];
  const lines: string[] = [];
  const record = (message: string) => {
    lines.push(message);
  };
  return {
    sleeps,
    lines,
    log: { debug: record, info: record, warn: record, error: record },
    signal: new AbortController().signal,
    now: () => nowMs,
    async sleepUntil(atMs) {
      sleeps.push(atMs);
      await onSleep(atMs);
    },
  };
}

async function firstEvent(trigger: BaseTrigger<object>, ctx: TriggerRunContext): Promise<TriggerEvent> {
  for await (const event of trigger.run(ctx)) return event;
  throw new Error('the trigger ended without an event');
}

const MOMENT = '2026-05-01T10:00:00.000Z';
const MOMENT_MS = Date.parse(MOMENT);

describe('DateTimeTrigger', () => {
  it('sleeps until the moment, then fires it as a Date', async () => {
    const ctx = fakeContext(MOMENT_MS - 60_000);
    const event = await firstEvent(new DateTimeTrigger({ moment: MOMENT }), ctx);
    expect(ctx.sleeps).toEqual([MOMENT_MS]);
    expect(event).toEqual({ type: 'resume', payload: new Date(MOMENT) });
  });

  it('fires at once when the moment has passed', async () => {
    const ctx = fakeContext(MOMENT_MS + 1);
    expect(await firstEvent(new DateTimeTrigger({ moment: MOMENT }), ctx)).toEqual({
      type: 'resume',
      payload: new Date(MOMENT),
    });
    expect(ctx.sleeps).toEqual([]);
  });

  it('keeps the moment as UTC ISO text in its kwargs', () => {
    const trigger = new DateTimeTrigger({ moment: new Date('2026-05-01T12:00:00+02:00') });
    expect(trigger.serialize()).toEqual({ name: 'updraft.DateTimeTrigger', kwargs: { moment: MOMENT } });
  });

  it('refuses a moment that is not a date', () => {
    expect(() => new DateTimeTrigger({ moment: 'tomorrow' })).toThrow(
      'DateTimeTrigger moment must be a Date',
    );
  });

  it('refuses unknown kwargs', () => {
    expect(() => new DateTimeTrigger({ moment: MOMENT, when: 1 } as never)).toThrow('unknown kwargs when');
  });
});

describe('TimeDeltaTrigger', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'], now: MOMENT_MS - 300_000 });
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('turns its delta into a moment when constructed', () => {
    expect(new TimeDeltaTrigger({ delta: '5m' }).serialize()).toEqual({
      name: 'updraft.TimeDeltaTrigger',
      kwargs: { moment: MOMENT },
    });
  });

  it('reads a number as milliseconds', () => {
    expect(new TimeDeltaTrigger({ delta: 300_000 }).kwargs).toEqual({ moment: MOMENT });
  });

  it('keeps its moment when a triggerer rebuilds it later from its kwargs', async () => {
    const kwargs = new TimeDeltaTrigger({ delta: '5m' }).kwargs;
    vi.setSystemTime(MOMENT_MS - 60_000);
    const rebuilt = new TimeDeltaTrigger(kwargs);
    const ctx = fakeContext(Date.now());
    expect(await firstEvent(rebuilt, ctx)).toEqual({ type: 'resume', payload: new Date(MOMENT) });
    expect(ctx.sleeps).toEqual([MOMENT_MS]);
  });

  it('refuses a bad delta', () => {
    expect(() => new TimeDeltaTrigger({ delta: 'later' })).toThrow(
      "Invalid duration for TimeDeltaTrigger delta: 'later'",
    );
    expect(() => new TimeDeltaTrigger({ delta: -1 })).toThrow(
      'TimeDeltaTrigger delta must be a number of milliseconds >= 0',
    );
  });
});

describe('FileExistsTrigger', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'updraft-file-trigger-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fires at once when the file exists', async () => {
    const path = join(dir, 'ready');
    await writeFile(path, 'x');
    const ctx = fakeContext(0);
    expect(await firstEvent(new FileExistsTrigger({ path }), ctx)).toEqual({
      type: 'resume',
      payload: { path },
    });
    expect(ctx.sleeps).toEqual([]);
  });

  it('polls every pollIntervalMs until the file appears', async () => {
    const path = join(dir, 'later');
    const ctx = fakeContext(1_000, async () => {
      if (ctx.sleeps.length === 3) await writeFile(path, 'x');
    });
    const event = await firstEvent(new FileExistsTrigger({ path, pollIntervalMs: 250 }), ctx);
    expect(event).toEqual({ type: 'resume', payload: { path } });
    expect(ctx.sleeps).toEqual([1_250, 1_250, 1_250]);
  });

  it('defaults pollIntervalMs to 5 seconds', () => {
    expect(new FileExistsTrigger({ path: '/data/x' }).kwargs).toEqual({
      path: '/data/x',
      pollIntervalMs: 5_000,
    });
  });

  it('refuses a relative path', () => {
    expect(() => new FileExistsTrigger({ path: 'data/x' })).toThrow(
      'FileExistsTrigger path must be an absolute path',
    );
  });
});

describe('HttpPollTrigger kwargs', () => {
  it('fills in the defaults', () => {
    expect(new HttpPollTrigger({ url: 'http://127.0.0.1/x' }).kwargs).toEqual({
      url: 'http://127.0.0.1/x',
      method: 'GET',
      headers: {},
      intervalMs: 5_000,
      requestTimeoutMs: 10_000,
      condition: { status: [200] },
    });
  });

  it('refuses unknown condition keys, since conditions are data', () => {
    expect(
      () => new HttpPollTrigger({ url: 'http://127.0.0.1/x', condition: { check: () => true } as never }),
    ).toThrow("unknown kwarg 'check' in 'condition'");
  });
});

class FirstTrigger extends BaseTrigger<Record<string, never>> {
  static override readonly triggerName: string = 'tests.RegistryTrigger';
  override async *run(): AsyncGenerator<TriggerEvent, void, void> {}
}

class SecondTrigger extends BaseTrigger<Record<string, never>> {
  static override readonly triggerName: string = 'tests.RegistryTrigger';
  override async *run(): AsyncGenerator<TriggerEvent, void, void> {}
}

describe('trigger registry', () => {
  it('has the built-in triggers once the module is imported', () => {
    expect(registeredTriggerNames()).toEqual(
      expect.arrayContaining([
        'updraft.DateTimeTrigger',
        'updraft.FileExistsTrigger',
        'updraft.HttpPollTrigger',
        'updraft.TimeDeltaTrigger',
      ]),
    );
    expect(triggerClassOf('updraft.TimeDeltaTrigger')).toBe(TimeDeltaTrigger);
  });

  it('finds a registered class by its triggerName', () => {
    expect(registerTrigger(FirstTrigger)).toBe(FirstTrigger);
    expect(triggerClassOf('tests.RegistryTrigger')).toBe(FirstTrigger);
  });

  it('accepts the same class twice', () => {
    registerTrigger(FirstTrigger);
    expect(() => registerTrigger(FirstTrigger)).not.toThrow();
  });

  it('refuses another class under a taken name', () => {
    registerTrigger(FirstTrigger);
    expect(() => registerTrigger(SecondTrigger)).toThrow(
      "registerTrigger(SecondTrigger): the trigger name 'tests.RegistryTrigger' is already taken by class FirstTrigger",
    );
  });

  it('refuses a class without a triggerName', () => {
    class Nameless extends BaseTrigger<Record<string, never>> {
      override async *run(): AsyncGenerator<TriggerEvent, void, void> {}
    }
    expect(() => registerTrigger(Nameless)).toThrow(
      'registerTrigger(Nameless): static triggerName "" is not a dotted name',
    );
  });

  it("reserves names starting with 'updraft.'", () => {
    class Impostor extends BaseTrigger<Record<string, never>> {
      static override readonly triggerName: string = 'updraft.DateTimeTrigger';
      override async *run(): AsyncGenerator<TriggerEvent, void, void> {}
    }
    expect(() => registerTrigger(Impostor)).toThrow("names starting with 'updraft.' are reserved");
  });

  it('returns undefined for an unknown name', () => {
    expect(triggerClassOf('tests.Nobody')).toBeUndefined();
  });

  it('is shared through globalThis', () => {
    const registry = (globalThis as Record<symbol, unknown>)[Symbol.for('updraft.triggers.registry')] as Map<
      string,
      unknown
    >;
    expect(registry.get('updraft.DateTimeTrigger')).toBe(DateTimeTrigger);
  });
});

describe('trigger queue names (part of a store key)', () => {
  const moment = '2030-01-01T00:00:00.000Z';

  it("refuses a queue with '#' or out of 1-200 characters when the trigger is made, naming the queue", () => {
    for (const queue of ['gpu#1', '', 'q'.repeat(201)]) {
      expect(() => new DateTimeTrigger({ moment }, { queue })).toThrow(/Trigger queue ".*" is not usable/);
    }
    expect(new DateTimeTrigger({ moment }, { queue: 'q'.repeat(200) }).serialize().queue).toBe(
      'q'.repeat(200),
    );
  });

  it("refuses a triggerer's queue setting with '#', naming the variable, rather than a registration the API refuses", () => {
    expect(() => loadSettings({ UPDRAFT_TRIGGER_QUEUES: 'default,gpu#1' }, '/nonexistent')).toThrow(
      /UPDRAFT_TRIGGER_QUEUES.*must not contain '#'/,
    );
    expect(loadSettings({ UPDRAFT_TRIGGER_QUEUES: 'default, gpu-1' }, '/nonexistent').triggerQueues).toEqual([
      'default',
      'gpu-1',
    ]);
  });
});

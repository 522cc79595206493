import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { clearTaskInstances } from '#engine/clear.ts';
import { handleSchedulingMessages } from '#engine/entrypoints.ts';
import { dag } from '#sdk/index.ts';
import { engineDeps, requestFor, wrapStore } from './fault-helpers.ts';
import { type SchedulerHarness, startSchedulerHarness, tiKey } from './scheduler-harness.ts';

let h: SchedulerHarness;
beforeEach(async () => {
  h = await startSchedulerHarness();
});
afterEach(async () => {
  await h.close();
});
const noop = async () => {};

describe('a clear racing the pass that finishes the run', () => {
  it('never leaves a finished run with a TI in none', async () => {
    const [versioned] = await h.register(dag({ id: 'race' }, (d) => d.task('work', noop)));
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'work'));
    // The run is still `running`: the pass the success asked for has not happened yet.
    expect((await h.run(run)).state).toBe('running');

    // The clear reads the run (running), counts the clear on it; the pass runs right then (it reads
    // the run with the new clearCount and the TI still `success`), then the clear resets the TI.
    const store = wrapStore(h.store, (real) => ({
      markRunCleared: async (...args: Parameters<typeof real.markRunCleared>) => {
        const result = await real.markRunCleared(...args);
        await h.newScheduler().handleRequests([run]);
        return result;
      },
    }));
    await clearTaskInstances(
      { store, dags: h.dags, notifier: h.notifier, now: h.now },
      {
        dagId: run.dagId,
        runId: run.runId,
        taskIds: [],
        includeDownstream: false,
        onlyFailed: false,
        dryRun: false,
      },
    );
    await h.notifier.drain();
    await h.handleQueuedRequests();
    await h.newScheduler().tick();

    const state = { run: (await h.run(run)).state, ti: (await h.ti(run, 'work')).state };
    // Either the run goes on (TI queued again) or the clear lost: never a finished run with a `none` TI.
    expect(state).not.toEqual({ run: 'success', ti: 'none' });
  });
});

describe("a clear and the run's state summary", () => {
  it('is not trusted or rebuilt while a clear resets TIs, also when the clear dies before it ends', async () => {
    const [versioned] = await h.register(
      dag({ id: 'halfway' }, (d) => {
        d.task('first', noop);
        d.task('second', noop);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'first'));
    await h.newScheduler().handleRequests([run]);
    await h.startTi(tiKey(run, 'second'));

    // The clear of `first` counts itself in progress; a pass runs right then (the summary it knew is
    // void, `first` still reads success), then the clear resets `first` and dies before it ends.
    const store = wrapStore(h.store, (real) => ({
      markRunCleared: async (...args: Parameters<typeof real.markRunCleared>) => {
        if (args[1] === 'end') throw new Error('API instance killed (injected)');
        const result = await real.markRunCleared(...args);
        await h.newScheduler().tick();
        return result;
      },
    }));
    await expect(
      clearTaskInstances(
        { store, dags: h.dags, notifier: h.notifier, now: h.now },
        {
          dagId: run.dagId,
          runId: run.runId,
          taskIds: ['first'],
          includeDownstream: false,
          onlyFailed: false,
          dryRun: false,
        },
      ),
    ).rejects.toThrow('killed');
    expect((await h.ti(run, 'first')).state).toBe('none');

    // `second` ends: the run goes on with `first` queued again, never finishing without it.
    await h.succeed(tiKey(run, 'second'));
    await h.newScheduler().handleRequests([run]);
    expect({ run: (await h.run(run)).state, first: (await h.ti(run, 'first')).state }).toEqual({
      run: 'running',
      first: 'queued',
    });
  });
});

describe('two passes that each learn one change', () => {
  it('finish the run between them, without the tick, when both read the summary before either wrote', async () => {
    const [versioned] = await h.register(
      dag({ id: 'pair' }, (d) => {
        d.task('x', noop);
        d.task('y', noop);
      }),
    );
    const run = await h.createRun(versioned!);
    await h.newScheduler().handleRequests([run]);
    await h.succeed(tiKey(run, 'x'));
    await h.succeed(tiKey(run, 'y'));
    // Each pass reads the run's head, then waits until the other has read it too.
    let arrived = 0;
    let release: () => void = () => {};
    const bothRead = new Promise<void>((resolve) => {
      release = resolve;
    });
    const meetingAfterHead = wrapStore(h.store, (real) => ({
      getRunHead: async (...args: Parameters<typeof real.getRunHead>) => {
        const head = await real.getRunHead(...args);
        arrived += 1;
        if (arrived === 2) release();
        if (arrived <= 2) await bothRead;
        return head;
      },
    }));
    await Promise.all([
      handleSchedulingMessages(engineDeps(h, meetingAfterHead), [requestFor(run, [tiKey(run, 'x')])]),
      handleSchedulingMessages(engineDeps(h, meetingAfterHead), [requestFor(run, [tiKey(run, 'y')])]),
    ]);

    expect((await h.run(run)).state).toBe('success');
  });
});

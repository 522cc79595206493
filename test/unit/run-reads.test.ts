import { describe, expect, it, vi } from 'vitest';
import type { DagRun, DagRunKey } from '#core/models.ts';
import type { SerializedDag } from '#core/serialized-dag.ts';
import { RunReads } from '#engine/run-cache.ts';
import type { DagVersionKey, RunsWithVersions } from '#store/port.ts';

const runOf = (runId: string) => ({ dagId: 'd', runId, dagVersion: 'v1' }) as unknown as DagRun;
const dag = { dagId: 'd' } as unknown as SerializedDag;

/** Runs named `missing` do not exist; one named `broken` is stored but cannot be decoded. */
function fakeStore(fail = false) {
  const getDagRunsWithDagVersions = vi.fn(
    async (runs: readonly DagRunKey[], versions: readonly DagVersionKey[]): Promise<RunsWithVersions> => {
      if (fail) throw new Error('throttled');
      return {
        runs: runs
          .filter((run) => run.runId !== 'missing')
          .map((run) =>
            run.runId === 'broken'
              ? { ...run, error: new Error('cannot decode the item') }
              : { ...run, value: runOf(run.runId) },
          ),
        versions: versions.map((version) => ({ ...version, value: dag })),
      };
    },
  );
  return { getDagRunsWithDagVersions };
}

describe('RunReads', () => {
  it('reads what is asked for in one turn in one request, each version once, and hands each caller its own', async () => {
    const store = fakeStore();
    const reads = new RunReads(store);
    const version = { dagId: 'd', versionHash: 'v1' };
    const [a, b, missing] = await Promise.all([
      reads.read({ dagId: 'd', runId: 'a' }, version),
      reads.read({ dagId: 'd', runId: 'b' }, version),
      reads.read({ dagId: 'd', runId: 'missing' }),
    ]);
    expect(store.getDagRunsWithDagVersions).toHaveBeenCalledTimes(1);
    expect(store.getDagRunsWithDagVersions.mock.calls[0]).toEqual([
      [
        { dagId: 'd', runId: 'a' },
        { dagId: 'd', runId: 'b' },
        { dagId: 'd', runId: 'missing' },
      ],
      [version],
    ]);
    expect(a).toEqual({ run: runOf('a'), dag });
    expect(b).toEqual({ run: runOf('b'), dag });
    expect(missing).toEqual({});
  });

  it('sends what is asked for after the request left in a request of its own', async () => {
    const store = fakeStore();
    const reads = new RunReads(store);
    await reads.read({ dagId: 'd', runId: 'a' });
    await reads.read({ dagId: 'd', runId: 'b' });
    expect(store.getDagRunsWithDagVersions).toHaveBeenCalledTimes(2);
  });

  it('fails only the call whose item cannot be decoded, in one request', async () => {
    const store = fakeStore();
    const reads = new RunReads(store);
    const results = await Promise.allSettled([
      reads.read({ dagId: 'd', runId: 'a' }),
      reads.read({ dagId: 'd', runId: 'broken' }),
    ]);
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected']);
    expect(results[0]).toMatchObject({ value: { run: runOf('a') } });
    expect(results[1]).toMatchObject({ reason: new Error('cannot decode the item') });
    expect(store.getDagRunsWithDagVersions).toHaveBeenCalledTimes(1);
  });

  it("fails each caller's read when the request fails, with no further requests", async () => {
    const store = fakeStore(true);
    const reads = new RunReads(store);
    const results = await Promise.allSettled([
      reads.read({ dagId: 'd', runId: 'a' }),
      reads.read({ dagId: 'd', runId: 'b' }),
    ]);
    expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected']);
    expect(store.getDagRunsWithDagVersions).toHaveBeenCalledTimes(1);
  });
});

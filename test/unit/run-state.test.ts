import { describe, expect, it } from 'vitest';
import { startableRuns } from '#core/run-state.ts';
import { dagRun } from './helpers/factories.ts';

const queued = (runId: string, logicalDate: string) => dagRun({ runId, logicalDate, state: 'queued' });

describe('startableRuns', () => {
  const runs = [
    queued('r3', '2025-01-03T00:00:00.000Z'),
    queued('r1', '2025-01-01T00:00:00.000Z'),
    queued('r2', '2025-01-02T00:00:00.000Z'),
  ];

  it('starts the oldest queued runs up to the free run slots', () => {
    expect(startableRuns(runs, 1, 3).map((run) => run.runId)).toEqual(['r1', 'r2']);
  });

  it('starts nothing when the running runs fill maxActiveRuns', () => {
    expect(startableRuns(runs, 3, 3)).toEqual([]);
  });

  it('starts nothing when more runs run than maxActiveRuns allows', () => {
    expect(startableRuns(runs, 5, 3)).toEqual([]);
  });

  it('orders runs of the same logical date by run id', () => {
    const sameDate = [queued('b', '2025-01-01T00:00:00.000Z'), queued('a', '2025-01-01T00:00:00.000Z')];
    expect(startableRuns(sameDate, 0, 1).map((run) => run.runId)).toEqual(['a']);
  });

  it('ignores runs that are not queued', () => {
    const mixed = [dagRun({ runId: 'running', state: 'running' }), queued('q', '2025-01-05T00:00:00.000Z')];
    expect(startableRuns(mixed, 0, 5).map((run) => run.runId)).toEqual(['q']);
  });
});

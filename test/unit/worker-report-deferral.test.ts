import { describe, expect, it } from 'vitest';
import { silentLogger } from '#engine/logger.ts';
import { HttpError } from '#http/errors.ts';
import type { ExecutionClient } from '#worker/execution-client.ts';
import { reportOutcome } from '#worker/report.ts';

/** A deferral the API refuses for good becomes a failure that says why, not an unreported try. */
describe('reportOutcome of a deferral', () => {
  it('reports the try failed, naming the refusal, when the API refuses the deferral with a 4xx', async () => {
    const sent: Record<string, unknown>[] = [];
    const client = {
      finish: async (_token: string, _key: unknown, body: Record<string, unknown>) => {
        sent.push(body);
        if (body.state === 'deferred') {
          throw new HttpError(
            'PATCH /state',
            413,
            'The kwargs of next method go are 60000 bytes, over the limit',
            false,
          );
        }
        return { ok: true };
      },
    } as unknown as ExecutionClient;
    const result = await reportOutcome(
      {
        client,
        log: silentLogger,
        key: { dagId: 'd', runId: 'r', taskId: 't', mapIndex: -1 },
        tryNumber: 1,
        token: () => 'token',
      },
      {
        state: 'deferred',
        deferral: {
          trigger: { name: 'updraft.TimeDeltaTrigger', kwargs: '{}' },
          next_method: 'go',
          next_kwargs: '{}',
          timeout_ms: null,
        },
      },
      { seq: 1, text: 'deferring\n' },
      Date.now() + 10_000,
    );
    expect(result).toEqual({ reported: true, outcome: 'failed' });
    expect(sent.at(-1)).toMatchObject({
      state: 'failed',
      retryable: false,
      error_message: expect.stringContaining('over the limit'),
      log: {
        seq: 1,
        text: expect.stringMatching(/deferring\n.*Task failed: The task's deferral was refused/),
      },
    });
  });
});

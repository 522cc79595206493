import { describe, expect, it } from 'vitest';
import type { FinishTaskBody } from '#contracts/execution-api.ts';
import { silentLogger } from '#engine/logger.ts';
import { HttpError } from '#http/errors.ts';
import type { ExecutionClient } from '#worker/execution-client.ts';
import { deliverReport } from '#worker/report.ts';

const key = { dagId: 'etl', runId: 'r', taskId: 'extract', mapIndex: -1 };
const TOO_LARGE = new HttpError(
  'PATCH /execution/task-instances/abc/state',
  413,
  'Request body is larger than 1024 bytes (UPDRAFT_REQUEST_MAX_BYTES)',
  false,
);

/** A client whose finish refuses bodies larger than `maxBytes` with the API's 413. */
function clientRefusingOver(maxBytes: number, sent: FinishTaskBody[]): ExecutionClient {
  return {
    finish: async (_token: string, _key: unknown, body: FinishTaskBody) => {
      sent.push(body);
      if (Buffer.byteLength(JSON.stringify(body)) > maxBytes) throw TOO_LARGE;
      return { duplicate: false };
    },
  } as unknown as ExecutionClient;
}

describe('a report whose XCom is over the request limit', () => {
  it('fails the try with a message naming the XCom limit, and keeps the log with that error', async () => {
    const sent: FinishTaskBody[] = [];
    const xcom = JSON.stringify('x'.repeat(5_000));
    const recorded = await deliverReport(
      {
        client: clientRefusingOver(2_048, sent),
        log: silentLogger,
        key,
        tryNumber: 1,
        token: () => 'token',
        xcomMaxBytes: 49_152,
      },
      { state: 'success', xcom },
      { seq: 1, text: 'extracting\n' },
      undefined,
    );

    expect(recorded).toBe(true);
    const last = sent.at(-1);
    expect(last?.state).toBe('failed');
    const message = last?.state === 'failed' ? last.error_message : '';
    expect(message).toBe(
      `Task 'extract' returned an XCom of ${xcom.length} bytes, too large for the Execution API to accept in the report. The XCom limit is 49152 bytes (UPDRAFT_XCOM_MAX_BYTES). Return less, or store the data elsewhere and return a reference`,
    );
    expect(message).not.toContain('UPDRAFT_REQUEST_MAX_BYTES');
    expect(message).not.toContain('/execution/');
    expect(last?.log?.seq).toBe(1);
    expect(last?.log?.text).toContain('extracting\n');
    expect(last?.log?.text).toContain(`{ERROR} Task failed: ${message}`);
    // The same report throughout: a lost answer is still recognised as a duplicate.
    expect(new Set(sent.map((body) => body.report_id)).size).toBe(1);
  });

  it('keeps at least the error in the log when the log chunk itself is too large', async () => {
    const sent: FinishTaskBody[] = [];
    await deliverReport(
      { client: clientRefusingOver(1_024, sent), log: silentLogger, key, tryNumber: 1, token: () => 'token' },
      { state: 'failed', error_message: 'boom', retryable: true },
      { seq: 3, text: 'y'.repeat(2_000) },
      undefined,
    );
    expect(sent.at(-1)).toMatchObject({ state: 'failed', log: { seq: 3, text: '[updraft] boom\n' } });
  });
});

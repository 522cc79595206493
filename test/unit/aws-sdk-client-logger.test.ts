import { Logger } from '@aws-lambda-powertools/logger';
import { describe, expect, it, vi } from 'vitest';
import { sdkClientLogger } from '#aws/handler-observability.ts';

describe('sdkClientLogger', () => {
  it("passes the SDK's warnings and errors to the function's log as warnings, and drops its per-request lines", () => {
    const logger = new Logger({ serviceName: 'test', logLevel: 'SILENT' });
    const warn = vi.spyOn(logger, 'warn');
    const sdk = sdkClientLogger(logger);

    sdk.info({ clientName: 'DynamoDBClient', commandName: 'GetItemCommand', input: { Key: 'k' } });
    sdk.debug('endpoint resolved');
    sdk.trace('trace');
    sdk.warn('@smithy/node-http-handler:WARN - socket usage at capacity=50', { queued: 3 });
    sdk.error('request timed out');

    expect(warn.mock.calls).toEqual([
      [
        'AWS SDK warning',
        { sdk: '@smithy/node-http-handler:WARN - socket usage at capacity=50 {"queued":3}' },
      ],
      ['AWS SDK error', { sdk: 'request timed out' }],
    ]);
  });
});

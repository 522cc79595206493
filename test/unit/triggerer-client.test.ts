import { describe, expect, it } from 'vitest';
import { TriggererClient } from '#triggerer/client.ts';

/** A fetch that answers every registration and keeps the authorization header each call carried. */
function recordingFetch(seen: (string | null)[]): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    seen.push(request.headers.get('authorization'));
    return Response.json(
      { job_id: 'job-1', token: 'job-token', heartbeat_interval_ms: 2000, heartbeat_timeout_ms: 6000 },
      { status: 201 },
    );
  }) as typeof fetch;
}

describe('TriggererClient credentials', () => {
  it('registers with its credential, then calls with the job token', async () => {
    const seen: (string | null)[] = [];
    const client = new TriggererClient('http://127.0.0.1:1', 'triggerer-token', {
      fetch: recordingFetch(seen),
    });
    await client.register({ hostname: 'h', capacity: 10 });
    await client.heartbeat({ running: 0 });
    expect(seen).toEqual(['Bearer triggerer-token', 'Bearer job-token']);
  });

  it('registers without any token when it has no credential (the transport signs the call)', async () => {
    const seen: (string | null)[] = [];
    const client = new TriggererClient('http://127.0.0.1:1', null, { fetch: recordingFetch(seen) });
    await client.register({ hostname: 'h', capacity: 10 });
    await client.heartbeat({ running: 0 });
    expect(seen).toEqual([null, 'Bearer job-token']);
  });
});

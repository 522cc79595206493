import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskInstanceKey } from '#core/models.ts';
import { TaskTokenSigner } from '#engine/tokens.ts';
import { dag } from '#sdk/index.ts';
import {
  API_TOKEN,
  type ApiHarness,
  type ErrorBody,
  EXECUTION_KEYS,
  startApiHarness,
  TEST_LIMITS,
  tiKey,
  tiPath,
  WORKER,
} from './api-harness.ts';

const REFRESHED = 'Updraft-Refreshed-Token';
const OLD_SECRET = EXECUTION_KEYS.k1 as string;
const TTL_MS = TEST_LIMITS.executionTokenTtlSeconds * 1000;

const etl = dag({ id: 'etl' }, (d) => {
  d.task('extract', async () => 1);
});

let api: ApiHarness;
let runs = 0;

beforeAll(async () => {
  // Rotation: a new key signs, the old one still verifies.
  api = await startApiHarness(
    {},
    { executionKeys: { k2: 'a-new-execution-secret-0123456789abcdef', k1: OLD_SECRET } },
  );
  await api.registerDags([etl]);
});
afterAll(async () => {
  await api?.close();
});

async function queued(): Promise<TaskInstanceKey> {
  const runId = `run_${++runs}`;
  expect((await api.request('POST', '/api/v2/dags/etl/dagRuns', { dag_run_id: runId })).status).toBe(201);
  const key = tiKey('etl', runId, 'extract');
  await api.queueTaskInstance(key);
  return key;
}

/** An HS256 JWT with any header and claims, signed with `secret`. */
function handMadeToken(header: object, claims: object, secret: string): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${part(header)}.${part(claims)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

const claimsOf = (key: TaskInstanceKey) => ({
  kind: 'task_instance',
  dag_id: key.dagId,
  run_id: key.runId,
  task_id: key.taskId,
  map_index: key.mapIndex,
  try_number: 1,
  iat: Math.floor(api.clock.nowMs / 1000),
});

describe('task token refresh', () => {
  it('sends a token whose lifetime starts at the start with every start response', async () => {
    const key = await queued();
    const token = await api.tokens.issue({ ...key, tryNumber: 1 }, api.clock.nowMs - TTL_MS / 2);
    const response = await api.request('PATCH', tiPath(key, 'run'), WORKER, token);
    const refreshed = response.headers.get(REFRESHED) ?? '';
    const verified = await api.tokens.check(refreshed, api.clock.nowMs);
    expect(verified.claims).toMatchObject({ ...key, kind: 'task_instance', tryNumber: 1 });
    expect(verified.expiresAtMs).toBe(Math.floor(api.clock.nowMs / 1000) * 1000 + TTL_MS);
  });

  it('refreshes on a heartbeat only once less than half the lifetime remains', async () => {
    const key = await queued();
    const token = await api.tokens.issue({ ...key, tryNumber: 1 }, api.clock.nowMs);
    await api.request('PATCH', tiPath(key, 'run'), WORKER, token);
    const early = await api.request('PUT', tiPath(key, 'heartbeat'), {}, token);
    expect(early.headers.get(REFRESHED)).toBeNull();
    api.clock.advance(TTL_MS / 2 + 1_000);
    const late = await api.request('PUT', tiPath(key, 'heartbeat'), {}, token);
    const refreshed = late.headers.get(REFRESHED) ?? '';
    expect((await api.tokens.check(refreshed, api.clock.nowMs)).expiresAtMs).toBeGreaterThan(
      api.clock.nowMs + TTL_MS - 1_000,
    );
  });
});

describe('task token keys and claims', () => {
  it('accepts a token signed by an older key that is still in the keyring', async () => {
    const key = await queued();
    const oldSigner = new TaskTokenSigner({ k1: OLD_SECRET }, TEST_LIMITS.executionTokenTtlSeconds);
    const token = await oldSigner.issue({ ...key, tryNumber: 1 }, api.clock.nowMs);
    expect((await api.request('PATCH', tiPath(key, 'run'), WORKER, token)).status).toBe(200);
  });

  it('refuses a token of an unknown key with 401 naming the key id', async () => {
    const key = await queued();
    const signer = new TaskTokenSigner({ gone: 'a-retired-execution-secret-0123456789' }, 600);
    const token = await signer.issue({ ...key, tryNumber: 1 }, api.clock.nowMs);
    const response = await api.request<ErrorBody>('PATCH', tiPath(key, 'run'), WORKER, token);
    expect(response.status).toBe(401);
    expect(response.body.detail).toBe(
      `Invalid or expired task token: it was signed with key id "gone", which is not in this server's keyring`,
    );
  });

  it('refuses a token without exp with 401', async () => {
    const key = await queued();
    const token = handMadeToken({ alg: 'HS256', typ: 'JWT', kid: 'k1' }, claimsOf(key), OLD_SECRET);
    const response = await api.request<ErrorBody>('PATCH', tiPath(key, 'run'), WORKER, token);
    expect(response.status).toBe(401);
    expect(response.body.detail).toBe(
      'Invalid or expired task token: its claims are missing or malformed: exp',
    );
  });

  it('refuses a token without kind with 401', async () => {
    const key = await queued();
    const { kind: _kind, ...claims } = { ...claimsOf(key), exp: Math.floor(api.clock.nowMs / 1000) + 60 };
    const token = handMadeToken({ alg: 'HS256', kid: 'k1' }, claims, OLD_SECRET);
    const response = await api.request<ErrorBody>('PATCH', tiPath(key, 'run'), WORKER, token);
    expect(response.status).toBe(401);
  });

  it('never puts the presented token in a 401', async () => {
    const key = await queued();
    const valid = await api.tokens.issue({ ...key, tryNumber: 1 }, api.clock.nowMs);
    const forged = `${valid.slice(0, valid.lastIndexOf('.'))}.${'A'.repeat(43)}`;
    const expired = await api.tokens.issue({ ...key, tryNumber: 1 }, api.clock.nowMs - 2 * TTL_MS);
    for (const token of [forged, expired, 'not-a-jwt-but-a-secret-looking-string']) {
      const response = await api.request<ErrorBody>('PATCH', tiPath(key, 'run'), WORKER, token);
      expect(response.status).toBe(401);
      expect(JSON.stringify(response.body)).not.toContain(token.slice(-20));
    }
  });
});

describe('bearer scheme', () => {
  it('accepts a lowercase bearer scheme on the Execution API', async () => {
    const key = await queued();
    const token = await api.tokens.issue({ ...key, tryNumber: 1 }, api.clock.nowMs);
    const response = await api.request('PATCH', tiPath(key, 'run'), WORKER, null, {
      authorization: `bearer ${token}`,
    });
    expect(response.status).toBe(200);
  });

  it('accepts a lowercase bearer scheme on the public API', async () => {
    const response = await api.request('GET', '/api/v2/dags', undefined, null, {
      authorization: `bearer ${API_TOKEN}`,
    });
    expect(response.status).toBe(200);
  });
});

describe('ids and cursors the store cannot take', () => {
  it('answers 400 naming a run id that contains #', async () => {
    const response = await api.request<ErrorBody>(
      'GET',
      `/api/v2/dags/etl/dagRuns/${encodeURIComponent('a#b')}`,
    );
    expect(response.status).toBe(400);
    expect(response.body.detail).toBe(`Run id "a#b" is not valid: ids never contain '#'`);
  });

  it('answers 400 for a malformed page cursor', async () => {
    const response = await api.request<ErrorBody>('GET', '/api/v2/dags/etl/dagRuns?cursor=garbage');
    expect(response.status).toBe(400);
    expect(response.body.detail).toContain('is not a cursor this store issued');
  });

  it('answers 400 for a # in the body of a clear', async () => {
    const response = await api.request<ErrorBody>('POST', '/api/v2/dags/etl/clearTaskInstances', {
      dag_run_id: 'a#b',
    });
    expect(response.status).toBe(400);
    expect(response.body.detail).toContain('a#b');
  });
});

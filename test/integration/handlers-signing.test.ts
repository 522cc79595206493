import { createHash } from 'node:crypto';
import { Sha256 } from '@aws-crypto/sha256-js';
import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { credentialsFromEnvironment, roleCredentials } from '#aws/handler-defaults-execution.ts';
import { RequestSigningError, SecretFormatError } from '#aws/handler-errors.ts';
import { apiTokenOf, CachedSecrets, executionKeysOf, type SecretsClient } from '#aws/handler-secrets.ts';
import { createSignedFetch, restoreTaskToken, TASK_TOKEN_HEADER } from '#aws/handler-signed-fetch.ts';

/**
 * What the worker sends to the function URL and what the Execution API function gets back out of
 * it, and how the functions read their secrets.
 */

const CREDENTIALS = {
  accessKeyId: 'AKIDEXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
};
const URL_BASE = 'https://abcdefgh.lambda-url.eu-west-1.on.aws';

interface Sent {
  url: URL;
  method: string;
  headers: Record<string, string>;
  body: string | undefined;
}

function capture(): { fetch: typeof fetch; sent: Sent[] } {
  const sent: Sent[] = [];
  const transport = async (input: string | URL | Request, init?: RequestInit) => {
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((value, name) => {
      headers[name] = value;
    });
    sent.push({
      url: new URL(String(input)),
      method: init?.method ?? 'GET',
      headers,
      body: typeof init?.body === 'string' ? init.body : undefined,
    });
    return Response.json({ ok: true });
  };
  return { fetch: transport as typeof fetch, sent };
}

/** Signs the received request again, as the function URL's IAM auth does, and compares. */
async function signatureHolds(request: Sent): Promise<boolean> {
  const { authorization, ...headers } = request.headers;
  const amzDate = headers['x-amz-date'] ?? '';
  const signingDate = new Date(
    `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`,
  );
  const query: Record<string, string> = {};
  request.url.searchParams.forEach((value, name) => {
    query[name] = value;
  });
  const verifier = new SignatureV4({
    service: 'lambda',
    region: 'eu-west-1',
    credentials: CREDENTIALS,
    sha256: Sha256,
  });
  const again = await verifier.sign(
    {
      method: request.method,
      protocol: request.url.protocol,
      hostname: request.url.hostname,
      path: request.url.pathname,
      query,
      headers: { ...headers, host: request.url.host },
      ...(request.body === undefined ? {} : { body: request.body }),
    },
    { signingDate },
  );
  return again.headers.authorization === authorization;
}

describe('createSignedFetch', () => {
  it('signs for the lambda service in the region and moves the task token beside the signature', async () => {
    const { fetch, sent } = capture();
    const signed = createSignedFetch({ region: 'eu-west-1', credentials: async () => CREDENTIALS, fetch });
    const body = JSON.stringify({ log: { seq: 1, text: 'hello' } });
    await signed(`${URL_BASE}/execution/xcoms/d/r%2F1/t/return_value?map_index=-1`, {
      method: 'PUT',
      headers: { authorization: 'Bearer task-token-123', 'content-type': 'application/json' },
      body,
    });
    const [request] = sent;
    if (!request) throw new Error('nothing was sent');
    expect(request.headers.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/lambda\/aws4_request, SignedHeaders=[^,]*x-updraft-task-token[^,]*, Signature=[0-9a-f]{64}$/,
    );
    expect(request.headers[TASK_TOKEN_HEADER]).toBe('task-token-123');
    expect(request.headers['x-amz-content-sha256']).toBe(createHash('sha256').update(body).digest('hex'));
    expect(request.url.pathname).toBe('/execution/xcoms/d/r%2F1/t/return_value');
    expect(await signatureHolds(request)).toBe(true);
  });

  it('makes a signature that no longer holds once the task token is swapped', async () => {
    const { fetch, sent } = capture();
    const signed = createSignedFetch({ region: 'eu-west-1', credentials: async () => CREDENTIALS, fetch });
    await signed(`${URL_BASE}/execution/task-instances/abc/run`, {
      method: 'PATCH',
      headers: { authorization: 'Bearer mine', 'content-type': 'application/json' },
      body: '{}',
    });
    const [request] = sent;
    if (!request) throw new Error('nothing was sent');
    expect(
      await signatureHolds({ ...request, headers: { ...request.headers, [TASK_TOKEN_HEADER]: 'theirs' } }),
    ).toBe(false);
  });

  it('carries the session token of temporary credentials, as a Lambda role has', async () => {
    const { fetch, sent } = capture();
    const signed = createSignedFetch({
      region: 'eu-west-1',
      credentials: async () => ({ ...CREDENTIALS, sessionToken: 'session-token' }),
      fetch,
    });
    await signed(`${URL_BASE}/execution/task-instances/abc/heartbeat`, { method: 'PUT', body: '{}' });
    expect(sent[0]?.headers['x-amz-security-token']).toBe('session-token');
  });

  it('refuses to start without a region', () => {
    expect(() => createSignedFetch({ region: '', credentials: async () => CREDENTIALS })).toThrow(
      RequestSigningError,
    );
  });
});

describe('credentialsFromEnvironment', () => {
  it('reads the role credentials Lambda puts in the environment, session token included', () => {
    expect(
      credentialsFromEnvironment({
        AWS_ACCESS_KEY_ID: 'AKIA',
        AWS_SECRET_ACCESS_KEY: 'secret',
        AWS_SESSION_TOKEN: 'session',
      }),
    ).toEqual({ accessKeyId: 'AKIA', secretAccessKey: 'secret', sessionToken: 'session' });
    expect(
      credentialsFromEnvironment({ AWS_ACCESS_KEY_ID: 'AKIA', AWS_SECRET_ACCESS_KEY: 'secret' }),
    ).toEqual({
      accessKeyId: 'AKIA',
      secretAccessKey: 'secret',
    });
  });

  it('refuses, naming the variables, when they are missing', () => {
    expect(() => credentialsFromEnvironment({ AWS_ACCESS_KEY_ID: 'AKIA' })).toThrow(/AWS_SECRET_ACCESS_KEY/);
    expect(() => credentialsFromEnvironment({})).toThrow(RequestSigningError);
  });
});

describe('roleCredentials', () => {
  it('takes the environment credentials when Lambda set them, at every call', async () => {
    const env: NodeJS.ProcessEnv = { AWS_ACCESS_KEY_ID: 'AKIA1', AWS_SECRET_ACCESS_KEY: 's1' };
    const credentials = roleCredentials(env);
    expect(await credentials()).toEqual({ accessKeyId: 'AKIA1', secretAccessKey: 's1' });
    env.AWS_ACCESS_KEY_ID = 'AKIA2';
    expect((await credentials()).accessKeyId).toBe('AKIA2');
  });

  it("falls back to the SDK's provider chain without them (a container role, a profile)", async () => {
    // Nothing configured for the chain, and no instance metadata (no network from tests): the
    // chain itself refuses.
    const saved = { ...process.env };
    for (const name of Object.keys(process.env)) if (name.startsWith('AWS_')) delete process.env[name];
    process.env.HOME = '/nonexistent-updraft-home';
    process.env.AWS_EC2_METADATA_DISABLED = 'true';
    try {
      await expect(roleCredentials({})()).rejects.toMatchObject({ name: 'CredentialsProviderError' });
    } finally {
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
    }
  });
});

describe('restoreTaskToken', () => {
  it('puts the task token back as the bearer credential in place of the signature', () => {
    expect(
      restoreTaskToken({
        authorization: 'AWS4-HMAC-SHA256 Credential=…',
        [TASK_TOKEN_HEADER]: 't',
        accept: 'x',
      }),
    ).toEqual({ authorization: 'Bearer t', accept: 'x' });
  });

  it('drops a signature that comes without a token, and keeps a plain bearer credential', () => {
    expect(restoreTaskToken({ authorization: 'AWS4-HMAC-SHA256 Credential=…' })).toEqual({});
    expect(restoreTaskToken({ authorization: 'Bearer t' })).toEqual({ authorization: 'Bearer t' });
  });
});

describe('CachedSecrets', () => {
  function client(values: (string | Error)[]): SecretsClient & { inputs: unknown[] } {
    const inputs: unknown[] = [];
    return {
      inputs,
      async send(command: GetSecretValueCommand) {
        expect(command).toBeInstanceOf(GetSecretValueCommand);
        inputs.push(command.input);
        const next = values.shift();
        if (next instanceof Error || next === undefined) throw next ?? new Error('no more answers');
        return { SecretString: next };
      },
    };
  }

  it('reads a secret once per time-to-live, and again after it', async () => {
    let now = 0;
    const fake = client(['one', 'two']);
    const secrets = new CachedSecrets({ client: fake, ttlMs: 1_000, now: () => now });
    expect(await Promise.all([secrets.get('arn:a'), secrets.get('arn:a')])).toEqual(['one', 'one']);
    now = 999;
    expect(await secrets.get('arn:a')).toBe('one');
    now = 1_000;
    expect(await secrets.get('arn:a')).toBe('two');
    expect(fake.inputs).toEqual([{ SecretId: 'arn:a' }, { SecretId: 'arn:a' }]);
  });

  it('does not keep a failed read', async () => {
    const fake = client([new Error('AccessDenied'), 'value']);
    const secrets = new CachedSecrets({ client: fake });
    await expect(secrets.get('arn:b')).rejects.toThrow('AccessDenied');
    expect(await secrets.get('arn:b')).toBe('value');
  });

  it('keeps answering with the value it holds while a read after the time to live fails, and warns', async () => {
    let now = 0;
    const warnings: string[] = [];
    const fake = client([
      'the-api-token-0123456789',
      Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }),
    ]);
    const secrets = new CachedSecrets({
      client: fake,
      ttlMs: 1_000,
      now: () => now,
      warn: (m) => warnings.push(m),
    });
    expect(await secrets.get('token')).toBe('the-api-token-0123456789');
    now = 1_001;
    await expect(secrets.get('token')).resolves.toBe('the-api-token-0123456789');
    expect(warnings).toEqual([
      'Reading secret token failed: serving the value read 1 s ago (for up to 60 min after its read); next read in 1 s',
    ]);
  });

  it('backs off between failed reads while it serves the value held, doubling the wait', async () => {
    let now = 0;
    const throttled = () => Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
    const fake = client(['one', throttled(), throttled(), 'two']);
    const secrets = new CachedSecrets({ client: fake, ttlMs: 1_000, now: () => now });
    await secrets.get('arn:c');
    now = 1_000;
    expect(await secrets.get('arn:c')).toBe('one'); // read 2 fails: next read at 2,000
    now = 1_999;
    expect(await secrets.get('arn:c')).toBe('one'); // no read
    now = 2_000;
    expect(await secrets.get('arn:c')).toBe('one'); // read 3 fails: next read at 4,000
    now = 3_999;
    expect(await secrets.get('arn:c')).toBe('one'); // no read
    now = 4_000;
    expect(await secrets.get('arn:c')).toBe('two');
    expect(fake.inputs).toHaveLength(4);
  });

  it('lets the failure through once the value held is older than the time to live plus the grace', async () => {
    let now = 0;
    const fake = client(['one', new Error('AccessDeniedException')]);
    const secrets = new CachedSecrets({ client: fake, ttlMs: 1_000, staleGraceMs: 5_000, now: () => now });
    await secrets.get('arn:d');
    now = 6_000;
    await expect(secrets.get('arn:d')).rejects.toThrow('AccessDeniedException');
  });

  it('reads again before the time to live when asked to refresh, sharing a read under way', async () => {
    let now = 0;
    const fake = client(['old', 'new']);
    const secrets = new CachedSecrets({ client: fake, ttlMs: 60_000, now: () => now });
    expect(await secrets.get('arn:e')).toBe('old');
    now = 10;
    expect(
      await Promise.all([secrets.get('arn:e', { refresh: true }), secrets.get('arn:e', { refresh: true })]),
    ).toEqual(['new', 'new']);
    expect(await secrets.get('arn:e')).toBe('new');
    expect(fake.inputs).toHaveLength(2);
  });
});

describe('the secret formats', () => {
  const secret = 's'.repeat(40);

  it('reads the keyring as JSON (the first key signs), as kid=secret lines, or as one bare secret', () => {
    expect([...executionKeysOf(JSON.stringify({ k2: secret, k1: secret }), 'arn:k').keys()]).toEqual([
      'k2',
      'k1',
    ]);
    expect([...executionKeysOf(`k2=${secret}\nk1=${secret}`, 'arn:k')]).toEqual([
      ['k2', secret],
      ['k1', secret],
    ]);
    expect(executionKeysOf(secret, 'arn:k')).toEqual(new Map([['default', secret]]));
  });

  it('keeps the order written for key ids that are numbers, in kid=secret lines and in JSON', () => {
    expect([...executionKeysOf(`2=${secret}\n1=${secret}`, 'arn:k').keys()]).toEqual(['2', '1']);
    // Written as text: JSON.stringify of an object literal would already list 20260101 first.
    const json = `{"20260601": "${secret}", "k2": "${secret}", "20260101": "${secret}"}`;
    expect([...executionKeysOf(json, 'arn:k').keys()]).toEqual(['20260601', 'k2', '20260101']);
  });

  it('reads escaped JSON strings, and refuses a JSON keyring naming a key id twice', () => {
    const keys = executionKeysOf(`{"k\\u0031": "${secret}\\"x"}`, 'arn:k');
    expect([...keys]).toEqual([['k1', `${secret}"x`]]);
    expect(() => executionKeysOf(`{"k1": "${secret}", "k1": "${secret}"}`, 'arn:k')).toThrow(/appears twice/);
  });

  it('names the secret and not its value when the keyring is not usable', () => {
    const attempt = () => executionKeysOf(JSON.stringify({ k1: 'short' }), 'arn:keyring');
    expect(attempt).toThrow(SecretFormatError);
    expect(attempt).toThrow('arn:keyring');
    expect(() => executionKeysOf('{"k1": 5}', 'arn:keyring')).toThrow('not a string');
  });

  it('takes an API token of one word of 16 characters or more', () => {
    expect(apiTokenOf('abcdefghijklmnop', 'arn:t')).toBe('abcdefghijklmnop');
    expect(() => apiTokenOf('two words here!!', 'arn:t')).toThrow(SecretFormatError);
    expect(() => apiTokenOf('short', 'arn:t')).toThrow('arn:t');
  });
});

import { GetSecretValueCommand, type GetSecretValueCommandOutput } from '@aws-sdk/client-secrets-manager';
import { type ExecutionKeyring, KeyringError, parseExecutionKeys } from '#engine/tokens.ts';
import { SecretFormatError } from './handler-errors.ts';

/**
 * How long an instance keeps a secret before reading it again. Secrets Manager bills each read
 * ($0.05 per 10,000), so a busy instance must not read per request; a rotation reaches every
 * instance within this time. Both keys of a rotation verify in the meantime (see the keyring).
 */
export const SECRET_TTL_MS = 5 * 60_000;

/** The one call this module makes: what a fake client in a test answers. */
export interface SecretsClient {
  send(command: GetSecretValueCommand): Promise<Pick<GetSecretValueCommandOutput, 'SecretString'>>;
}

/**
 * Secrets read once per instance and kept for `ttlMs`. Concurrent readers of a missing or expired
 * secret share one call; a failed read is not kept, so the next invocation tries again.
 */
export class CachedSecrets {
  readonly #client: SecretsClient;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, { value: Promise<string>; readAt: number }>();

  constructor(options: { client: SecretsClient; ttlMs?: number; now?: () => number }) {
    this.#client = options.client;
    this.#ttlMs = options.ttlMs ?? SECRET_TTL_MS;
    this.#now = options.now ?? Date.now;
  }

  get(secretId: string): Promise<string> {
    const now = this.#now();
    const cached = this.#entries.get(secretId);
    if (cached && now - cached.readAt < this.#ttlMs) return cached.value;
    const value = this.#read(secretId);
    this.#entries.set(secretId, { value, readAt: now });
    value.catch(() => {
      if (this.#entries.get(secretId)?.value === value) this.#entries.delete(secretId);
    });
    return value;
  }

  async #read(secretId: string): Promise<string> {
    const output = await this.#client.send(new GetSecretValueCommand({ SecretId: secretId }));
    const text = output.SecretString?.trim();
    if (!text) throw new SecretFormatError(`Secret ${secretId} has no string value`);
    return text;
  }
}

/**
 * The public API's bearer token: the secret's whole string value. It must be one word (the
 * `Authorization: Bearer` grammar has no spaces): generate it without punctuation or spaces.
 */
export function apiTokenOf(secret: string, secretId: string): string {
  if (!/^\S{16,}$/.test(secret)) {
    throw new SecretFormatError(
      `The API token in secret ${secretId} must be at least 16 characters without spaces (generate it with excludePunctuation)`,
    );
  }
  return secret;
}

/**
 * The execution-token keyring from its secret: a JSON object `{ "kid": "secret", … }` (what
 * Secrets Manager's generated key/value secrets look like; the first key signs), or the
 * standalone secret file's text (`kid=secret` lines, the first signing, or one bare secret).
 * Errors name the secret, never a key.
 */
export function executionKeysOf(secret: string, secretId: string): ExecutionKeyring {
  try {
    if (secret.startsWith('{')) return keyringFromJson(secret);
    return parseExecutionKeys(secret);
  } catch (error) {
    const reason =
      error instanceof KeyringError || error instanceof SecretFormatError ? error.message : 'not JSON';
    throw new SecretFormatError(`The execution keyring in secret ${secretId} is not usable: ${reason}`, {
      cause: error,
    });
  }
}

function keyringFromJson(text: string): ExecutionKeyring {
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new SecretFormatError('expected a JSON object of key id to secret');
  }
  const entries = Object.entries(parsed);
  if (entries.length === 0) throw new SecretFormatError('the JSON object holds no key');
  for (const [kid, value] of entries) {
    if (typeof value !== 'string') throw new SecretFormatError(`key "${kid}" is not a string`);
  }
  // parseExecutionKeys checks ids and lengths the way the standalone secret file is checked.
  return parseExecutionKeys(entries.map(([kid, value]) => `${kid}=${value as string}`).join('\n'));
}

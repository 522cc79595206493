import { GetSecretValueCommand, type GetSecretValueCommandOutput } from '@aws-sdk/client-secrets-manager';
import { KeyringError, keyringOf, type OrderedKeyring, parseExecutionKeys } from '#engine/tokens.ts';
import { SecretFormatError } from './handler-errors.ts';

/**
 * How long an instance keeps a secret before reading it again. Secrets Manager bills each read
 * ($0.05 per 10,000), so a busy instance must not read per request; a rotation reaches every
 * instance within this time. Both keys of a rotation verify in the meantime (see the keyring).
 */
export const SECRET_TTL_MS = 5 * 60_000;

/**
 * How long after its time to live a secret is still served while reading it again fails
 * (throttling, an outage of Secrets Manager): an hour, so a passing failure does not fail every
 * request of the instance, and a revoked secret (access denied) is not served for long.
 */
export const SECRET_STALE_GRACE_MS = 60 * 60_000;

/** Waits between failed reads of a secret still served: doubling from the first to the last. */
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 60_000;

/** The one call this module makes: what a fake client in a test answers. */
export interface SecretsClient {
  send(command: GetSecretValueCommand): Promise<Pick<GetSecretValueCommandOutput, 'SecretString'>>;
}

export interface CachedSecretsOptions {
  client: SecretsClient;
  ttlMs?: number;
  /** How long past its time to live a value is served while reads fail (`SECRET_STALE_GRACE_MS`). */
  staleGraceMs?: number;
  now?: () => number;
  /** Where a failed read served from the cache is reported (the function's logger). */
  warn?: (message: string, fields: Record<string, unknown>) => void;
}

interface Entry {
  /** The last value read, and when its read started. */
  held?: { value: string; readAt: number };
  /** The read under way, which every concurrent reader shares. */
  pending?: Promise<string>;
  /** Failed reads since the last that succeeded, while a value is served. */
  failures: number;
  /** No read before this (the backoff after a failed read). */
  retryAt: number;
}

/**
 * Secrets read once per instance and kept for `ttlMs`. Concurrent readers of a missing or expired
 * secret share one call. A failed read of a secret never read is not kept, so the next caller
 * tries again. A failed read of a secret read before serves the value held, with a warning, for
 * up to `staleGraceMs` past its time to live, and the reads that follow back off (1 s doubling to
 * a minute) meanwhile; after that the failure reaches the caller.
 */
export class CachedSecrets {
  readonly #client: SecretsClient;
  readonly #ttlMs: number;
  readonly #staleGraceMs: number;
  readonly #now: () => number;
  readonly #warn: NonNullable<CachedSecretsOptions['warn']>;
  readonly #entries = new Map<string, Entry>();

  constructor(options: CachedSecretsOptions) {
    this.#client = options.client;
    this.#ttlMs = options.ttlMs ?? SECRET_TTL_MS;
    this.#staleGraceMs = options.staleGraceMs ?? SECRET_STALE_GRACE_MS;
    this.#now = options.now ?? Date.now;
    this.#warn = options.warn ?? (() => undefined);
  }

  /**
   * The secret's value. `refresh`: read it now whatever its age (a caller that has reason to
   * think it changed, e.g. a token signed with a key id the keyring held does not have); a
   * refresh under way or the backoff after a failed read still apply.
   */
  get(secretId: string, options: { refresh?: boolean } = {}): Promise<string> {
    const now = this.#now();
    let entry = this.#entries.get(secretId);
    if (!entry) {
      entry = { failures: 0, retryAt: 0 };
      this.#entries.set(secretId, entry);
    }
    const { held } = entry;
    if (held && !options.refresh && now - held.readAt < this.#ttlMs) return Promise.resolve(held.value);
    if (entry.pending !== undefined) return entry.pending;
    if (held && this.#servable(held, now) && now < entry.retryAt) return Promise.resolve(held.value);
    const reading = this.#refresh(secretId, entry, now);
    const pending = reading.finally(() => {
      if (entry.pending === pending) entry.pending = undefined;
    });
    entry.pending = pending;
    return pending;
  }

  #servable(held: { readAt: number }, now: number): boolean {
    return now - held.readAt < this.#ttlMs + this.#staleGraceMs;
  }

  async #refresh(secretId: string, entry: Entry, startedAt: number): Promise<string> {
    try {
      const value = await this.#read(secretId);
      entry.held = { value, readAt: startedAt };
      entry.failures = 0;
      entry.retryAt = 0;
      return value;
    } catch (error) {
      const now = this.#now();
      const { held } = entry;
      if (!held || !this.#servable(held, now)) throw error;
      entry.failures += 1;
      const waitMs = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (entry.failures - 1));
      entry.retryAt = now + waitMs;
      this.#warn(
        `Reading secret ${secretId} failed: serving the value read ${Math.round((now - held.readAt) / 1000)} s ago ` +
          `(for up to ${Math.round((this.#ttlMs + this.#staleGraceMs) / 60_000)} min after its read); next read in ${waitMs / 1000} s`,
        { secretId, failures: entry.failures, error },
      );
      return held.value;
    }
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
 * A Map in the order written, key ids that are numbers (`1`, `20260101`) included. Errors name
 * the secret, never a key.
 */
export function executionKeysOf(secret: string, secretId: string): OrderedKeyring {
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

function keyringFromJson(text: string): OrderedKeyring {
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new SecretFormatError('expected a JSON object of key id to secret');
  }
  const entries = Object.entries(parsed);
  if (entries.length === 0) throw new SecretFormatError('the JSON object holds no key');
  for (const [kid, value] of entries) {
    if (typeof value !== 'string') throw new SecretFormatError(`key "${kid}" is not a string`);
  }
  // The parsed object lists key ids that are numbers first; the order written is the text's.
  return keyringOf(membersInOrder(text));
}

/**
 * The members of a JSON object whose values are all strings, in the order of its text. Its only
 * string literals are its keys and values, alternating, so they are read off in sequence.
 */
function membersInOrder(text: string): [string, string][] {
  const literals = (text.match(/"(?:[^"\\]|\\.)*"/g) ?? []).map((literal) => JSON.parse(literal) as string);
  const members: [string, string][] = [];
  for (let index = 0; index + 1 < literals.length; index += 2) {
    members.push([literals[index] as string, literals[index + 1] as string]);
  }
  return members;
}

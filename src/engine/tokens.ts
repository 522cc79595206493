import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import {
  claimsOf,
  payloadOf,
  type TaskInstanceTokenClaims,
  type TokenClaims,
  tokenHeaderSchema,
  tokenPayloadSchema,
} from '#contracts/tokens.ts';
import type { TaskInstanceKey } from '#core/models.ts';

/**
 * Key id → secret as a plain object. The first key signs; every key verifies, so a new key can be
 * put first without breaking tokens in flight. An object lists integer-like keys (`1`,
 * `20260101`) first, ascending, whatever order they were written in, so the signer refuses one of
 * several keys with such an id: the parsers return an `OrderedKeyring`.
 */
export type ExecutionKeyring = Readonly<Record<string, string>>;

/** Key id → secret in the order written (the first signs), key ids that are numbers included. */
export type OrderedKeyring = ReadonlyMap<string, string>;

/** What a signer takes: either form of the keyring. */
export type ExecutionKeys = ExecutionKeyring | OrderedKeyring;

/** What a task token is issued for: one try of one task instance. */
/** One try of one TI; `dagVersion` (its run's) lets the API read the DAG without reading the run. */
export type TaskTokenGrant = TaskInstanceKey & { tryNumber: number; dagVersion?: string | undefined };

/** A token that passed every check: its claims and its lifetime. */
export interface VerifiedToken {
  claims: TokenClaims;
  issuedAtMs: number;
  expiresAtMs: number;
}

const VERIFIED_CACHE_SIZE = 10_000;
const MIN_SECRET_LENGTH = 32;
/** Key ids are names, not secrets: shown in errors only when they look like one. */
const KEY_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const KEY_LINE = /^([A-Za-z0-9_.-]{1,64})=(.+)$/;
/** The kid of a secret file that holds one bare secret (the format before key ids). */
export const DEFAULT_KEY_ID = 'default';

export class InvalidTokenError extends Error {
  override name = 'InvalidTokenError';
}

export class KeyringError extends Error {
  override name = 'KeyringError';
}

/**
 * Reads an execution secret file: one `kid=secret` per line, the first line signing (blank lines
 * and `#` comments ignored). A file of one bare secret, as written before key ids, is the key
 * `default`. Errors name the line, never the secret.
 */
export function parseExecutionKeys(text: string): OrderedKeyring {
  const lines = text
    .split(/\r?\n/)
    .map((line, index) => ({ line: line.trim(), number: index + 1 }))
    .filter(({ line }) => line !== '' && !line.startsWith('#'));
  const only = lines[0];
  if (lines.length === 1 && only && !isKeyLine(only.line)) {
    checkSecret(only.line, `the secret on line ${only.number}`);
    return new Map([[DEFAULT_KEY_ID, only.line]]);
  }
  if (!only) throw new KeyringError('The execution secret file holds no key');
  const keys = new Map<string, string>();
  for (const { line, number } of lines) {
    const match = KEY_LINE.exec(line);
    if (!match) throw new KeyringError(`Line ${number} of the execution secret file is not kid=secret`);
    const [, kid, secret] = match as unknown as [string, string, string];
    if (keys.has(kid)) throw new KeyringError(`Key id "${kid}" appears twice in the execution secret file`);
    checkSecret(secret, `key "${kid}" (line ${number})`);
    keys.set(kid, secret);
  }
  return keys;
}

/**
 * A keyring from key ids and secrets in the order given (the first signs), checked as the secret
 * file is: key id grammar, secret length, no key id twice. Errors name key ids, never secrets.
 */
export function keyringOf(entries: Iterable<readonly [string, string]>): OrderedKeyring {
  const keys = new Map<string, string>();
  for (const [kid, secret] of entries) {
    if (!KEY_ID.test(kid)) throw new KeyringError(`A key id does not match ${KEY_ID}`);
    if (keys.has(kid)) throw new KeyringError(`Key id "${kid}" appears twice`);
    checkSecret(secret, `key "${kid}"`);
    keys.set(kid, secret);
  }
  if (keys.size === 0) throw new KeyringError('The keyring holds no key');
  return keys;
}

/**
 * The keyring's keys in order, the signing key first. A bare string is a keyring of one key,
 * `default`. A plain object of several keys with an integer-like key id is refused: the object
 * has already lost the order they were written in.
 */
export function keyringEntries(keys: ExecutionKeys | string): [kid: string, secret: string][] {
  if (typeof keys === 'string') return [[DEFAULT_KEY_ID, keys]];
  if (isMap(keys)) return [...keys.entries()];
  const entries = Object.entries(keys);
  const numeric = entries.find(([kid]) => isArrayIndex(kid));
  if (entries.length > 1 && numeric) {
    throw new KeyringError(
      `Key id "${numeric[0]}" is a number, and an object lists such keys first whatever order they were written in: give the keyring as a Map (parseExecutionKeys returns one) so that the first key written signs`,
    );
  }
  return entries;
}

/** The key id a token's header names, unchecked (which key to verify it with); undefined if it has none. */
export function keyIdOf(token: string): string | undefined {
  const header = tokenHeaderSchema.safeParse(decodePart(token.split('.')[0] ?? ''));
  return header.success ? header.data.kid : undefined;
}

/** Whether an object enumerates this key before all others, in ascending order (an array index). */
function isArrayIndex(kid: string): boolean {
  return /^(?:0|[1-9][0-9]{0,9})$/.test(kid) && Number(kid) <= 4_294_967_294;
}

function isMap(keys: ExecutionKeys): keys is OrderedKeyring {
  return keys instanceof Map;
}

function isKeyLine(line: string): boolean {
  const match = KEY_LINE.exec(line);
  return match !== null && (match[2] as string).length >= MIN_SECRET_LENGTH;
}

function checkSecret(secret: string, what: string): void {
  if (secret.length < MIN_SECRET_LENGTH)
    throw new KeyringError(`${what} is shorter than ${MIN_SECRET_LENGTH} characters`);
}

/**
 * Signs and checks the scoped tokens that workloads carry: HS256 JWTs whose header names the key
 * (`kid`) and whose claims say what they grant (`kind`) and until when (`exp`, required). A
 * worker can act only on what its token names. Errors never repeat the presented token.
 */
export class TaskTokenSigner {
  readonly #keys: ReadonlyMap<string, Buffer>;
  readonly #signingKid: string;
  readonly ttlSeconds: number;
  /** Tokens already verified: a try's heartbeats reuse one token. Only a cache: every entry re-checks `exp`. */
  readonly #verified = new Map<string, VerifiedToken>();

  /** A bare string is a keyring of one key, `default`. */
  constructor(keys: ExecutionKeys | string, ttlSeconds: number) {
    const entries = keyringEntries(keys);
    const first = entries[0];
    if (!first) throw new KeyringError('The Execution API keyring is empty');
    for (const [kid, secret] of entries) {
      if (!KEY_ID.test(kid)) throw new KeyringError(`Key id "${kid.slice(0, 64)}" must match ${KEY_ID}`);
      checkSecret(secret, `The Execution API token secret "${kid}"`);
    }
    this.#keys = new Map(entries.map(([kid, secret]) => [kid, Buffer.from(secret)]));
    this.#signingKid = first[0];
    this.ttlSeconds = ttlSeconds;
  }

  /**
   * A token for one try, valid for `ttlSeconds` from `lifetimeStartMs`: the queue time for a
   * workload, the start time on start, the heartbeat time on a refresh.
   */
  async issue(grant: TaskTokenGrant, lifetimeStartMs: number): Promise<string> {
    const claims: TaskInstanceTokenClaims = {
      kind: 'task_instance',
      dagId: grant.dagId,
      runId: grant.runId,
      taskId: grant.taskId,
      mapIndex: grant.mapIndex,
      tryNumber: grant.tryNumber,
      ...(grant.dagVersion === undefined ? {} : { dagVersion: grant.dagVersion }),
    };
    return this.issueClaims(claims, lifetimeStartMs);
  }

  /** A token of any kind, valid for `ttlSeconds` (default: the signer's) from `lifetimeStartMs`. */
  async issueClaims(
    claims: TokenClaims,
    lifetimeStartMs: number,
    ttlSeconds = this.ttlSeconds,
  ): Promise<string> {
    const iat = Math.floor(lifetimeStartMs / 1000);
    const header = encodePart({ alg: 'HS256', typ: 'JWT', kid: this.#signingKid });
    const payload = encodePart(payloadOf(claims, iat, iat + ttlSeconds));
    const key = this.#keys.get(this.#signingKid) as Buffer;
    return `${header}.${payload}.${sign(key, `${header}.${payload}`)}`;
  }

  async check(token: string, nowMs = Date.now()): Promise<VerifiedToken> {
    const known = this.#verified.get(token);
    if (known) {
      if (known.expiresAtMs <= nowMs) throw expired(known);
      return known;
    }
    const verified = this.#verify(token);
    if (verified.expiresAtMs <= nowMs) throw expired(verified);
    if (this.#verified.size >= VERIFIED_CACHE_SIZE)
      this.#verified.delete(this.#verified.keys().next().value as string);
    this.#verified.set(token, verified);
    return verified;
  }

  #verify(token: string): VerifiedToken {
    const parts = token.split('.');
    if (parts.length !== 3) throw invalid('not a JWT (expected three dot-separated parts)');
    const [headerPart, payloadPart, signature] = parts as [string, string, string];
    const header = tokenHeaderSchema.safeParse(decodePart(headerPart));
    if (!header.success) throw invalid('its header is not an HS256 header with a key id (kid)');
    const { kid } = header.data;
    const key = this.#keys.get(kid);
    if (!key) {
      const named = KEY_ID.test(kid) ? `key id "${kid}"` : 'a malformed key id';
      throw invalid(`it was signed with ${named}, which is not in this server's keyring`);
    }
    const expected = Buffer.from(sign(key, `${headerPart}.${payloadPart}`));
    const given = Buffer.from(signature);
    if (expected.length !== given.length || !timingSafeEqual(expected, given))
      throw invalid(`its signature does not match key "${kid}"`);
    const payload = tokenPayloadSchema.safeParse(decodePart(payloadPart));
    if (!payload.success) {
      const fields = [...new Set(payload.error.issues.map((issue) => issue.path.join('.') || 'kind'))];
      throw invalid(`its claims are missing or malformed: ${fields.join(', ')}`);
    }
    return {
      claims: claimsOf(payload.data),
      issuedAtMs: payload.data.iat * 1000,
      expiresAtMs: payload.data.exp * 1000,
    };
  }
}

function encodePart(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function decodePart(part: string): unknown {
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/** Key objects of the keyring's secrets, made once: importing a raw key on every HMAC costs more than the HMAC. */
const keyObjects = new WeakMap<Buffer, KeyObject>();

function sign(key: Buffer, input: string): string {
  let keyObject = keyObjects.get(key);
  if (!keyObject) {
    keyObject = createSecretKey(key);
    keyObjects.set(key, keyObject);
  }
  return createHmac('sha256', keyObject).update(input).digest('base64url');
}

function invalid(reason: string): InvalidTokenError {
  return new InvalidTokenError(`Invalid or expired task token: ${reason}`);
}

function expired(token: VerifiedToken): InvalidTokenError {
  return new InvalidTokenError(
    `Invalid or expired task token: it expired at ${new Date(token.expiresAtMs).toISOString()}`,
  );
}

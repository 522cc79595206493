import { Jwt } from 'hono/utils/jwt';
import type { TaskInstanceKey } from '#core/models.ts';

/** What an Execution API token grants: one try of one task instance, until it expires. */
export interface TaskTokenClaims extends TaskInstanceKey {
  tryNumber: number;
}

const VERIFIED_CACHE_SIZE = 10_000;

export class InvalidTokenError extends Error {
  override name = 'InvalidTokenError';
}

/**
 * Signs and checks the task-scoped tokens that workloads carry (HS256 JWTs). A worker can act
 * only on the TI and try its token names; anything else is refused by the Execution API.
 */
export class TaskTokenSigner {
  readonly #secret: string;
  readonly #ttlSeconds: number;
  /** Tokens already verified, with their expiry: a try's start, heartbeats and report reuse one token. */
  readonly #verified = new Map<string, { claims: TaskTokenClaims; expiresAtMs: number }>();

  constructor(secret: string, ttlSeconds: number) {
    if (secret.length < 32) throw new Error('The Execution API token secret must be at least 32 characters');
    this.#secret = secret;
    this.#ttlSeconds = ttlSeconds;
  }

  async issue(claims: TaskTokenClaims, nowMs = Date.now()): Promise<string> {
    const iat = Math.floor(nowMs / 1000);
    return Jwt.sign(
      {
        sub: 'task_instance',
        dag_id: claims.dagId,
        run_id: claims.runId,
        task_id: claims.taskId,
        map_index: claims.mapIndex,
        try_number: claims.tryNumber,
        iat,
        exp: iat + this.#ttlSeconds,
      },
      this.#secret,
      'HS256',
    );
  }

  async check(token: string, nowMs = Date.now()): Promise<TaskTokenClaims> {
    const known = this.#verified.get(token);
    if (known && known.expiresAtMs > nowMs) return known.claims;
    let payload: Record<string, unknown>;
    try {
      payload = await Jwt.verify(token, this.#secret, 'HS256');
    } catch (error) {
      throw new InvalidTokenError(`Invalid or expired task token: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const { dag_id, run_id, task_id, map_index, try_number, sub } = payload;
    if (
      sub !== 'task_instance' ||
      typeof dag_id !== 'string' ||
      typeof run_id !== 'string' ||
      typeof task_id !== 'string' ||
      typeof map_index !== 'number' ||
      typeof try_number !== 'number'
    ) {
      throw new InvalidTokenError('Task token is missing its task instance claims');
    }
    const claims = {
      dagId: dag_id,
      runId: run_id,
      taskId: task_id,
      mapIndex: map_index,
      tryNumber: try_number,
    };
    if (typeof payload.exp === 'number') {
      if (this.#verified.size >= VERIFIED_CACHE_SIZE)
        this.#verified.delete(this.#verified.keys().next().value as string);
      this.#verified.set(token, { claims, expiresAtMs: payload.exp * 1000 });
    }
    return claims;
  }
}

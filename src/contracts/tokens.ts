import * as z from 'zod';
import type { TaskInstanceKey } from '#core/models.ts';

/**
 * Claims of the tokens the Execution API accepts, as a union on `kind`: a token grants one kind
 * of caller one thing. `task_instance` grants one try of one task instance; the triggerer's job
 * and callback workloads add their own kinds.
 */

/** The JWT header: HS256, and the id of the key that signed it (so keys can rotate). */
export const tokenHeaderSchema = z.object({
  alg: z.literal('HS256'),
  typ: z.literal('JWT').optional(),
  kid: z.string().min(1),
});
export type TokenHeader = z.infer<typeof tokenHeaderSchema>;

/** Registered claims every token carries; `exp` is required, a token never lives forever. */
const lifetime = {
  iat: z.number().int(),
  exp: z.number().int(),
};

export const taskInstanceTokenPayloadSchema = z.object({
  kind: z.literal('task_instance'),
  dag_id: z.string(),
  run_id: z.string(),
  task_id: z.string(),
  map_index: z.number().int(),
  try_number: z.number().int().min(1),
  /**
   * The run's DAG version (a run keeps its version for life), so a call can read the serialized
   * DAG without reading the run first. Absent from tokens issued before it was added.
   */
  dag_version: z.string().min(1).max(200).optional(),
  ...lifetime,
});

/** A triggerer's credential: lets it register a job, nothing else. */
export const triggererTokenPayloadSchema = z.object({
  kind: z.literal('triggerer'),
  ...lifetime,
});

/** A registered triggerer job: the trigger routes and its own job routes. */
export const jobTokenPayloadSchema = z.object({
  kind: z.literal('job'),
  job_id: z.string().min(1).max(100),
  ...lifetime,
});

/** One attempt of one callback: its start and its report, nothing else. */
export const callbackTokenPayloadSchema = z.object({
  kind: z.literal('callback'),
  dag_id: z.string(),
  run_id: z.string(),
  callback_id: z.string().min(1).max(100),
  attempt: z.number().int().min(1),
  ...lifetime,
});

export const tokenPayloadSchema = z.discriminatedUnion('kind', [
  taskInstanceTokenPayloadSchema,
  triggererTokenPayloadSchema,
  jobTokenPayloadSchema,
  callbackTokenPayloadSchema,
]);
export type TokenPayload = z.infer<typeof tokenPayloadSchema>;

/** What a verified `task_instance` token grants, in the engine's names. */
export interface TaskInstanceTokenClaims extends TaskInstanceKey {
  kind: 'task_instance';
  tryNumber: number;
  /** The run's DAG version, when the token names it. */
  dagVersion?: string;
}

export interface TriggererTokenClaims {
  kind: 'triggerer';
}

export interface JobTokenClaims {
  kind: 'job';
  jobId: string;
}

export interface CallbackTokenClaims {
  kind: 'callback';
  dagId: string;
  runId: string;
  callbackId: string;
  attempt: number;
}

export type TokenClaims =
  | TaskInstanceTokenClaims
  | TriggererTokenClaims
  | JobTokenClaims
  | CallbackTokenClaims;
export type TokenKind = TokenClaims['kind'];

/** Claims as signed, and as read back from the payload. */
export function payloadOf(claims: TokenClaims, iat: number, exp: number): TokenPayload {
  switch (claims.kind) {
    case 'task_instance':
      return {
        kind: 'task_instance',
        dag_id: claims.dagId,
        run_id: claims.runId,
        task_id: claims.taskId,
        map_index: claims.mapIndex,
        try_number: claims.tryNumber,
        ...(claims.dagVersion === undefined ? {} : { dag_version: claims.dagVersion }),
        iat,
        exp,
      };
    case 'triggerer':
      return { kind: 'triggerer', iat, exp };
    case 'job':
      return { kind: 'job', job_id: claims.jobId, iat, exp };
    case 'callback':
      return {
        kind: 'callback',
        dag_id: claims.dagId,
        run_id: claims.runId,
        callback_id: claims.callbackId,
        attempt: claims.attempt,
        iat,
        exp,
      };
  }
}

export function claimsOf(payload: TokenPayload): TokenClaims {
  switch (payload.kind) {
    case 'task_instance':
      return {
        kind: 'task_instance',
        dagId: payload.dag_id,
        runId: payload.run_id,
        taskId: payload.task_id,
        mapIndex: payload.map_index,
        tryNumber: payload.try_number,
        ...(payload.dag_version === undefined ? {} : { dagVersion: payload.dag_version }),
      };
    case 'triggerer':
      return { kind: 'triggerer' };
    case 'job':
      return { kind: 'job', jobId: payload.job_id };
    case 'callback':
      return {
        kind: 'callback',
        dagId: payload.dag_id,
        runId: payload.run_id,
        callbackId: payload.callback_id,
        attempt: payload.attempt,
      };
  }
}

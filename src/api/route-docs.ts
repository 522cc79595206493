import { z } from '@hono/zod-openapi';
import { errorSchema } from '#contracts/common.ts';

/** OpenAPI pieces shared by the route files: a JSON body or response, and the common errors. */

export const jsonContent = <T extends z.ZodType>(schema: T, description: string) => ({
  content: { 'application/json': { schema } },
  description,
});

export const jsonBody = <T extends z.ZodType>(schema: T) => ({
  content: { 'application/json': { schema } },
  required: true,
});

/** Errors every public route can answer with. */
export const publicErrors = {
  400: jsonContent(errorSchema, 'A query parameter the route does not take, or an id that breaks a rule'),
  401: jsonContent(errorSchema, 'Missing or invalid token'),
  404: jsonContent(errorSchema, 'Not found'),
  422: jsonContent(errorSchema, 'Invalid request'),
  503: jsonContent(errorSchema, 'The store is unavailable for now (see Retry-After)'),
};

/**
 * The public API's security scheme in the OpenAPI document. The Execution API's, `taskToken`,
 * is declared by its routes.
 */
export const API_TOKEN_SCHEME = {
  type: 'http',
  scheme: 'bearer',
  description: 'The API token (standalone writes it to <UPDRAFT_HOME>/api-token)',
} as const;

/** Routes anyone may call, without a token. */
export const PUBLIC_PATHS: ReadonlySet<string> = new Set(['/api/v2/monitor/health', '/api/v2/openapi.json']);

export const healthSchema = z
  .object({
    status: z.enum(['healthy', 'degraded']),
    metadatabase: z.object({
      status: z.enum(['healthy', 'unhealthy']),
      detail: z.string().optional(),
    }),
  })
  .openapi('Health');

export const metricsSchema = z
  .object({ gauges: z.record(z.string(), z.number()), counters: z.record(z.string(), z.number()) })
  .openapi('Metrics');

/** The public API's key of a task instance, from its path and `map_index` query parameter. */
export function taskInstanceKeyFrom(
  params: { dag_id: string; dag_run_id: string; task_id: string },
  query: { map_index: number },
) {
  return {
    dagId: params.dag_id,
    runId: params.dag_run_id,
    taskId: params.task_id,
    mapIndex: query.map_index,
  };
}

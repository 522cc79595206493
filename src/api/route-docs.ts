import type { z } from '@hono/zod-openapi';
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
  401: jsonContent(errorSchema, 'Missing or invalid token'),
  404: jsonContent(errorSchema, 'Not found'),
  422: jsonContent(errorSchema, 'Invalid request'),
};

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

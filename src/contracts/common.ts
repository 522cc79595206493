import * as z from 'zod';

/** Pieces shared by the public REST API and the Execution API. */

/** Body of every error response, whichever API answers it. */
export const errorSchema = z.object({ detail: z.string(), status: z.number().int() }).meta({ id: 'Error' });
export type ErrorBody = z.infer<typeof errorSchema>;

export const isoDate = z.string().meta({ format: 'date-time' });

export const mapIndexQuery = z.object({ map_index: z.coerce.number().int().min(-1).default(-1) });

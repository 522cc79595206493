import { readFile } from 'node:fs/promises';
import * as z from 'zod';
import { serializedDagSchema } from '#core/serialized-dag.ts';
import type { ParsedDagsFolder } from '#engine/dag-registry.ts';
import { SerializedDagsError } from './handler-errors.ts';

/**
 * The serialized DAGs a deploy registers: `{ dags: [{ dag, versionHash }], errors: [] }`, the
 * shape the engine's registry takes and the CDK app's serializer writes at synth. The register
 * function never imports DAG code; it only reads this data.
 */

/** Its name beside the bundled register function, when the DAGs travel in the bundle. */
export const SERIALIZED_DAGS_FILE = 'serialized-dags.json';

const serializedDagsFolderSchema = z.strictObject({
  dags: z.array(z.strictObject({ dag: serializedDagSchema, versionHash: z.string().min(1) })),
  errors: z.array(z.strictObject({ fileloc: z.string(), message: z.string() })),
});

/** Validates serialized DAGs (JSON text or parsed); `source` names where they came from. */
export function parseSerializedDags(input: unknown, source: string): ParsedDagsFolder {
  let value = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch (error) {
      throw new SerializedDagsError(`The serialized DAGs in ${source} are not JSON`, { cause: error });
    }
  }
  const parsed = serializedDagsFolderSchema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .slice(0, 5)
      .map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`)
      .join('; ');
    throw new SerializedDagsError(`The serialized DAGs in ${source} are malformed: ${problems}`, {
      cause: parsed.error,
    });
  }
  const ids = new Set<string>();
  for (const { dag } of parsed.data.dags) {
    if (ids.has(dag.dagId)) throw new SerializedDagsError(`DAG ${dag.dagId} appears twice in ${source}`);
    ids.add(dag.dagId);
  }
  return parsed.data;
}

/** Reads and validates the serialized DAGs file bundled at `url`. */
export async function readSerializedDags(url: URL): Promise<ParsedDagsFolder> {
  let text: string;
  try {
    text = await readFile(url, 'utf8');
  } catch (error) {
    throw new SerializedDagsError(
      `No serialized DAGs at ${url.pathname}: the deploy bundles ${SERIALIZED_DAGS_FILE} with this function, or passes SerializedDags in the custom resource's properties`,
      { cause: error },
    );
  }
  return parseSerializedDags(text, url.pathname);
}

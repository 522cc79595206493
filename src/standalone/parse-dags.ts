import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { serializedDagSchema } from '#core/serialized-dag.ts';
import type { ParsedDagsFolder } from '#engine/dag-registry.ts';

const PROCESSOR = fileURLToPath(new URL('./dag-processor.ts', import.meta.url));

/** Parses the DAGs folder in a child process and validates what it returns. */
export async function parseDagsFolder(
  folder: string,
  options: { cwd: string; timeoutMs?: number },
): Promise<ParsedDagsFolder> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--disable-warning=ExperimentalWarning', PROCESSOR, folder],
    {
      cwd: options.cwd,
      timeout: options.timeoutMs ?? 120_000,
      maxBuffer: 256 * 1024 * 1024,
    },
  );
  const raw = JSON.parse(stdout) as {
    dags: { dag: unknown; versionHash: string }[];
    errors: ParsedDagsFolder['errors'];
  };
  return {
    dags: raw.dags.map((entry) => ({
      dag: serializedDagSchema.parse(entry.dag),
      versionHash: entry.versionHash,
    })),
    errors: raw.errors,
  };
}

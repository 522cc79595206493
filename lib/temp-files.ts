import { rmSync } from 'node:fs';

const paths = new Set<string>();

/**
 * Removes a file or directory written for the synth (a staged image context, the serialized DAGs
 * handed to a bundle) when the process exits: the CDK has copied it into the cloud assembly by then.
 */
export function removeOnExit(path: string): void {
  if (paths.size === 0) process.once('exit', removeTempFiles);
  paths.add(path);
}

/** Removes them now (a test runner's worker may end without the exit event). */
export function removeTempFiles(): void {
  for (const path of paths) rmSync(path, { recursive: true, force: true });
  paths.clear();
}

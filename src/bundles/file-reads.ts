import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TrackedModule } from './import-graph.ts';
import { sha256Of } from './version.ts';

/**
 * Records the files a DAG file reads through `node:fs` while it is imported (`readFileSync`,
 * `readFile`, `fs/promises`' `readFile`, as named or default imports), so a data file read at
 * import time (`readFileSync(new URL('./tables.json', import.meta.url))`) is copied into the
 * bundle beside the modules and hashed into the version. `accept` decides which absolute paths
 * are kept (the parser process keeps those under the DAGs folder, while a request is in flight).
 * Other ways of reading (streams, `open`, `readdir`) are not seen. Install before any DAG file is
 * imported; the content is hashed from disk right after the read succeeded.
 */
export function trackFileReads(accept: (path: string) => boolean): {
  /** Every accepted file read so far, once each, as it was when first read. */
  read(): TrackedModule[];
  /** Accepted files read for the first time since the last call. */
  takeRead(): TrackedModule[];
} {
  const readFileSync = fs.readFileSync;
  const readFile = fs.readFile;
  const readFilePromise = fs.promises.readFile;
  const files = new Map<string, TrackedModule>();
  let fresh: TrackedModule[] = [];

  const note = (target: unknown) => {
    const path = pathOf(target);
    if (path === undefined || files.has(path) || !accept(path)) return;
    try {
      const stats = fs.statSync(path);
      if (!stats.isFile()) return;
      const file = { path, sha256: sha256Of(readFileSync(path)), mtimeMs: stats.mtimeMs, size: stats.size };
      files.set(path, file);
      fresh.push(file);
    } catch {
      // Gone since the read: the parse that follows sees the change.
    }
  };

  fs.readFileSync = function (this: unknown, ...args: unknown[]) {
    const content = (readFileSync as (...a: unknown[]) => unknown).apply(this, args);
    note(args[0]);
    return content;
  } as typeof fs.readFileSync;
  fs.readFile = function (this: unknown, ...args: unknown[]) {
    const callback = args.at(-1);
    if (typeof callback === 'function') {
      args[args.length - 1] = (error: unknown, ...rest: unknown[]) => {
        if (!error) note(args[0]);
        return (callback as (...a: unknown[]) => unknown)(error, ...rest);
      };
    }
    return (readFile as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof fs.readFile;
  fs.promises.readFile = function (this: unknown, ...args: unknown[]) {
    return (readFilePromise as (...a: unknown[]) => Promise<unknown>).apply(this, args).then((content) => {
      note(args[0]);
      return content;
    });
  } as typeof fs.promises.readFile;
  // `import { readFileSync } from 'node:fs'` (and 'node:fs/promises') see the wrappers too.
  syncBuiltinESMExports();

  return {
    read: () => [...files.values()],
    takeRead() {
      const taken = fresh;
      fresh = [];
      return taken;
    },
  };
}

/** The absolute path a `readFile` target names, or undefined for a file descriptor or handle. */
function pathOf(target: unknown): string | undefined {
  try {
    if (typeof target === 'string') return resolve(target);
    if (target instanceof URL) return target.protocol === 'file:' ? fileURLToPath(target) : undefined;
    if (Buffer.isBuffer(target)) return resolve(target.toString());
  } catch {
    // Not a path this process can name.
  }
  return undefined;
}

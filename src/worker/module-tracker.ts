import { statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { registerHooks } from 'node:module';
import { fileURLToPath } from 'node:url';

/** A local module a task runner process has loaded, as it was on disk when it was loaded. */
export interface LoadedModule {
  path: string;
  mtimeMs: number;
  size: number;
}

/** Updraft's own sources: they do not change under a running worker, so they are not tracked. */
const OWN_SOURCES = fileURLToPath(new URL('../', import.meta.url));

/**
 * Records every local module (a file: URL outside node_modules and outside Updraft's own
 * sources) that this process loads, with its mtime and size read before it is loaded. The
 * supervisor compares them with the disk before the next try and retires the process when one
 * changed: a module, once loaded, cannot be unloaded, and loading it again under another URL
 * would keep both copies in memory.
 */
export function trackLocalModules(): { takeLoaded(): LoadedModule[] } {
  let loaded: LoadedModule[] = [];
  const seen = new Set<string>();
  registerHooks({
    load(url, context, nextLoad) {
      if (url.startsWith('file:') && !seen.has(url)) {
        seen.add(url);
        const path = fileURLToPath(url);
        if (!path.includes('/node_modules/') && !path.startsWith(OWN_SOURCES)) {
          try {
            const stats = statSync(path);
            loaded.push({ path, mtimeMs: stats.mtimeMs, size: stats.size });
          } catch {
            // The load below reports the missing file.
          }
        }
      }
      return nextLoad(url, context);
    },
  });
  return {
    takeLoaded() {
      const taken = loaded;
      loaded = [];
      return taken;
    },
  };
}

/**
 * Whether every recorded module is still as it was on disk when it was loaded (same mtime and
 * size). When one changed or is gone, the process that loaded it must not serve again: it would
 * run the old code.
 */
export async function modulesUnchanged(
  modules: ReadonlyMap<string, Pick<LoadedModule, 'mtimeMs' | 'size'>>,
): Promise<boolean> {
  const checks = [...modules].map(async ([path, loaded]) => {
    try {
      const now = await stat(path);
      return now.mtimeMs === loaded.mtimeMs && now.size === loaded.size;
    } catch {
      return false;
    }
  });
  return (await Promise.all(checks)).every(Boolean);
}

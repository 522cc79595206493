import fs from 'node:fs';
import { registerHooks } from 'node:module';
import { fileURLToPath } from 'node:url';
import { sha256Of } from './version.ts';

/** A local module as it was when this process loaded it. */
export interface TrackedModule {
  path: string;
  sha256: string;
  mtimeMs: number;
  size: number;
}

// Taken now: the parser wraps `fs.readFileSync` later to see a DAG file's data reads (file-reads.ts).
const { readFileSync, statSync } = fs;

/** Updraft's own sources: part of Updraft, not of any DAG's bundle. */
const OWN_SOURCES = fileURLToPath(new URL('../', import.meta.url));

function isLocal(url: string): boolean {
  if (!url.startsWith('file:')) return false;
  const path = fileURLToPath(stripQuery(url));
  return !path.includes('/node_modules/') && !path.startsWith(OWN_SOURCES);
}

function stripQuery(url: string): string {
  const end = url.search(/[?#]/);
  return end === -1 ? url : url.slice(0, end);
}

/**
 * Records, through Node's module hooks, which module imports which (every resolution, static or
 * dynamic, with its importer) and each local module's content when it is loaded. From that, the
 * local modules a DAG file pulls in (its code bundle) are known even when they were loaded
 * earlier for another file. Install before any DAG file is imported. `onLoad` hears of each
 * local module as it is loaded, synchronously (before the import can hang or exit).
 */
export function trackImportGraph(onLoad?: (module: TrackedModule) => void): {
  /** The local modules reachable from `url` (itself included), as they were loaded. */
  closureOf(url: string): TrackedModule[];
  /** Local modules loaded since the last call. */
  takeLoaded(): TrackedModule[];
} {
  const imports = new Map<string, Set<string>>();
  const modules = new Map<string, TrackedModule>();
  let loaded: TrackedModule[] = [];
  registerHooks({
    resolve(specifier, context, nextResolve) {
      const resolved = nextResolve(specifier, context);
      const parent = context.parentURL;
      if (parent && isLocal(parent) && isLocal(resolved.url)) {
        const key = stripQuery(parent);
        const children = imports.get(key) ?? new Set<string>();
        imports.set(key, children);
        children.add(stripQuery(resolved.url));
      }
      return resolved;
    },
    load(url, context, nextLoad) {
      const key = stripQuery(url);
      if (isLocal(url) && !modules.has(key)) {
        const path = fileURLToPath(key);
        try {
          const stats = statSync(path);
          const module = {
            path,
            sha256: sha256Of(readFileSync(path)),
            mtimeMs: stats.mtimeMs,
            size: stats.size,
          };
          modules.set(key, module);
          loaded.push(module);
          onLoad?.(module);
        } catch {
          // The load below reports the missing file.
        }
      }
      return nextLoad(url, context);
    },
  });
  return {
    closureOf(url) {
      const found: TrackedModule[] = [];
      const seen = new Set<string>();
      const pending = [stripQuery(url)];
      for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
        if (seen.has(next)) continue;
        seen.add(next);
        const module = modules.get(next);
        if (module) found.push(module);
        pending.push(...(imports.get(next) ?? []));
      }
      return found.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    },
    takeLoaded() {
      const taken = loaded;
      loaded = [];
      return taken;
    },
  };
}

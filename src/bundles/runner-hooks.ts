import { existsSync, readFileSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type BundleManifest, FILES_DIR, MANIFEST_NAME } from './store.ts';

/** Bundles this process resolves imports for: their files' URL prefix → the source root's URL prefix. */
const redirects = new Map<string, string>();
let installed = false;
/** Files already looked at: whether each is in a bundle. */
const checked = new Map<string, boolean>();

/**
 * When `file` is a bundle's copy of a DAG file, makes imports from the bundle's files resolve as
 * they would from the original files: relative imports stay inside the bundle (the snapshot of
 * the local modules; one that was not snapshotted, e.g. imported only when a task runs, comes from
 * the original folder), and packages, `#` imports and absolute specifiers resolve from the original
 * folder, whose `node_modules` the bundle does not copy. Returns whether `file` is in a bundle.
 */
export function resolveImportsOfBundle(file: string): boolean {
  const known = checked.get(file);
  if (known !== undefined) return known;
  const bundleDir = findBundleDir(file);
  checked.set(file, bundleDir !== undefined);
  if (!bundleDir) return false;
  const manifest = JSON.parse(readFileSync(join(bundleDir, MANIFEST_NAME), 'utf8')) as BundleManifest;
  redirects.set(
    pathToFileURL(join(bundleDir, FILES_DIR) + sep).href,
    pathToFileURL(manifest.sourceRoot + (manifest.sourceRoot.endsWith(sep) ? '' : sep)).href,
  );
  if (!installed) install();
  return true;
}

function findBundleDir(file: string): string | undefined {
  for (let dir = dirname(file); dirname(dir) !== dir; dir = dirname(dir)) {
    if (!file.startsWith(join(dir, FILES_DIR) + sep)) continue;
    if (existsSync(join(dir, MANIFEST_NAME))) return dir;
  }
  return undefined;
}

function originalOf(parentUrl: string): string | undefined {
  for (const [bundlePrefix, sourcePrefix] of redirects) {
    if (parentUrl.startsWith(bundlePrefix)) return sourcePrefix + parentUrl.slice(bundlePrefix.length);
  }
  return undefined;
}

function install(): void {
  installed = true;
  registerHooks({
    resolve(specifier, context, nextResolve) {
      const original = context.parentURL ? originalOf(context.parentURL) : undefined;
      if (original === undefined) return nextResolve(specifier, context);
      if (specifier.startsWith('./') || specifier.startsWith('../')) {
        try {
          return nextResolve(specifier, context);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw error;
          return nextResolve(specifier, { ...context, parentURL: original });
        }
      }
      return nextResolve(specifier, { ...context, parentURL: original });
    },
  });
}

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { access, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { BundleChangedError } from './errors.ts';
import { bundleDirName, isVersionHash, sha256Of } from './version.ts';

/** `bundle.json` of a bundle folder: where its files came from and what they are. */
export interface BundleManifest {
  formatVersion: 1;
  dagId: string;
  versionHash: string;
  /** The folder the files were copied from: imports of packages resolve from there. */
  sourceRoot: string;
  /** The DAG file, relative to `sourceRoot` ('/' separators). */
  entry: string;
  /** Every file, relative to `sourceRoot`, with its sha256. */
  files: { path: string; sha256: string }[];
}

export const MANIFEST_NAME = 'bundle.json';
export const FILES_DIR = 'files';

/** What a snapshot copies: absolute paths with the content hash seen when they were imported. */
export interface BundleSource {
  dagId: string;
  versionHash: string;
  dagFile: string;
  modules: readonly { path: string; sha256: string }[];
}

/**
 * DAG code bundles under one folder (standalone: `<home>/bundles`), one immutable folder per DAG
 * version: `<dag>/<versionHash>/bundle.json` and `files/…`, the DAG file and its local modules as
 * they were when the version was parsed. A version's folder is written once, complete (built
 * beside it and renamed into place), before the version is registered, so a run of any
 * registered version finds its code. See src/bundles/ADR.md.
 */
/** DAG versions whose bundle location a store keeps (a few per DAG at most are in use at once). */
const LOCATED_CACHE_SIZE = 1_000;

export class BundleStore {
  readonly folder: string;
  /**
   * Bundles located so far: a bundle is written once and never changed or removed, so where it is
   * never changes either (a worker locates one per try; this saves a file read each time). Only
   * found bundles are kept: a missing one may be written later.
   */
  readonly #located = new Map<string, { dir: string; entryFile: string; manifest: BundleManifest }>();

  constructor(folder: string) {
    this.folder = folder;
  }

  dirOf(dagId: string, versionHash: string): string {
    return join(this.folder, bundleDirName(dagId), versionHash);
  }

  /** Writes the bundle of a version unless it exists. Throws BundleChangedError when a file changed since its import. */
  async snapshot(source: BundleSource): Promise<void> {
    const dir = this.dirOf(source.dagId, source.versionHash);
    if (await exists(join(dir, MANIFEST_NAME))) return;
    const paths = [source.dagFile, ...source.modules.map((module) => module.path)];
    const sourceRoot = commonFolder(paths);
    const building = `${dir}.building-${randomUUID().slice(0, 8)}`;
    try {
      const files: BundleManifest['files'] = [];
      for (const module of source.modules) {
        const content = await readFile(module.path);
        const sha256 = sha256Of(content);
        if (sha256 !== module.sha256) {
          throw new BundleChangedError(
            `${module.path} changed while it was being parsed; it is parsed again next time`,
          );
        }
        const path = toPosix(relative(sourceRoot, module.path));
        await mkdir(dirname(join(building, FILES_DIR, path)), { recursive: true });
        await writeFile(join(building, FILES_DIR, path), content);
        files.push({ path, sha256 });
      }
      const type = packageTypeOf(sourceRoot);
      // The bundle's files keep the module format the project gives them ("type" of package.json).
      if (type && !files.some((file) => file.path === 'package.json'))
        await writeFile(join(building, FILES_DIR, 'package.json'), `${JSON.stringify({ type })}\n`);
      const manifest: BundleManifest = {
        formatVersion: 1,
        dagId: source.dagId,
        versionHash: source.versionHash,
        sourceRoot,
        entry: toPosix(relative(sourceRoot, source.dagFile)),
        files,
      };
      await writeFile(join(building, MANIFEST_NAME), `${JSON.stringify(manifest, null, 2)}\n`);
      await mkdir(dirname(dir), { recursive: true });
      await rename(building, dir).catch(async (error: NodeJS.ErrnoException) => {
        // Written meanwhile by another parse: the same content, by construction.
        if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
      });
    } finally {
      await rm(building, { recursive: true, force: true });
    }
  }

  /** The bundle's copy of the DAG file and its manifest, or undefined when this version has no bundle here. */
  async locate(
    dagId: string,
    versionHash: string,
  ): Promise<{ dir: string; entryFile: string; manifest: BundleManifest } | undefined> {
    if (!isVersionHash(versionHash)) return undefined;
    const cacheKey = `${dagId}\u0000${versionHash}`;
    const cached = this.#located.get(cacheKey);
    if (cached) return cached;
    const dir = this.dirOf(dagId, versionHash);
    let manifest: BundleManifest;
    try {
      manifest = JSON.parse(await readFile(join(dir, MANIFEST_NAME), 'utf8')) as BundleManifest;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const located = { dir, entryFile: join(dir, FILES_DIR, ...manifest.entry.split('/')), manifest };
    this.#located.set(cacheKey, located);
    if (this.#located.size > LOCATED_CACHE_SIZE)
      this.#located.delete(this.#located.keys().next().value as string);
    return located;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** The deepest folder that holds every one of `paths`. */
function commonFolder(paths: readonly string[]): string {
  let common = dirname(paths[0] ?? '/');
  for (const path of paths.slice(1)) {
    while (!isInside(path, common)) {
      const parent = dirname(common);
      if (parent === common) break;
      common = parent;
    }
  }
  return common;
}

function isInside(path: string, folder: string): boolean {
  const rel = relative(folder, path);
  return rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel);
}

function toPosix(path: string): string {
  return path.split(sep).join('/');
}

/** The "type" of the package.json nearest to `folder`, if any. */
function packageTypeOf(folder: string): string | undefined {
  for (let dir = folder; ; dir = dirname(dir)) {
    try {
      const type = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { type?: unknown }).type;
      return typeof type === 'string' ? type : undefined;
    } catch {
      // No package.json here (or unreadable): look further up.
    }
    if (dirname(dir) === dir) return undefined;
  }
}

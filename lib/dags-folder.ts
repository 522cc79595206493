import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

/** A file of the DAGs folder: its path relative to the folder ('/' separators) and content hash. */
export interface DagsFolderFile {
  path: string;
  absolutePath: string;
  sha256: string;
}

/**
 * Every file of the DAGs folder that is deployed with the worker, in path order: DAG files and
 * the modules and data files beside them. Hidden entries and `node_modules` are left out.
 */
export function dagsFolderFiles(folder: string): DagsFolderFile[] {
  const files: DagsFolderFile[] = [];
  const visit = (dir: string): void => {
    const entries = readdirSync(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (entry.name.startsWith('.') || entry.name === 'node_modules') continue;
      const absolutePath = join(dir, entry.name);
      if (entry.isDirectory()) visit(absolutePath);
      else if (entry.isFile()) {
        files.push({
          path: relative(folder, absolutePath).split(sep).join('/'),
          absolutePath,
          sha256: createHash('sha256').update(readFileSync(absolutePath)).digest('hex'),
        });
      }
    }
  };
  visit(folder);
  return files;
}

/** One hash of the folder's deployed files: names and contents. */
export function dagsFolderHash(folder: string): string {
  const hash = createHash('sha256');
  for (const file of dagsFolderFiles(folder)) hash.update(`${file.path} ${file.sha256}\n`);
  return hash.digest('hex');
}

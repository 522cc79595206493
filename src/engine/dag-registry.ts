import { describeSchedule } from '#core/schedule.ts';
import type { VersionedDag } from '#core/serialized-dag.ts';
import { StoreError } from '#store/errors.ts';
import type { DagRecord, ImportError, Store } from '#store/port.ts';
import type { Logger } from './logger.ts';
import { firstRunAt } from './schedules.ts';

export interface ParsedDagsFolder {
  dags: VersionedDag[];
  errors: { fileloc: string; message: string }[];
}

/**
 * Writes the result of parsing the DAGs folder to the store: each DAG's serialized version
 * (immutable, keyed by its hash), its record (pause state and next run kept across parses),
 * the import errors, and `isActive: false` for DAGs whose file no longer defines them.
 * A file that fails to load does not deactivate the DAGs it defined before: they keep running
 * their last good version until the file is fixed, as in Airflow.
 */
export async function registerDags(
  deps: { store: Store; log: Logger; now: () => number; pausedAtCreation: boolean },
  parsed: ParsedDagsFolder,
): Promise<void> {
  const { store } = deps;
  const nowMs = deps.now();
  const now = new Date(nowMs).toISOString();
  const seen = new Set<string>();
  const errors = [...parsed.errors];
  for (const { dag, versionHash } of parsed.dags) {
    seen.add(dag.dagId);
    const existing = await store.getDag(dag.dagId);
    try {
      // A record names only a version already stored, so an unchanged DAG needs no version write.
      if (existing?.versionHash !== versionHash) await store.putSerializedDag(versionHash, dag);
    } catch (error) {
      // Too large for the store, for example: reported like a file that failed to load.
      if (!(error instanceof StoreError)) throw error;
      errors.push({ fileloc: dag.fileloc, message: `DAG ${dag.dagId} cannot be stored: ${error.message}` });
      seen.delete(dag.dagId);
      continue;
    }
    const scheduleExpression = dag.schedule ? describeSchedule(dag.schedule) : null;
    const record = await store.upsertDag({
      dagId: dag.dagId,
      fileloc: dag.fileloc,
      versionHash,
      isActive: true,
      description: dag.description,
      tags: dag.tags,
      scheduleExpression,
      lastParsedAt: now,
      isPaused: deps.pausedAtCreation,
      nextRunAt: firstRunAt(dag, nowMs),
    });
    if (existing && existing.scheduleExpression !== scheduleExpression) {
      // The schedule changed: the next run follows the new schedule from now on.
      await store.updateDag(
        dag.dagId,
        { nextRunAt: firstRunAt({ ...dag, startDate: now }, nowMs) },
        record.revision,
      );
    }
    if (!existing)
      deps.log.info('Registered DAG', { dagId: dag.dagId, fileloc: dag.fileloc, version: versionHash });
    else if (existing.versionHash !== versionHash) {
      deps.log.info('DAG changed: new version', { dagId: dag.dagId, version: versionHash });
    }
  }
  const failedFiles = new Set(errors.map((error) => error.fileloc));
  for (const record of await allDags(store)) {
    if (seen.has(record.dagId) || !record.isActive || failedFiles.has(record.fileloc)) continue;
    await store.updateDag(record.dagId, { isActive: false });
    deps.log.info('DAG is no longer defined; marked inactive', { dagId: record.dagId });
  }
  const importErrors: ImportError[] = errors.map((error) => ({ ...error, timestamp: now }));
  for (const error of importErrors) {
    deps.log.error('DAG file failed to load', { fileloc: error.fileloc, error: error.message });
  }
  await store.replaceImportErrors(importErrors);
}

async function allDags(store: Store): Promise<DagRecord[]> {
  const records: DagRecord[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.listDags({ limit: 100, cursor });
    records.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return records;
}

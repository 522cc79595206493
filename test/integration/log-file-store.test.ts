import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileLogStore } from '#logs/file-store.ts';
import { noteChunkId, workerChunkId } from '#logs/port.ts';

const key = { dagId: 'etl', runId: 'manual__2026-01-01T00:00:00+00:00', taskId: 'extract', mapIndex: -1 };
let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'updraft-logs-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('FileLogStore', () => {
  it('reads chunks in chunk id order, whatever order they were written in', async () => {
    const logs = new FileLogStore(root);
    await logs.appendChunk(key, 1, noteChunkId(Date.parse('2026-01-01T00:00:00Z')), 'note\n');
    await logs.appendChunk(key, 1, workerChunkId(10), 'ten\n');
    await logs.appendChunk(key, 1, workerChunkId(2), 'two\n');
    expect(await logs.read(key, 1)).toBe('two\nten\nnote\n');
  });

  it('keeps one copy of a chunk written twice', async () => {
    const logs = new FileLogStore(root);
    await logs.appendChunk(key, 1, workerChunkId(1), 'once\n');
    await logs.appendChunk(key, 1, workerChunkId(1), 'once\n');
    expect(await logs.read(key, 1)).toBe('once\n');
    expect(await readdir(new FileLogStore(root).folderOf(key, 1))).toEqual(['000001.log']);
  });

  it('is readable by another instance on the same folder', async () => {
    await new FileLogStore(root).appendChunk(key, 2, workerChunkId(1), 'from instance A\n');
    expect(await new FileLogStore(root).read(key, 2)).toBe('from instance A\n');
  });

  it('answers undefined for a try that wrote nothing', async () => {
    expect(await new FileLogStore(root).read(key, 3)).toBeUndefined();
  });

  it('keeps the tries of a mapped task instance apart, in Airflow folder layout', async () => {
    const logs = new FileLogStore(root);
    await logs.appendChunk({ ...key, mapIndex: 0 }, 1, workerChunkId(1), 'mapped\n');
    expect(logs.folderOf({ ...key, mapIndex: 0 }, 1)).toBe(
      join(root, 'dag_id=etl', `run_id=${key.runId}`, 'task_id=extract', 'map_index=0', 'attempt=1'),
    );
    expect(await logs.read(key, 1)).toBeUndefined();
  });
});

import { describe, expect, it } from 'vitest';
import { ApiClient } from '#cli/client.ts';
import { CliUsageError } from '#cli/errors.ts';
import { dagIdParams, runParams } from '#contracts/public-api.ts';
import { ID_MAX_LENGTH, invalidIdReason } from '#core/ids.ts';
import { pathSegmentOf } from '#logs/file-store.ts';
import { dag } from '#sdk/index.ts';

const longest = 'a'.repeat(ID_MAX_LENGTH);
const tooLong = 'a'.repeat(ID_MAX_LENGTH + 1);

describe('the id grammar', () => {
  it('accepts ids of 250 characters of the allowed characters', () => {
    expect(invalidIdReason('DAG', longest)).toBeUndefined();
    expect(invalidIdReason('task', 'extract.v2-final_1')).toBeUndefined();
    expect(invalidIdReason('run', 'manual__2026-01-01T00:00:00+00:00~retry:1')).toBeUndefined();
  });

  it('refuses 251 characters, naming the id and the limit', () => {
    expect(invalidIdReason('run', tooLong)).toBe(
      `run id "${tooLong}" is invalid (251 characters, over the limit of 250)`,
    );
  });

  it('refuses ids of dots only', () => {
    for (const id of ['.', '..', '...'])
      expect(invalidIdReason('run', id)).toBe(
        `run id "${id}" is invalid (an id must not consist of dots only)`,
      );
    expect(invalidIdReason('DAG', '.hidden')).toBeUndefined();
  });

  it('refuses __proto__, a key JavaScript gives a meaning of its own, and accepts other such names', () => {
    expect(invalidIdReason('task', '__proto__')).toBe(
      'task id "__proto__" is invalid (__proto__ is reserved)',
    );
    expect(invalidIdReason('task', 'constructor')).toBeUndefined();
    expect(invalidIdReason('task', '__proto')).toBeUndefined();
  });

  it("refuses '#', '/', '%', spaces and the empty id", () => {
    for (const id of ['a#b', 'a/b', 'a%2Fb', 'a b', ''])
      expect(invalidIdReason('run', id)).toMatch(/is invalid \(expected 1 to 250 letters/);
  });

  it("allows ':', '+' and '~' in run ids only", () => {
    expect(invalidIdReason('run', 'a:b+c~d')).toBeUndefined();
    expect(invalidIdReason('DAG', 'a:b')).toMatch(/DAG id "a:b" is invalid/);
    expect(invalidIdReason('task', 'a+b')).toMatch(/task id "a\+b" is invalid/);
  });
});

describe('ids at the SDK entry', () => {
  it('builds a DAG and a task with 250-character ids', () => {
    const built = dag({ id: longest }, (d) => {
      d.task('b'.repeat(ID_MAX_LENGTH), async () => 1);
    });
    expect(built.taskIds).toEqual(['b'.repeat(ID_MAX_LENGTH)]);
  });

  it('refuses a 251-character DAG id and a task id of dots', () => {
    expect(() => dag({ id: tooLong }, () => undefined)).toThrow(
      `DAG: DAG id "${tooLong}" is invalid (251 characters, over the limit of 250)`,
    );
    expect(() =>
      dag({ id: 'dots' }, (d) => {
        d.task('..', async () => 1);
      }),
    ).toThrow(`DAG 'dots': task id ".." is invalid (an id must not consist of dots only)`);
  });
});

describe('ids at the API entry (its path schemas)', () => {
  it('refuses invalid ids in paths, naming them', () => {
    const long = dagIdParams.safeParse({ dag_id: tooLong });
    expect(long.error?.issues[0]?.message).toContain('over the limit of 250');
    expect(runParams.safeParse({ dag_id: 'etl', dag_run_id: '...' }).success).toBe(false);
    expect(runParams.safeParse({ dag_id: 'etl', dag_run_id: longest }).success).toBe(true);
  });
});

describe('ids at the CLI entry', () => {
  it('refuses an invalid run id before sending anything', async () => {
    // Nothing listens there: a request would fail as unreachable, not as a usage error.
    const client = new ApiClient('http://127.0.0.1:9', 'token');
    const call = (request: () => Promise<unknown>) => Promise.resolve().then(request);
    await expect(call(() => client.getRun('etl', '..'))).rejects.toThrow(CliUsageError);
    await expect(call(() => client.getRun('etl', '..'))).rejects.toThrow('run id ".." is invalid');
    await expect(call(() => client.triggerRun('etl', { dag_run_id: tooLong }))).rejects.toThrow(
      'over the limit of 250',
    );
    await expect(call(() => client.getDag('a/b'))).rejects.toThrow('DAG id "a/b" is invalid');
  });
});

describe('log folder names of ids', () => {
  it('keeps a plain id as it is', () => {
    expect(pathSegmentOf('manual__2026-01-01T00:00:00+00:00')).toBe('manual__2026-01-01T00:00:00+00:00');
  });

  it('keeps every name of a valid id under NAME_MAX with its prefix', () => {
    for (const id of [longest, `${'é'.repeat(10)}${longest}`]) {
      const name = `run_id=${pathSegmentOf(id)}`;
      expect(Buffer.byteLength(name)).toBeLessThanOrEqual(255);
    }
  });

  it('gives distinct ids distinct names, also ids that differ only past the readable head', () => {
    const ids = [
      '..',
      '...',
      '.',
      '_',
      '.a',
      '_a',
      `${longest}`,
      `${'a'.repeat(249)}b`,
      'a/b',
      'a_b',
      'a\\b',
    ];
    const names = ids.map(pathSegmentOf);
    expect(new Set(names).size).toBe(ids.length);
    for (const name of names) {
      expect(name).not.toMatch(/^\.+$/);
      expect(name).not.toMatch(/[/\\]/);
    }
  });
});

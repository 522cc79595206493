import { execFileSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';

/**
 * Task runners and DAG parsers each lead a process group of their own (spawned `detached`), so
 * the processes their code starts can be counted and killed with them: a stopped try, a retired
 * runner or a parser over its time limit takes its whole group along. Out of the server's group,
 * they do not get the terminal's Ctrl-C (the server's to handle); the server kills every group it
 * still has when it exits, and each group's watchdog thread (runner-guard.ts) kills the group
 * when the server is gone without a word (kill -9).
 */

/** Leaders of the groups this process started that may still have members. */
const liveGroups = new Set<number>();

process.once('exit', () => {
  for (const pgid of liveGroups) signalGroup(pgid);
  liveGroups.clear();
});

/** Records a group this process leads the kill of, so it ends when this process exits. */
export function trackGroup(pgid: number): void {
  liveGroups.add(pgid);
}

/**
 * SIGKILLs every process of the group `pgid` and forgets it. After the leader is gone, call it
 * at once (on its exit) and not again: the group id could later name an unrelated group.
 */
export function killGroup(pgid: number): void {
  liveGroups.delete(pgid);
  signalGroup(pgid);
}

function signalGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // No process left in the group.
  }
}

let pageBytes: number | undefined;

function pageSize(): number {
  if (pageBytes === undefined) {
    try {
      pageBytes = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()) || 4096;
    } catch {
      pageBytes = 4096;
    }
  }
  return pageBytes;
}

/** One scan of /proc: resident bytes summed by process group, shared by polls close in time. */
let scan: { at: number; groups: Promise<Map<number, number>> } | undefined;
const SCAN_REUSE_MS = 500;

async function scanGroups(): Promise<Map<number, number>> {
  const groups = new Map<number, number>();
  const page = pageSize();
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return groups;
  }
  await Promise.all(
    entries
      .filter((entry) => /^\d+$/.test(entry))
      .map(async (entry) => {
        let stat: string;
        try {
          stat = await readFile(`/proc/${entry}/stat`, 'utf8');
        } catch {
          return; // Gone meanwhile.
        }
        // The command name, in parentheses, may hold spaces: the fields follow its last ')'.
        // From there: state, ppid, pgrp, … and rss (field 24 of the line, in pages).
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const pgrp = Number(fields[2]);
        const rssPages = Number(fields[21]);
        if (!Number.isFinite(pgrp) || !Number.isFinite(rssPages)) return;
        groups.set(pgrp, (groups.get(pgrp) ?? 0) + rssPages * page);
      }),
  );
  return groups;
}

/**
 * The resident memory (MB) of every process in the group `pgid`, summed (Linux, from
 * /proc/<pid>/stat); undefined when no process of the group is left or /proc cannot be read.
 */
export async function groupResidentMb(pgid: number): Promise<number | undefined> {
  const now = Date.now();
  if (!scan || now - scan.at > SCAN_REUSE_MS) scan = { at: now, groups: scanGroups() };
  const bytes = (await scan.groups).get(pgid);
  return bytes === undefined ? undefined : bytes / (1024 * 1024);
}

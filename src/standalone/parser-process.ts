import { type ChildProcess, fork } from 'node:child_process';

import { fileURLToPath, pathToFileURL } from 'node:url';
import type { TrackedModule } from '#bundles/import-graph.ts';
import { modulesUnchanged } from '#worker/module-tracker.ts';
import { killGroup, trackGroup } from '#worker/process-group.ts';
import type { ParsedDag, ParserToProcessor, ProcessorToParser } from './dag-parsing-protocol.ts';

const PARSER_ENTRY = fileURLToPath(new URL('./dag-processor.ts', import.meta.url));
/**
 * The task runners' guard: the parser's process group (the parser and whatever a DAG file started
 * at import) dies with the server even in an endless loop (a watchdog thread).
 */
const PROCESS_GUARD = pathToFileURL(
  fileURLToPath(new URL('../worker/runner-guard.ts', import.meta.url)),
).href;
/** How long a parser process may take to boot (Node and the SDK), apart from any file's limit. */
const BOOT_TIMEOUT_MS = 60_000;
/** The end of a file's output kept to explain an exit or a timeout. */
const OUTPUT_TAIL_CHARS = 2_000;

export type ParseOutcome =
  | { kind: 'parsed'; dags: ParsedDag[]; errors: string[]; bundle: TrackedModule[] }
  /** `byFile`: the DAG file caused it (an exit, a crash, a timeout), not the parser's start. */
  | { kind: 'failed'; message: string; byFile: boolean };

/**
 * One parser process, serving one DAG file (DagFileParser asks it for that file only, again on
 * later parses while the file's modules are unchanged). It is never reused after the file made it
 * exit or run over its time limit (it is killed then), nor once a module it loaded changed on disk.
 */
export class ParserProcess {
  readonly #child: ChildProcess;
  readonly #ready: Promise<void>;
  #exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  #busy = false;
  #killed = false;
  #nextRequestId = 1;
  #answered = 0;
  #output = '';
  readonly #modules = new Map<string, { mtimeMs: number; size: number }>();
  readonly #exitListeners = new Set<() => void>();

  constructor(options: { cwd: string }) {
    this.#child = fork(PARSER_ENTRY, [], {
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      execArgv: ['--disable-warning=ExperimentalWarning', `--import=${PROCESS_GUARD}`],
      // The leader of a process group of its own: a process a DAG file starts at import is killed
      // with the parser (#worker/process-group.ts), and the terminal's Ctrl-C is the server's alone.
      detached: true,
    });
    const pid = this.#child.pid;
    if (pid !== undefined) trackGroup(pid);
    for (const stream of [this.#child.stdout, this.#child.stderr]) {
      stream?.on('data', (chunk: Buffer) => {
        this.#output = (this.#output + chunk.toString()).slice(-OUTPUT_TAIL_CHARS);
      });
    }
    // A send to a process that just died reports here; its exit is handled below.
    this.#child.on('error', () => undefined);
    this.#child.on('exit', (code, signal) => {
      this.#exited = { code, signal };
      // Whatever ended the parser, the processes its files started end with it.
      if (pid !== undefined) killGroup(pid);
      for (const listener of this.#exitListeners) listener();
    });
    this.#ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the parser process did not start')), BOOT_TIMEOUT_MS);
      const onExit = () => {
        clearTimeout(timer);
        reject(
          new Error(`the parser process ${this.#describeExit()} while starting: ${this.#output.trim()}`),
        );
      };
      this.#exitListeners.add(onExit);
      this.#child.once('error', reject);
      this.#child.once('message', (message: ParserToProcessor) => {
        clearTimeout(timer);
        this.#exitListeners.delete(onExit);
        if (message.type === 'ready') resolve();
      });
    });
    this.#ready.catch(() => undefined);
  }

  get usable(): boolean {
    return this.#exited === null && !this.#killed && !this.#busy && this.#child.connected;
  }

  /**
   * Why this process ended by itself while it was idle, after answering for its file (a timer or
   * a callback the file left called process.exit() or crashed), or undefined when it did not.
   */
  get idleExit(): string | undefined {
    if (this.#exited === null || this.#killed || this.#busy || this.#answered === 0) return undefined;
    return `${this.#describeExit()} after its import (process.exit() or a crash in a timer or a callback the DAG file or a module it imports left running)${this.#outputNote()}`;
  }

  /** The local modules and data files this process loaded, as they were then. */
  get loadedModules(): ReadonlyMap<string, { mtimeMs: number; size: number }> {
    return this.#modules;
  }

  /** Imports `file` in this process within `timeoutMs`; never throws. */
  async parse(
    file: string,
    fileloc: string,
    timeoutMs: number,
    where: { dagsFolder: string; loadLog: string },
  ): Promise<ParseOutcome> {
    try {
      await this.#ready;
    } catch (error) {
      this.kill();
      return { kind: 'failed', message: (error as Error).message, byFile: false };
    }
    if (!this.usable) return { kind: 'failed', message: 'the parser process is not running', byFile: false };
    const again = this.#answered > 0;
    this.#busy = true;
    this.#output = '';
    const requestId = this.#nextRequestId++;
    try {
      return await new Promise<ParseOutcome>((resolve) => {
        const done = (outcome: ParseOutcome) => {
          clearTimeout(timer);
          this.#child.off('message', onMessage);
          this.#exitListeners.delete(onExit);
          resolve(outcome);
        };
        const timer = setTimeout(() => {
          this.kill();
          done({
            kind: 'failed',
            byFile: true,
            message: again
              ? `stopped answering after its import: it did not answer within ${timeoutMs} ms (UPDRAFT_DAG_FILE_PARSE_TIMEOUT_MS); an endless loop in a timer or a callback the DAG file left running?${this.#outputNote()}`
              : `did not finish importing within ${timeoutMs} ms (UPDRAFT_DAG_FILE_PARSE_TIMEOUT_MS): an endless loop or a wait at import time?${this.#outputNote()}`,
          });
        }, timeoutMs);
        const onExit = () => {
          // Output written just before the exit may still be in the pipe.
          setTimeout(
            () =>
              done({
                kind: 'failed',
                byFile: true,
                message: `${this.#describeExit()} ${again ? 'while answering after its import' : 'during import'} (process.exit() or a crash in the DAG file or a module it imports)${this.#outputNote()}`,
              }),
            50,
          );
        };
        const onMessage = (message: ParserToProcessor) => {
          if (message.type !== 'parsed' || message.requestId !== requestId) return;
          for (const module of message.loaded) {
            this.#modules.set(module.path, { mtimeMs: module.mtimeMs, size: module.size });
          }
          this.#answered++;
          done({ kind: 'parsed', dags: message.dags, errors: message.errors, bundle: message.bundle });
        };
        this.#exitListeners.add(onExit);
        this.#child.on('message', onMessage);
        const request: ProcessorToParser = { type: 'parse', requestId, file, fileloc, ...where };
        this.#child.send(request);
      });
    } finally {
      this.#busy = false;
    }
  }

  /** Whether every local module this process loaded is still as it was on disk. */
  modulesUnchanged(): Promise<boolean> {
    return modulesUnchanged(this.#modules);
  }

  /** Kills the parser and every process a DAG file started in it (its process group). */
  kill(): void {
    this.#killed = true;
    if (this.#exited !== null) return;
    const pid = this.#child.pid;
    if (pid !== undefined) killGroup(pid);
    else this.#child.kill('SIGKILL');
  }

  #describeExit(): string {
    const exit = this.#exited;
    if (exit?.signal) return `was killed by signal ${exit.signal}`;
    return `exited with code ${exit?.code ?? 'unknown'}`;
  }

  #outputNote(): string {
    const output = this.#output.trim();
    return output ? `\nIts last output:\n${output}` : '';
  }
}

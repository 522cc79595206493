import { type ChildProcess, fork } from 'node:child_process';

import { fileURLToPath, pathToFileURL } from 'node:url';
import type { TrackedModule } from '#bundles/import-graph.ts';
import { modulesUnchanged } from '#worker/module-tracker.ts';
import type { ParsedDag, ParserToProcessor, ProcessorToParser } from './dag-parsing-protocol.ts';

const PARSER_ENTRY = fileURLToPath(new URL('./dag-processor.ts', import.meta.url));
/**
 * The task runners' guard: the parser dies with the server even in an endless loop (a watchdog
 * thread), and ignores the terminal's Ctrl-C, which is for the server (it then closes its parsers).
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
  | { kind: 'failed'; message: string };

/**
 * One parser process, reused for file after file. It is never reused after a file made it exit
 * or run over its time limit (it is killed then), nor once a module it loaded changed on disk.
 */
export class ParserProcess {
  readonly #child: ChildProcess;
  readonly #ready: Promise<void>;
  #exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  #busy = false;
  #killed = false;
  #nextRequestId = 1;
  #output = '';
  readonly #modules = new Map<string, { mtimeMs: number; size: number }>();
  readonly #exitListeners = new Set<() => void>();

  constructor(options: { cwd: string }) {
    this.#child = fork(PARSER_ENTRY, [], {
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      execArgv: ['--disable-warning=ExperimentalWarning', `--import=${PROCESS_GUARD}`],
    });
    for (const stream of [this.#child.stdout, this.#child.stderr]) {
      stream?.on('data', (chunk: Buffer) => {
        this.#output = (this.#output + chunk.toString()).slice(-OUTPUT_TAIL_CHARS);
      });
    }
    // A send to a process that just died reports here; its exit is handled below.
    this.#child.on('error', () => undefined);
    this.#child.on('exit', (code, signal) => {
      this.#exited = { code, signal };
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

  /** Imports `file` in this process within `timeoutMs`; never throws. */
  async parse(file: string, fileloc: string, timeoutMs: number): Promise<ParseOutcome> {
    try {
      await this.#ready;
    } catch (error) {
      this.kill();
      return { kind: 'failed', message: (error as Error).message };
    }
    if (!this.usable) return { kind: 'failed', message: 'the parser process is not running' };
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
            message: `did not finish importing within ${timeoutMs} ms (UPDRAFT_DAG_FILE_PARSE_TIMEOUT_MS): an endless loop or a wait at import time?${this.#outputNote()}`,
          });
        }, timeoutMs);
        const onExit = () => {
          // Output written just before the exit may still be in the pipe.
          setTimeout(
            () =>
              done({
                kind: 'failed',
                message: `${this.#describeExit()} during import (process.exit() or a crash in the DAG file or a module it imports)${this.#outputNote()}`,
              }),
            50,
          );
        };
        const onMessage = (message: ParserToProcessor) => {
          if (message.type !== 'parsed' || message.requestId !== requestId) return;
          for (const module of message.loaded) {
            this.#modules.set(module.path, { mtimeMs: module.mtimeMs, size: module.size });
          }
          done({ kind: 'parsed', dags: message.dags, errors: message.errors, bundle: message.bundle });
        };
        this.#exitListeners.add(onExit);
        this.#child.on('message', onMessage);
        const request: ProcessorToParser = { type: 'parse', requestId, file, fileloc };
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

  kill(): void {
    this.#killed = true;
    if (this.#exited === null) this.#child.kill('SIGKILL');
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

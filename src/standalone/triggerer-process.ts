import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Logger } from '#engine/logger.ts';
import { TRIGGERER_NODE_FLAGS } from '#triggerer/node-flags.ts';
import { PARENT_PID_ENV } from '#worker/parent-watchdog.ts';

const TRIGGERER_ENTRY = fileURLToPath(new URL('../triggerer/main.ts', import.meta.url));
const GUARD = pathToFileURL(fileURLToPath(new URL('./triggerer-guard.ts', import.meta.url))).href;
/** How long a stop waits for the triggerer to hand its triggers back before killing it. */
const STOP_GRACE_MS = 10_000;
const RESTART_DELAYS_MS = [1_000, 2_000, 5_000, 10_000, 30_000];
/** A triggerer that ran this long before it exited restarts at the shortest delay again. */
const HEALTHY_RUN_MS = 60_000;

export interface TriggererProcessOptions {
  apiUrl: string;
  /** Issues the triggerer's credential (a `triggerer` token). */
  credential: () => Promise<string>;
  cwd: string;
  log: Logger;
  env?: NodeJS.ProcessEnv;
}

/**
 * Standalone's triggerer: a child process that gets only the API's URL and its triggerer
 * credential (plus the settings every process reads), and reaches the store only through the
 * Execution API over HTTP, as the Fargate triggerer does. It is restarted when it exits on its
 * own, with a growing delay; its triggers are taken over by its next incarnation once its job
 * stops heartbeating.
 */
export class TriggererProcess {
  readonly #options: TriggererProcessOptions;
  #child: ChildProcess | null = null;
  #stopping = false;
  #failures = 0;
  #restart: NodeJS.Timeout | null = null;

  constructor(options: TriggererProcessOptions) {
    this.#options = options;
  }

  start(): void {
    this.#launch().catch((error: unknown) =>
      this.#options.log.error('Cannot start the triggerer', { error }),
    );
  }

  async #launch(): Promise<void> {
    if (this.#stopping) return;
    const { apiUrl, cwd, log } = this.#options;
    // A fresh credential for every start: one that expired cannot keep a restarted triggerer out.
    const credential = await this.#options.credential();
    if (this.#stopping) return;
    const startedAt = Date.now();
    const child = fork(TRIGGERER_ENTRY, [], {
      cwd,
      env: {
        ...(this.#options.env ?? process.env),
        UPDRAFT_API_URL: apiUrl,
        UPDRAFT_TRIGGERER_TOKEN: credential,
        [PARENT_PID_ENV]: String(process.pid),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: [...TRIGGERER_NODE_FLAGS, '--disable-warning=ExperimentalWarning', `--import=${GUARD}`],
      // A group of its own: a terminal's Ctrl-C reaches the server only, whose stop sends one
      // SIGTERM (a second signal would make the triggerer exit without handing its triggers back).
      detached: true,
    });
    this.#child = child;
    child.on('error', (error) => log.error('The triggerer process failed', { error }));
    child.on('exit', (code, signal) => {
      if (this.#child === child) this.#child = null;
      if (this.#stopping) return;
      this.#failures = Date.now() - startedAt > HEALTHY_RUN_MS ? 1 : this.#failures + 1;
      const delay = RESTART_DELAYS_MS[Math.min(this.#failures, RESTART_DELAYS_MS.length) - 1] ?? 30_000;
      log.error('The triggerer process exited; it is started again', { code, signal, restartInMs: delay });
      this.#restart = setTimeout(() => this.start(), delay);
    });
  }

  /** The child's pid (tests kill it). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** SIGTERM, then SIGKILL after the grace: a graceful stop hands the triggers back to the store. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#restart) clearTimeout(this.#restart);
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }
}

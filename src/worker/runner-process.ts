import { type ChildProcess, fork } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type {
  PinnedVersion,
  RunnerOutcome,
  RunnerToSupervisor,
  SupervisorToRunner,
  TaskRunContext,
} from './protocol.ts';

const RUNNER_ENTRY = fileURLToPath(new URL('./task-runner.ts', import.meta.url));

/** How long a cancelled task gets to react to ctx.signal before its process is killed. */
export const CANCEL_GRACE_MS = 2_000;

export interface RunHooks {
  onLog(text: string): void;
  pullXCom(taskId: string, key: string): Promise<unknown>;
  /** Stops the try: the process is killed and the run resolves with this message as an error. */
  signal: AbortSignal;
}

/**
 * One task runner child process, reused for one try after another. A process that crashed,
 * was killed for a timeout or was aborted is never reused: the owner asks for a new one.
 */
export class RunnerProcess {
  readonly #child: ChildProcess;
  readonly #ready: Promise<void>;
  #exited = false;
  #current: { runId: number; finish: (outcome: RunnerOutcome) => void; hooks: RunHooks } | null = null;
  #nextRunId = 1;
  /** Local modules this process has loaded, as they were on disk then. */
  readonly #modules = new Map<string, { mtimeMs: number; size: number }>();

  constructor(options: { cwd: string }) {
    this.#child = fork(RUNNER_ENTRY, [], {
      cwd: options.cwd,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
      execArgv: ['--disable-warning=ExperimentalWarning'],
      // Out of the terminal's process group: Ctrl-C is for the supervisor, which lets the try
      // finish or hands it back. The runner still exits when the supervisor goes (disconnect).
      detached: true,
    });
    let rejectReady: (error: Error) => void = () => undefined;
    this.#ready = new Promise((resolve, reject) => {
      rejectReady = reject;
      this.#child.once('error', reject);
      const onReady = (message: RunnerToSupervisor) => {
        if (message.type === 'ready') {
          this.#child.off('message', onReady);
          resolve();
        }
      };
      this.#child.on('message', onReady);
    });
    this.#ready.catch(() => undefined);
    this.#child.on('message', (message: RunnerToSupervisor) => this.#onMessage(message));
    this.#child.on('exit', (code, signal) => {
      this.#exited = true;
      const message = `The task runner process exited unexpectedly (${signal ? `signal ${signal}` : `exit code ${code}`})`;
      // A runner that dies while starting must fail the try waiting for it, not hang it.
      rejectReady(new Error(message));
      this.#current?.finish({ kind: 'error', message });
    });
  }

  get usable(): boolean {
    return !this.#exited && this.#current === null;
  }

  async run(
    file: string,
    context: TaskRunContext,
    args: unknown[],
    hooks: RunHooks,
    pinned?: PinnedVersion,
  ): Promise<RunnerOutcome> {
    try {
      await this.#ready;
    } catch (error) {
      return { kind: 'error', message: (error as Error).message };
    }
    if (this.#exited) return { kind: 'error', message: 'The task runner process is not running' };
    const runId = this.#nextRunId++;
    return new Promise<RunnerOutcome>((resolve) => {
      const onAbort = () => {
        // The task sees ctx.signal abort and may clean up; the process is killed either way.
        const reason = String(hooks.signal.reason ?? 'The try was stopped');
        this.#send({ type: 'cancel', runId, reason });
        const stopNow = () => {
          clearTimeout(timer);
          this.kill();
          finish({ kind: 'error', message: reason });
        };
        const timer = setTimeout(stopNow, CANCEL_GRACE_MS);
        if (this.#current?.runId === runId) this.#current.finish = stopNow;
      };
      const finish = (outcome: RunnerOutcome) => {
        if (this.#current?.runId !== runId) return;
        this.#current = null;
        hooks.signal.removeEventListener('abort', onAbort);
        resolve(outcome);
      };
      this.#current = { runId, finish, hooks };
      if (hooks.signal.aborted) return onAbort();
      hooks.signal.addEventListener('abort', onAbort, { once: true });
      this.#send({ type: 'run', runId, file, context, args, ...(pinned ? { pinned } : {}) });
    });
  }

  /**
   * Whether every local module this process loaded is still as it was on disk. When one changed
   * (or is gone), the process must not run another try: it would run the old code.
   */
  async modulesUnchanged(): Promise<boolean> {
    const checks = [...this.#modules].map(async ([path, loaded]) => {
      try {
        const now = await stat(path);
        return now.mtimeMs === loaded.mtimeMs && now.size === loaded.size;
      } catch {
        return false;
      }
    });
    return (await Promise.all(checks)).every(Boolean);
  }

  kill(): void {
    if (!this.#exited) this.#child.kill('SIGKILL');
    this.#exited = true;
  }

  #send(message: SupervisorToRunner): void {
    if (!this.#exited && this.#child.connected) this.#child.send(message);
  }

  #onMessage(message: RunnerToSupervisor): void {
    const current = this.#current;
    if (!current) return;
    switch (message.type) {
      case 'ready':
        return;
      case 'log':
        current.hooks.onLog(message.text);
        return;
      case 'xcom_pull':
        current.hooks.pullXCom(message.taskId, message.key).then(
          (value) => this.#send({ type: 'xcom_value', requestId: message.requestId, value }),
          (error: unknown) =>
            this.#send({ type: 'xcom_value', requestId: message.requestId, error: (error as Error).message }),
        );
        return;
      case 'outcome':
        for (const module of message.loaded)
          this.#modules.set(module.path, { mtimeMs: module.mtimeMs, size: module.size });
        if (message.runId === current.runId) current.finish(message.outcome);
        return;
    }
  }
}

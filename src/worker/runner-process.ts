import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Resume } from '#contracts/triggers.ts';
import { modulesUnchanged } from './module-tracker.ts';
import { groupResidentMb, killGroup, trackGroup } from './process-group.ts';
import type {
  PinnedVersion,
  RunnerOutcome,
  RunnerToSupervisor,
  SupervisorToRunner,
  TaskRunContext,
} from './protocol.ts';

const RUNNER_ENTRY = fileURLToPath(new URL('./task-runner.ts', import.meta.url));
/** Preloaded into each runner: kills the runner's process group when the supervisor is gone. */
const RUNNER_GUARD = pathToFileURL(fileURLToPath(new URL('./runner-guard.ts', import.meta.url))).href;

/** How often the resident memory of a runner (and of the processes it started) is read during a try. */
export const MEMORY_POLL_MS = 1_000;
/** The end of a runner's native stderr kept to explain a crash (V8's out-of-memory report). */
const STDERR_TAIL_BYTES = 4_096;

/** A runner's memory limit and what sets it, as the failure message names it. */
export interface MemoryLimit {
  mb: number;
  /** The setting or option that chose this limit, e.g. `UPDRAFT_TASK_MEMORY_LIMIT_MB`. */
  source: string;
}

export function memoryLimitMessage(limit: MemoryLimit, what: string): string {
  return `Task exceeded its memory limit of ${limit.mb} MB (${limit.source}): ${what}. Use less memory, or raise the limit with the task's memoryLimitMb option or UPDRAFT_TASK_MEMORY_LIMIT_MB`;
}

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

  readonly memoryLimit: MemoryLimit | undefined;
  /** Why this process was killed by its owner (a memory limit), reported instead of the signal. */
  #killReason: string | undefined;
  #stderrTail = '';
  /** The owner killed the process (a stop, a retirement): its SIGKILL needs no explanation. */
  #killedByOwner = false;
  #memoryTimer: ReturnType<typeof setInterval> | undefined;

  readonly #memoryPollMs: number;

  /** `memoryPollMs`: how often resident memory is read during a try (0: never, the heap limit only). */
  constructor(options: { cwd: string; memoryLimit?: MemoryLimit; memoryPollMs?: number }) {
    this.memoryLimit = options.memoryLimit;
    this.#memoryPollMs = options.memoryPollMs ?? MEMORY_POLL_MS;
    const heapLimit = options.memoryLimit ? [`--max-old-space-size=${options.memoryLimit.mb}`] : [];
    this.#child = fork(RUNNER_ENTRY, [], {
      cwd: options.cwd,
      // stderr is piped to keep what V8 writes there when it dies (out of memory); the task's own
      // console output goes over IPC to the try's log.
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      serialization: 'advanced',
      execArgv: ['--disable-warning=ExperimentalWarning', `--import=${RUNNER_GUARD}`, ...heapLimit],
      // The leader of a process group of its own, with every process its tasks start: the group's
      // memory is the try's, and the group is killed with the runner (process-group.ts). Out of
      // the supervisor's group, the terminal's Ctrl-C reaches the supervisor alone.
      detached: true,
    });
    const pid = this.#child.pid;
    if (pid !== undefined) trackGroup(pid);
    const stderrEnded = new Promise<void>((resolve) => {
      const stderr = this.#child.stderr;
      if (!stderr) return resolve();
      stderr.on('data', (chunk: Buffer) => {
        process.stderr.write(chunk);
        this.#stderrTail = (this.#stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
      });
      stderr.once('close', resolve);
      stderr.once('error', () => resolve());
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
      this.#stopMemoryWatch();
      // Whatever ended the runner, the processes its tasks started end with it.
      if (pid !== undefined) killGroup(pid);
      // What the process wrote last explains a crash; it may arrive just after the exit.
      const settled = Promise.race([stderrEnded, new Promise((resolve) => setTimeout(resolve, 200))]);
      void settled.then(() => {
        const message = this.#exitMessage(code, signal);
        // A runner that dies while starting must fail the try waiting for it, not hang it.
        rejectReady(new Error(message));
        const current = this.#current;
        if (!current) return;
        // The try's log must hold the error that ended it, as it does for a thrown error.
        const tail = this.#killReason ? '' : nativeErrorOf(this.#stderrTail);
        current.hooks.onLog(
          `[${new Date().toISOString()}] {ERROR} Task failed: ${message}${tail ? `\n${tail}` : ''}\n`,
        );
        current.finish({ kind: 'error', message });
      });
    });
  }

  #exitMessage(code: number | null, signal: NodeJS.Signals | null): string {
    if (this.#killReason) return this.#killReason;
    const how = signal ? `signal ${signal}` : `exit code ${code}`;
    if (this.memoryLimit && /heap out of memory|Reached heap limit/i.test(this.#stderrTail)) {
      return memoryLimitMessage(
        this.memoryLimit,
        `its JavaScript heap ran out (the process ended with ${how})`,
      );
    }
    const hint =
      code !== null && signal === null
        ? ' (the task or a library it uses called process.exit())'
        : signal === 'SIGKILL' && !this.#killedByOwner
          ? ' (killed from outside, e.g. by the kernel when the machine ran out of memory)'
          : '';
    return `The task runner process exited unexpectedly (${how})${hint}`;
  }

  /**
   * Reads the resident memory of the runner's process group (the runner and every process its
   * task started) while a try runs; over the limit, the whole group is killed.
   */
  #watchMemory(): void {
    const limit = this.memoryLimit;
    const pid = this.#child.pid;
    if (!limit || pid === undefined || this.#memoryPollMs <= 0) return;
    if (process.platform !== 'linux' || this.#memoryTimer) return;
    this.#memoryTimer = setInterval(() => {
      void groupResidentMb(pid).then((rss) => {
        if (rss === undefined || rss <= limit.mb || this.#exited || this.#killReason) return;
        this.#killReason = memoryLimitMessage(
          limit,
          `its resident memory reached ${Math.round(rss)} MB (the task runner and the processes it started)`,
        );
        killGroup(pid);
      });
    }, this.#memoryPollMs);
    this.#memoryTimer.unref();
  }

  #stopMemoryWatch(): void {
    clearInterval(this.#memoryTimer);
    this.#memoryTimer = undefined;
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
    resume?: { resume: Resume; allowedClasses: readonly string[] },
  ): Promise<RunnerOutcome> {
    return this.#runMessage(hooks, (runId) => ({
      type: 'run',
      runId,
      file,
      context,
      args,
      ...(pinned ? { pinned } : {}),
      ...(resume ? { resume: resume.resume, allowedClasses: resume.allowedClasses } : {}),
    }));
  }

  /** Runs one attempt of a callback function of the DAG in `file`; stopped like a try, through `hooks.signal`. */
  async runCallback(
    file: string,
    callback: Omit<Extract<SupervisorToRunner, { type: 'run_callback' }>, 'type' | 'runId' | 'file'>,
    hooks: RunHooks,
  ): Promise<RunnerOutcome> {
    return this.#runMessage(hooks, (runId) => ({ type: 'run_callback', runId, file, ...callback }));
  }

  async #runMessage(hooks: RunHooks, message: (runId: number) => SupervisorToRunner): Promise<RunnerOutcome> {
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
        this.#stopMemoryWatch();
        hooks.signal.removeEventListener('abort', onAbort);
        resolve(outcome);
      };
      this.#current = { runId, finish, hooks };
      this.#watchMemory();
      if (hooks.signal.aborted) return onAbort();
      hooks.signal.addEventListener('abort', onAbort, { once: true });
      this.#send(message(runId));
    });
  }

  /**
   * Whether every local module this process loaded is still as it was on disk. When one changed
   * (or is gone), the process must not run another try: it would run the old code.
   */
  modulesUnchanged(): Promise<boolean> {
    return modulesUnchanged(this.#modules);
  }

  /** Kills the runner and every process its tasks started (its process group). */
  kill(): void {
    this.#killedByOwner = true;
    const pid = this.#child.pid;
    if (!this.#exited) {
      if (pid !== undefined) killGroup(pid);
      else this.#child.kill('SIGKILL');
    }
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

/** The lines of a runner's native stderr that say why it died (V8's fatal error report). */
function nativeErrorOf(stderr: string): string {
  const lines = stderr.split('\n').filter((line) => /FATAL ERROR|fatal|out of memory|Error/i.test(line));
  return lines.slice(-5).join('\n').trim();
}

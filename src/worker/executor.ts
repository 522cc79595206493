import { join } from 'node:path';
import { BundleStore } from '#bundles/store.ts';
import { DEFAULT_ALLOWED_DESERIALIZATION_CLASSES } from '#sdk/serde.ts';
import type { StartedCallback, StartedTask } from './execution-client.ts';
import {
  callbackRunContextOf,
  type PinnedVersion,
  type RunnerOutcome,
  taskRunContextOf,
} from './protocol.ts';
import { type MemoryLimit, type RunHooks, RunnerProcess } from './runner-process.ts';

/** What a try's code may ask of the worker while it runs, and how the worker stops it. */
export type TaskHooks = RunHooks;

/**
 * Runs one started try's code and says how it ended. The standalone pool runs it in a task
 * runner process; a Lambda worker may run it in-process. Never throws: failures are outcomes.
 */
export interface TaskExecutor {
  run(started: StartedTask, args: unknown[], hooks: TaskHooks): Promise<RunnerOutcome>;
}

/** An idle runner and the code it has loaded: a bundle ('<dag>@<version>'), the DAGs folder, or nothing yet. */
interface IdleRunner {
  runner: RunnerProcess;
  code: string | null;
}

const ON_DISK = 'dags folder';

/**
 * Runs tries in task runner child processes. A try runs its run's DAG version: the runner imports
 * the version's code bundle (the DAG file and its local modules as they were parsed), so an edit
 * or a broken file on disk does not change what a running DAG run executes. A runner process
 * serves one bundle: it is reused for the next try of the same version and retired for another,
 * so its module cache never holds two versions. Without a bundle (none configured, or a version
 * parsed before bundles existed) the try runs the DAG file as it is on disk, in a runner retired
 * once a module it loaded changes.
 *
 * Runners, busy and idle, number at most the slots plus `spareRunners`: the spares keep other
 * versions' runners idle while every slot's runner holds one DAG's code, so tries of a few DAGs
 * interleaved reuse their runners instead of booting a process (and retiring a warm one) each.
 */
export class ProcessTaskExecutor implements TaskExecutor {
  readonly #dagsFolder: string;
  readonly #cwd: string;
  readonly #bundles: BundleStore | undefined;
  readonly #idle: IdleRunner[] = [];
  /** Runners running a try or a callback now. */
  #busy = 0;
  /** Runners kept at most, busy and idle: the pool's slots once warmed, plus the spares. */
  #slots = 8;
  readonly #spareRunners: number;
  #closed = false;

  /** UPDRAFT_TASK_MEMORY_LIMIT_MB: the limit of a try whose task sets none; 0 for none. */
  readonly #memoryLimitMb: number;

  /** UPDRAFT_ALLOWED_DESERIALIZATION_CLASSES: what a resumed try may rebuild from its event. */
  readonly #allowedClasses: readonly string[];

  constructor(options: {
    dagsFolder: string;
    cwd: string;
    bundlesFolder?: string | undefined;
    memoryLimitMb?: number | undefined;
    allowedDeserializationClasses?: readonly string[] | undefined;
    /** UPDRAFT_SPARE_TASK_RUNNERS: runners kept beyond the slots (default 0). */
    spareRunners?: number | undefined;
  }) {
    this.#spareRunners = options.spareRunners ?? 0;
    this.#memoryLimitMb = options.memoryLimitMb ?? 0;
    this.#allowedClasses = options.allowedDeserializationClasses ?? DEFAULT_ALLOWED_DESERIALIZATION_CLASSES;
    this.#dagsFolder = options.dagsFolder;
    this.#cwd = options.cwd;
    this.#bundles = options.bundlesFolder ? new BundleStore(options.bundlesFolder) : undefined;
  }

  /** Starts processes ahead of the first tries, so they do not wait for a process to boot. */
  warm(count: number): void {
    this.#slots = count;
    while (this.#idle.length < count) this.#idle.push({ runner: this.#spawn(), code: null });
  }

  async run(started: StartedTask, args: unknown[], hooks: TaskHooks): Promise<RunnerOutcome> {
    const target = await this.#codeOf(started, hooks);
    const resume = started.resume
      ? { resume: started.resume, allowedClasses: this.#allowedClasses }
      : undefined;
    return this.#withRunner(target.code, this.#memoryLimitOf(started), (runner) =>
      runner.run(target.file, taskRunContextOf(started), args, hooks, target.pinned, resume),
    );
  }

  /** One attempt of a callback, in a runner holding its run's DAG version, like a try. */
  async runCallback(started: StartedCallback, hooks: TaskHooks): Promise<RunnerOutcome> {
    const target = await this.#codeOf(started, hooks);
    const call = {
      dagId: started.dag_id,
      taskId: started.task_id,
      event: started.event,
      index: started.index,
      name: started.name,
      context: callbackRunContextOf(started),
    };
    return this.#withRunner(target.code, this.#defaultMemoryLimit(), (runner) =>
      runner.runCallback(target.file, call, hooks),
    );
  }

  /**
   * Runs `work` on a runner holding `code`, then keeps or retires it. The runner counts as busy
   * from before it is chosen (choosing may wait on a module check) until it is released.
   */
  async #withRunner(
    code: string,
    memory: MemoryLimit | undefined,
    work: (runner: RunnerProcess) => Promise<RunnerOutcome>,
  ): Promise<RunnerOutcome> {
    this.#busy += 1;
    let runner: RunnerProcess | undefined;
    try {
      runner = await this.#acquire(code, memory);
      return await work(runner);
    } finally {
      this.#busy -= 1;
      if (runner) this.#release(runner, code);
    }
  }

  /** Ends the idle processes; a process still running a try ends when its try does. */
  close(): void {
    this.#closed = true;
    for (const { runner } of this.#idle.splice(0)) runner.kill();
  }

  /** The file the try imports: its version's bundle copy, else the DAG file on disk. */
  async #codeOf(
    started: Pick<StartedTask, 'dag_id' | 'dag_version' | 'fileloc'>,
    hooks: TaskHooks,
  ): Promise<{ file: string; code: string; pinned?: PinnedVersion }> {
    const onDisk = join(this.#dagsFolder, started.fileloc);
    if (!this.#bundles) {
      return {
        file: onDisk,
        code: ON_DISK,
        pinned: { fileloc: started.fileloc, versionHash: started.dag_version },
      };
    }
    const bundle = await this.#bundles.locate(started.dag_id, started.dag_version).catch(() => undefined);
    if (bundle) return { file: bundle.entryFile, code: `${started.dag_id}@${started.dag_version}` };
    hooks.onLog(
      `[${new Date().toISOString()}] {WARNING} DAG version ${started.dag_version} has no code bundle in ${this.#bundles.folder} (parsed before bundles existed, or removed): running ${started.fileloc} as it is on disk now\n`,
    );
    return { file: onDisk, code: ON_DISK };
  }

  /**
   * The try's memory limit: its task's memoryLimitMb, else the setting. A runner's heap limit is
   * fixed when it starts, so a runner only serves tries with its own limit.
   */
  #memoryLimitOf(started: StartedTask): MemoryLimit | undefined {
    const own = started.memory_limit_mb;
    if (own !== null && own !== undefined) return { mb: own, source: "the task's memoryLimitMb" };
    return this.#defaultMemoryLimit();
  }

  async #acquire(code: string, memory: MemoryLimit | undefined): Promise<RunnerProcess> {
    const fits = (idle: IdleRunner) =>
      idle.runner.memoryLimit?.mb === memory?.mb && idle.runner.memoryLimit?.source === memory?.source;
    const same = this.#take((idle) => idle.code === code && fits(idle));
    if (same && (code !== ON_DISK || (await same.modulesUnchanged()))) return same;
    same?.kill();
    const fresh = this.#take((idle) => idle.code === null && fits(idle));
    if (fresh) return fresh;
    // Every idle runner holds other code: at capacity, the least recently used one is retired.
    if (this.#idle.length + this.#busy > this.#capacity) this.#idle.shift()?.runner.kill();
    return this.#spawn(memory);
  }

  get #capacity(): number {
    return this.#slots + this.#spareRunners;
  }

  /** Takes the most recently used usable idle runner that matches; drops dead ones on the way. */
  #take(matches: (idle: IdleRunner) => boolean): RunnerProcess | undefined {
    for (let index = this.#idle.length - 1; index >= 0; index -= 1) {
      const idle = this.#idle[index] as IdleRunner;
      if (!idle.runner.usable) {
        this.#idle.splice(index, 1);
        continue;
      }
      if (!matches(idle)) continue;
      this.#idle.splice(index, 1);
      return idle.runner;
    }
    return undefined;
  }

  #release(runner: RunnerProcess, code: string): void {
    if (!runner.usable || this.#closed) {
      runner.kill();
      return;
    }
    this.#idle.push({ runner, code });
    // Bounded: the least recently used idle runners beyond the capacity are retired (dead ones
    // first: they hold no place).
    for (let index = this.#idle.length - 1; index >= 0; index -= 1)
      if (!this.#idle[index]?.runner.usable) this.#idle.splice(index, 1);
    while (this.#idle.length > 0 && this.#idle.length + this.#busy > this.#capacity)
      this.#idle.shift()?.runner.kill();
  }

  #spawn(memory = this.#defaultMemoryLimit()): RunnerProcess {
    return new RunnerProcess({ cwd: this.#cwd, ...(memory ? { memoryLimit: memory } : {}) });
  }

  #defaultMemoryLimit(): MemoryLimit | undefined {
    return this.#memoryLimitMb > 0
      ? { mb: this.#memoryLimitMb, source: 'UPDRAFT_TASK_MEMORY_LIMIT_MB' }
      : undefined;
  }
}

import { join } from 'node:path';
import type { StartedTask } from './execution-client.ts';
import type { RunnerOutcome } from './protocol.ts';
import { type RunHooks, RunnerProcess } from './runner-process.ts';

/** What a try's code may ask of the worker while it runs, and how the worker stops it. */
export type TaskHooks = RunHooks;

/**
 * Runs one started try's code and says how it ended. The standalone pool runs it in a task
 * runner process; a Lambda worker may run it in-process. Never throws: failures are outcomes.
 */
export interface TaskExecutor {
  run(started: StartedTask, args: unknown[], hooks: TaskHooks): Promise<RunnerOutcome>;
}

/**
 * Runs tries in task runner child processes, reusing an idle process for the next try unless a
 * module it loaded has changed on disk since (then the process is retired and a fresh one runs
 * the try), so a changed helper module is always picked up and no process accumulates copies.
 */
export class ProcessTaskExecutor implements TaskExecutor {
  readonly #dagsFolder: string;
  readonly #cwd: string;
  readonly #idle: RunnerProcess[] = [];
  #closed = false;

  constructor(options: { dagsFolder: string; cwd: string }) {
    this.#dagsFolder = options.dagsFolder;
    this.#cwd = options.cwd;
  }

  /** Starts processes ahead of the first tries, so they do not wait for a process to boot. */
  warm(count: number): void {
    while (this.#idle.length < count) this.#idle.push(this.#spawn());
  }

  async run(started: StartedTask, args: unknown[], hooks: TaskHooks): Promise<RunnerOutcome> {
    const runner = await this.#acquire();
    const outcome = await runner.run(
      join(this.#dagsFolder, started.fileloc),
      {
        dagId: started.dag_id,
        runId: started.dag_run_id,
        taskId: started.task_id,
        mapIndex: started.map_index,
        tryNumber: started.try_number,
        maxTries: started.max_tries,
        logicalDate: started.logical_date,
        dataIntervalStart: started.data_interval_start,
        dataIntervalEnd: started.data_interval_end,
        params: started.params,
        conf: started.conf,
      },
      args,
      hooks,
      { fileloc: started.fileloc, versionHash: started.dag_version },
    );
    if (runner.usable && !this.#closed) this.#idle.push(runner);
    else runner.kill();
    return outcome;
  }

  /** Ends the idle processes; a process still running a try ends when its try does. */
  close(): void {
    this.#closed = true;
    for (const runner of this.#idle.splice(0)) runner.kill();
  }

  async #acquire(): Promise<RunnerProcess> {
    for (let runner = this.#idle.pop(); runner; runner = this.#idle.pop()) {
      if (runner.usable && (await runner.modulesUnchanged())) return runner;
      runner.kill();
    }
    return this.#spawn();
  }

  #spawn(): RunnerProcess {
    return new RunnerProcess({ cwd: this.#cwd });
  }
}

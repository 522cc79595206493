import type { Command } from 'commander';
import { type CliContext, integerOption } from './context.ts';
import { formatRun, formatRuns, formatTaskInstances } from './format.ts';
import { waitForRun } from './wait.ts';

const DEFAULT_RUNS_LIMIT = 25;

export function registerRunCommands(program: Command, ctx: CliContext): void {
  const runs = program.command('runs').description('List, inspect and wait for DAG runs');

  runs
    .command('list <dag_id>')
    .description("List a DAG's runs, newest first")
    .option('--limit <n>', 'how many runs to show', integerOption(1, 1000), DEFAULT_RUNS_LIMIT)
    .option('--json', "print the API's JSON")
    .action(async (dagId: string, options: { limit: number; json?: boolean }) => {
      const collection = await ctx.client.listRuns(dagId, options.limit);
      if (options.json) return ctx.printJson(collection);
      ctx.print(formatRuns(collection.dag_runs));
      if (collection.total_entries > collection.dag_runs.length) {
        ctx.print(
          `(${collection.dag_runs.length} of ${collection.total_entries} runs; use --limit to see more)`,
        );
      }
    });

  runs
    .command('show <dag_id> <run_id>')
    .description('Show a run and its task instances')
    .option('--json', "print the API's JSON")
    .action(async (dagId: string, runId: string, options: { json?: boolean }) => {
      const run = await ctx.client.getRun(dagId, runId);
      if (options.json) return ctx.printJson(run);
      const collection = await ctx.client.listTaskInstances(dagId, runId);
      ctx.print(`${formatRun(run)}\n${formatTaskInstances(collection.task_instances)}`);
    });

  runs
    .command('wait <dag_id> <run_id>')
    .description('Wait for a run to finish; exits 0 when it succeeded, 1 when it failed, 2 on timeout')
    .option('--timeout <seconds>', 'give up after this many seconds', integerOption(1))
    .option('--json', 'print the final run and task instances as JSON')
    .action(async (dagId: string, runId: string, options: { timeout?: number; json?: boolean }) => {
      await waitAndReport(ctx, dagId, runId, options);
    });
}

/** Waits for the run, prints its final state and task table, and sets the exit code from its outcome. */
export async function waitAndReport(
  ctx: CliContext,
  dagId: string,
  runId: string,
  options: { timeout?: number; json?: boolean },
): Promise<void> {
  const result = await waitForRun({
    client: ctx.client,
    dagId,
    runId,
    timeoutSeconds: options.timeout,
    pollIntervalMs: ctx.io.pollIntervalMs,
    // With --json, stdout carries only the JSON document.
    progress: options.json ? ctx.io.stderr : ctx.io.stdout,
  });
  const { run, taskInstances } = result;
  if (options.json) {
    ctx.printJson({ dag_run: run, task_instances: taskInstances });
  } else {
    const headline =
      result.outcome === 'finished'
        ? `Run ${run.dag_run_id} of ${dagId} finished: ${run.state}`
        : `Run ${run.dag_run_id} of ${dagId} is still ${run.state}`;
    ctx.print(`${headline}\n${formatTaskInstances(taskInstances)}`);
  }
  if (result.outcome === 'timeout') {
    ctx.warn(
      `Timed out after ${options.timeout} s waiting for run ${run.dag_run_id} of ${dagId} (state: ${run.state}).`,
    );
    ctx.exitCode = 2;
  } else {
    ctx.exitCode = run.state === 'success' ? 0 : 1;
  }
}

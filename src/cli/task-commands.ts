import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import type { ClearTaskInstancesBody } from '#contracts/public-api.ts';
import { type CliContext, integerOption } from './context.ts';
import { CliError } from './errors.ts';
import { formatJson, formatTaskInstances } from './format.ts';

export function registerTaskCommands(program: Command, ctx: CliContext): void {
  const tasks = program.command('tasks').description('Inspect, read the logs of and clear task instances');

  tasks
    .command('list <dag_id> <run_id>')
    .description('List the task instances of a run')
    .option('--json', "print the API's JSON")
    .action(async (dagId: string, runId: string, options: { json?: boolean }) => {
      const collection = await ctx.client.listTaskInstances(dagId, runId);
      if (options.json) return ctx.printJson(collection);
      ctx.print(formatTaskInstances(collection.task_instances));
    });

  tasks
    .command('logs <dag_id> <run_id> <task_id>')
    .description("Print a task instance's log (default: its latest try)")
    .option('--try <n>', 'the try number', integerOption(1))
    .option('--map-index <n>', 'the map index of a mapped task', integerOption(-1), -1)
    .option('--json', "print the API's JSON")
    .action(
      async (
        dagId: string,
        runId: string,
        taskId: string,
        options: { try?: number; mapIndex: number; json?: boolean },
      ) => {
        let tryNumber = options.try;
        if (tryNumber === undefined) {
          const ti = await ctx.client.getTaskInstance(dagId, runId, taskId, options.mapIndex);
          if (ti.try_number < 1) {
            throw new CliError(
              `Task ${taskId}${options.mapIndex >= 0 ? `[${options.mapIndex}]` : ''} has not run yet in run ${runId} of ${dagId} (state: ${ti.state ?? 'none'}): no log.`,
            );
          }
          tryNumber = ti.try_number;
        }
        const log = await ctx.client.getLog(dagId, runId, taskId, tryNumber, options.mapIndex);
        if (options.json) return ctx.printJson(log);
        if (log.content !== '') ctx.print(log.content);
      },
    );

  tasks
    .command('xcom <dag_id> <run_id> <task_id>')
    .description("Print a task instance's XCom (default: its return value)")
    .option('--key <key>', 'the XCom key', 'return_value')
    .option('--map-index <n>', 'the map index of a mapped task', integerOption(-1), -1)
    .option('--json', "print the API's JSON")
    .action(
      async (
        dagId: string,
        runId: string,
        taskId: string,
        options: { key: string; mapIndex: number; json?: boolean },
      ) => {
        const entry = await ctx.client.getXCom(dagId, runId, taskId, options.key, options.mapIndex);
        if (options.json) return ctx.printJson(entry);
        ctx.print(formatJson(entry.value));
      },
    );

  tasks
    .command('clear <dag_id> <run_id> <task_id>')
    .description('Clear a task instance (and, with --downstream, those after it) so it runs again')
    .option('--downstream', 'also clear the tasks downstream of it')
    .option('--yes', 'clear without asking for confirmation')
    .option('--json', "print the API's JSON")
    .action(
      async (
        dagId: string,
        runId: string,
        taskId: string,
        options: { downstream?: boolean; yes?: boolean; json?: boolean },
      ) => {
        const body: ClearTaskInstancesBody = {
          dag_run_id: runId,
          task_ids: [taskId],
          include_downstream: options.downstream ?? false,
        };
        if (!options.yes) {
          const preview = await ctx.client.clearTaskInstances(dagId, { ...body, dry_run: true });
          // With --json, stdout carries only the final JSON document.
          const say = options.json ? ctx.warn.bind(ctx) : ctx.print.bind(ctx);
          say(`These task instances would be cleared:\n${formatTaskInstances(preview.task_instances)}`);
          if (!(await confirm(ctx, `Clear ${preview.task_instances.length} task instance(s)? [y/N] `))) {
            ctx.warn(
              ctx.io.stdin.isTTY
                ? 'Nothing cleared.'
                : 'Nothing cleared: pass --yes to clear without a prompt.',
            );
            ctx.exitCode = 2;
            return;
          }
        }
        const cleared = await ctx.client.clearTaskInstances(dagId, body);
        if (options.json) return ctx.printJson(cleared);
        ctx.print(
          `Cleared ${cleared.task_instances.length} task instance(s):\n${formatTaskInstances(cleared.task_instances)}`,
        );
      },
    );
}

/** Asks on a terminal; anything not a terminal (a pipe, CI) counts as "no". */
async function confirm(ctx: CliContext, question: string): Promise<boolean> {
  if (!ctx.io.stdin.isTTY) return false;
  const prompt = createInterface({ input: ctx.io.stdin, output: ctx.io.stderr });
  try {
    const answer = await prompt.question(question);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    prompt.close();
  }
}

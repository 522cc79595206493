import type { Command } from 'commander';
import type * as z from 'zod';
import type { callbackListSchema } from '#contracts/callbacks.ts';
import { CALLBACK_KINDS, CALLBACK_STATES } from '#core/callbacks.ts';
import type { CliContext } from './context.ts';
import { CliError } from './errors.ts';
import { formatTable } from './format.ts';

type CallbackCollection = z.infer<typeof callbackListSchema>;

export function registerCallbackCommands(program: Command, ctx: CliContext): void {
  const callbacks = program.command('callbacks').description("Inspect a DAG run's callbacks");
  callbacks
    .command('list')
    .description(
      "List a run's callbacks (default: the DAG's latest run): kind, target, state, attempts, where it ran",
    )
    .argument('<dag_id>')
    .argument('[run_id]', 'the run; default: the latest run of the DAG')
    .option('--task <task_id>', 'only the callbacks of this task')
    .option('--kind <kind>', `only this kind (${CALLBACK_KINDS.join(', ')})`)
    .option('--state <state>', `only this state (${CALLBACK_STATES.join(', ')})`)
    .option('--json', "print the API's JSON")
    .action(
      async (
        dagId: string,
        runId: string | undefined,
        options: { task?: string; kind?: string; state?: string; json?: boolean },
      ) => {
        if (options.kind !== undefined && !(CALLBACK_KINDS as readonly string[]).includes(options.kind)) {
          throw new CliError(`--kind ${options.kind} is not a callback kind (${CALLBACK_KINDS.join(', ')})`);
        }
        if (options.state !== undefined && !(CALLBACK_STATES as readonly string[]).includes(options.state)) {
          throw new CliError(
            `--state ${options.state} is not a callback state (${CALLBACK_STATES.join(', ')})`,
          );
        }
        const run = runId ?? (await latestRunOf(ctx, dagId));
        // Every page: a run may owe thousands of callbacks.
        const callbacks: CallbackCollection['callbacks'] = [];
        let cursor: string | undefined;
        do {
          const page = await ctx.client.requestJson<CallbackCollection>(
            'GET',
            `/dags/${encodeURIComponent(dagId)}/dagRuns/${encodeURIComponent(run)}/callbacks`,
            { task_id: options.task, kind: options.kind, state: options.state, limit: '1000', cursor },
          );
          callbacks.push(...page.callbacks);
          cursor = page.next_cursor;
        } while (cursor !== undefined);
        const collection: CallbackCollection = { callbacks, total_entries: callbacks.length };
        if (options.json) return ctx.printJson(collection);
        ctx.print(formatCallbacks(collection));
      },
    );
  callbacks
    .command('logs')
    .description('Print the log of one attempt of a callback (default: its latest attempt)')
    .argument('<dag_id>')
    .argument('<run_id>')
    .argument('<callback_id>')
    .option('--attempt <n>', 'the attempt (from 1)')
    .action(async (dagId: string, runId: string, callbackId: string, options: { attempt?: string }) => {
      const base = `/dags/${encodeURIComponent(dagId)}/dagRuns/${encodeURIComponent(runId)}/callbacks/${encodeURIComponent(callbackId)}`;
      let attempt = options.attempt === undefined ? undefined : Number(options.attempt);
      if (attempt !== undefined && (!Number.isInteger(attempt) || attempt < 1)) {
        throw new CliError(`--attempt ${options.attempt} is not a positive integer`);
      }
      attempt ??= Math.max(1, (await ctx.client.requestJson<{ attempt: number }>('GET', base)).attempt);
      const log = await ctx.client.requestJson<{ content: string }>('GET', `${base}/logs/${attempt}`);
      ctx.print(log.content);
    });
}

async function latestRunOf(ctx: CliContext, dagId: string): Promise<string> {
  const runs = await ctx.client.listRuns(dagId, 1);
  const latest = runs.dag_runs[0];
  if (!latest) throw new CliError(`DAG ${dagId} has no runs`);
  return latest.dag_run_id;
}

function formatCallbacks(collection: CallbackCollection): string {
  if (collection.callbacks.length === 0) return 'No callbacks found.\n';
  return formatTable(
    ['CALLBACK_ID', 'KIND', 'TARGET', 'NAME', 'STATE', 'ATTEMPT', 'RUNS_ON', 'HOST', 'ERROR'],
    collection.callbacks.map((callback) => [
      callback.callback_id,
      callback.kind,
      callback.task_id === null
        ? callback.dag_run_id
        : `${callback.task_id}${(callback.map_index ?? -1) >= 0 ? `[${callback.map_index}]` : ''} try ${callback.try_number}`,
      callback.name,
      callback.state,
      `${callback.attempt}/${callback.max_attempts}`,
      callback.place,
      callback.hostname ?? '-',
      callback.error_message ?? '-',
    ]),
  );
}

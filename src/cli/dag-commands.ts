import type { Command } from 'commander';
import type { DagCollection, TriggerDagRunBody } from '#contracts/public-api.ts';
import { type CliContext, checkIsoDate, integerOption, parseConf } from './context.ts';
import { formatDagDetail, formatDags, formatImportErrors } from './format.ts';
import { waitAndReport } from './run-commands.ts';

const DAGS_PAGE_SIZE = 100;
/** Bounds `dags list` against a server whose cursor never ends. */
const MAX_DAG_PAGES = 100;

export function registerDagCommands(program: Command, ctx: CliContext): void {
  const dags = program.command('dags').description('List, inspect, trigger and pause DAGs');

  dags
    .command('list')
    .description('List DAGs and DAG files that failed to import')
    .option('--json', "print the API's JSON")
    .action(async (options: { json?: boolean }) => {
      const collection = await listAllDags(ctx);
      if (options.json) return ctx.printJson(collection);
      ctx.print(formatDags(collection.dags) + formatImportErrors(collection.import_errors));
    });

  dags
    .command('show <dag_id>')
    .description('Show a DAG and its tasks')
    .option('--json', "print the API's JSON")
    .action(async (dagId: string, options: { json?: boolean }) => {
      const dag = await ctx.client.getDag(dagId);
      if (options.json) return ctx.printJson(dag);
      ctx.print(formatDagDetail(dag));
    });

  dags
    .command('trigger <dag_id>')
    .description('Create a manual run of a DAG')
    .option('--conf <json>', 'the run configuration, a JSON object')
    .option('--run-id <id>', 'the run id (default: manual__<logical date>)')
    .option('--logical-date <iso>', 'the logical date (default: now)')
    .option('--wait', 'wait for the run to finish; exit 0 when it succeeded, 1 when it failed')
    .option('--timeout <seconds>', 'with --wait, give up after this many seconds (exit 2)', integerOption(1))
    .option('--json', "print the API's JSON")
    .action(
      async (
        dagId: string,
        options: {
          conf?: string;
          runId?: string;
          logicalDate?: string;
          wait?: boolean;
          timeout?: number;
          json?: boolean;
        },
      ) => {
        // Validate everything before the POST so a typo creates no run.
        const body: TriggerDagRunBody = {};
        if (options.conf !== undefined) body.conf = parseConf(options.conf);
        if (options.runId !== undefined) body.dag_run_id = options.runId;
        if (options.logicalDate !== undefined)
          body.logical_date = checkIsoDate('--logical-date', options.logicalDate);
        const run = await ctx.client.triggerRun(dagId, body);
        if (!options.wait) {
          if (options.json) return ctx.printJson(run);
          return ctx.print(`Triggered ${dagId}: run ${run.dag_run_id} (${run.state})`);
        }
        if (!options.json) ctx.print(`Triggered ${dagId}: run ${run.dag_run_id}`);
        await waitAndReport(ctx, dagId, run.dag_run_id, options);
      },
    );

  for (const [name, isPaused] of [
    ['pause', true],
    ['unpause', false],
  ] as const) {
    dags
      .command(`${name} <dag_id>`)
      .description(isPaused ? 'Stop scheduling new runs of a DAG' : 'Resume scheduling runs of a DAG')
      .option('--json', "print the API's JSON")
      .action(async (dagId: string, options: { json?: boolean }) => {
        const dag = await ctx.client.patchDag(dagId, { is_paused: isPaused });
        if (options.json) return ctx.printJson(dag);
        ctx.print(`DAG ${dag.dag_id} is ${dag.is_paused ? 'paused' : 'unpaused'}.`);
      });
  }
}

/** Every page of DAGs, as one collection shaped like the API's. */
async function listAllDags(ctx: CliContext): Promise<DagCollection> {
  const first = await ctx.client.listDags({ limit: DAGS_PAGE_SIZE });
  const dags = [...first.dags];
  let cursor = first.next_cursor;
  for (let page = 1; cursor && page < MAX_DAG_PAGES; page++) {
    const next = await ctx.client.listDags({ limit: DAGS_PAGE_SIZE, cursor });
    dags.push(...next.dags);
    cursor = next.next_cursor;
  }
  return { dags, total_entries: first.total_entries, import_errors: first.import_errors };
}

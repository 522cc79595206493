import type { Command } from 'commander';
import type { Trigger, TriggerCollection, Triggerer, TriggererCollection } from '#contracts/public-api.ts';
import { type CliContext, integerOption } from './context.ts';
import { formatTriggerers, formatTriggers } from './format.ts';

const DEFAULT_TRIGGERS_LIMIT = 25;
const TRIGGERERS_PAGE_SIZE = 100;
/** Bounds a listing against a server whose cursor never ends. */
const MAX_PAGES = 100;

export function registerTriggerCommands(program: Command, ctx: CliContext): void {
  program
    .command('triggers')
    .description('Inspect the triggers that deferred task instances wait on')
    .command('list')
    .description('List triggers: what each waits for, its state and the task instance it resumes')
    .option('--limit <n>', 'how many triggers to show', integerOption(1, 1000), DEFAULT_TRIGGERS_LIMIT)
    .option('--json', "print the API's JSON")
    .action(async (options: { limit: number; json?: boolean }) => {
      const collection = await listTriggers(ctx, options.limit);
      if (options.json) return ctx.printJson(collection);
      ctx.print(formatTriggers(collection.triggers));
      if (collection.next_cursor) {
        ctx.print(`(${collection.triggers.length} triggers shown; more may follow: use --limit to see more)`);
      }
    });

  program
    .command('triggerers')
    .description('Inspect the triggerers that run triggers')
    .command('list')
    .description('List triggerer jobs: running, dead (silent past the heartbeat timeout) and complete')
    .option('--json', "print the API's JSON")
    .action(async (options: { json?: boolean }) => {
      const collection = await listAllTriggerers(ctx);
      if (options.json) return ctx.printJson(collection);
      ctx.print(formatTriggerers(collection.triggerers));
    });
}

/**
 * The first `limit` triggers, following the cursor when a page comes back short (a store page
 * also ends at 1 MB); `next_cursor` is kept when more may follow.
 */
async function listTriggers(ctx: CliContext, limit: number): Promise<TriggerCollection> {
  const triggers: Trigger[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const next = await ctx.client.listTriggers({ limit: limit - triggers.length, cursor });
    triggers.push(...next.triggers);
    cursor = next.next_cursor;
    if (!cursor || triggers.length >= limit) break;
  }
  return { triggers, ...(cursor ? { next_cursor: cursor } : {}) };
}

/** Every page of triggerer jobs, as one collection shaped like the API's. */
async function listAllTriggerers(ctx: CliContext): Promise<TriggererCollection> {
  const triggerers: Triggerer[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const next = await ctx.client.listTriggerers({ limit: TRIGGERERS_PAGE_SIZE, cursor });
    triggerers.push(...next.triggerers);
    cursor = next.next_cursor;
    if (!cursor) break;
  }
  return { triggerers };
}

import { Command, CommanderError } from 'commander';
import { SettingsError } from '#config/settings.ts';
import { StandaloneError } from '#standalone/errors.ts';
import { registerCallbackCommands } from './callback-commands.ts';
import { CliContext, type CliIo } from './context.ts';
import { registerDagCommands } from './dag-commands.ts';
import { ApiRequestError, CliError } from './errors.ts';
import { registerRunCommands } from './run-commands.ts';
import { registerTaskCommands } from './task-commands.ts';
import { registerTriggerCommands } from './trigger-commands.ts';

/** Exit codes: 0 done (a waited run succeeded), 1 a waited run failed, 2 anything went wrong. */
export const EXIT_OK = 0;
export const EXIT_RUN_FAILED = 1;
export const EXIT_ERROR = 2;

/**
 * Runs the `updraft` CLI on `argv` (as in `process.argv`: node, script, then arguments) and
 * returns the exit code instead of exiting, so tests can run it in-process.
 */
export async function main(argv: readonly string[], io: Partial<CliIo> = {}): Promise<number> {
  const ctx = new CliContext({
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    stdin: io.stdin ?? process.stdin,
    env: io.env ?? process.env,
    cwd: io.cwd ?? process.cwd(),
    pollIntervalMs: io.pollIntervalMs,
  });
  const program = buildProgram(ctx);
  try {
    await program.parseAsync([...argv]);
    return ctx.exitCode;
  } catch (error) {
    return reportError(ctx, error);
  }
}

export function buildProgram(ctx: CliContext): Command {
  const program = new Command('updraft')
    .description('Airflow-style workflows, serverless on AWS or standalone on one machine')
    // Set before the subcommands are added: they inherit both.
    .configureOutput({
      writeOut: (text) => ctx.io.stdout.write(text),
      writeErr: (text) => ctx.io.stderr.write(text),
    })
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');

  program
    .command('standalone')
    .description(
      'Run the API, scheduler and workers on this machine with the embedded store (what `npm start` runs)',
    )
    .option(
      '--reset-store',
      'start with an empty store, moving the old store and task logs aside (for a home whose store was lost)',
    )
    .action(async (options: { resetStore?: boolean }) => {
      const { runStandalone } = await import('#standalone/main.ts');
      await runStandalone(ctx.settings, { resetStore: options.resetStore ?? false });
    });

  registerDagCommands(program, ctx);
  registerRunCommands(program, ctx);
  registerTaskCommands(program, ctx);
  registerTriggerCommands(program, ctx);
  registerCallbackCommands(program, ctx);
  return program;
}

function reportError(ctx: CliContext, error: unknown): number {
  if (error instanceof CommanderError) {
    // Commander has already printed the usage error or the help.
    return error.exitCode === 0 ? EXIT_OK : EXIT_ERROR;
  }
  if (error instanceof ApiRequestError) {
    ctx.warn(`Error: ${error.message}`);
    if (error.status === 401) {
      ctx.warn(
        `The API refused the token: set UPDRAFT_API_TOKEN, or check ${ctx.tokenFile} (written by \`npm start\`).`,
      );
    }
    return EXIT_ERROR;
  }
  if (error instanceof CliError || error instanceof SettingsError || error instanceof StandaloneError) {
    ctx.warn(`Error: ${error.message}`);
    return EXIT_ERROR;
  }
  // Not a user error: the stack helps a bug report. It starts with the error's name already.
  ctx.warn(error instanceof Error ? (error.stack ?? `Error: ${error.message}`) : `Error: ${String(error)}`);
  return EXIT_ERROR;
}

import { access } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { BaseTrigger, type TriggerEvent, type TriggerRunContext, triggerEvent } from './base.ts';
import { registerBuiltinTrigger } from './registry.ts';
import { InvalidTriggerKwargsError } from './validation.ts';

export interface FileExistsTriggerKwargs {
  /** Absolute: the triggerer runs in another process, maybe on another machine, with its own working directory. */
  path: string;
  pollIntervalMs: number;
}

const DEFAULT_POLL_INTERVAL_MS = 5_000;
const MIN_POLL_INTERVAL_MS = 100;

/** Fires `{ path }` once the file at `path` exists, looking every `pollIntervalMs` (default 5 s). */
export class FileExistsTrigger extends BaseTrigger<FileExistsTriggerKwargs> {
  static override readonly triggerName: string = 'updraft.FileExistsTrigger';

  constructor(kwargs: { path: string; pollIntervalMs?: number }, options: { queue?: string } = {}) {
    super(normalizedKwargs(kwargs), options);
  }

  override async *run(ctx: TriggerRunContext): AsyncGenerator<TriggerEvent, void, void> {
    const { path, pollIntervalMs } = this.kwargs;
    ctx.log.info(`Waiting for ${path} to exist`, { pollIntervalMs });
    while (!(await exists(path, ctx))) await ctx.sleepUntil(ctx.now() + pollIntervalMs);
    yield triggerEvent({ path });
  }
}

async function exists(path: string, ctx: TriggerRunContext): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Anything but "not there (yet)" may be passing (a share being remounted): log and look again.
    if (code !== 'ENOENT' && code !== 'ENOTDIR') {
      ctx.log.warn(`Cannot check ${path}; looking again`, { error: (error as Error).message });
    }
    return false;
  }
}

function normalizedKwargs(kwargs: { path?: unknown; pollIntervalMs?: unknown }): FileExistsTriggerKwargs {
  const path = kwargs?.path;
  if (typeof path !== 'string' || !isAbsolute(path)) {
    throw new InvalidTriggerKwargsError(
      `FileExistsTrigger path must be an absolute path (the triggerer has its own working directory), got ${JSON.stringify(path)}`,
    );
  }
  const pollIntervalMs = kwargs.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  if (
    typeof pollIntervalMs !== 'number' ||
    !Number.isInteger(pollIntervalMs) ||
    pollIntervalMs < MIN_POLL_INTERVAL_MS
  ) {
    throw new InvalidTriggerKwargsError(
      `FileExistsTrigger pollIntervalMs must be a whole number of milliseconds >= ${MIN_POLL_INTERVAL_MS}, got ${JSON.stringify(pollIntervalMs)}`,
    );
  }
  const unknown = Object.keys(kwargs).filter((key) => key !== 'path' && key !== 'pollIntervalMs');
  if (unknown.length > 0) {
    throw new InvalidTriggerKwargsError(`FileExistsTrigger: unknown kwargs ${unknown.join(', ')}`);
  }
  return { path, pollIntervalMs };
}

registerBuiltinTrigger(FileExistsTrigger);

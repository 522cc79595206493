import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { apiUrlOf, loadSettings, type Settings } from '#config/settings.ts';
import { ApiClient } from './client.ts';
import { CliUsageError } from './errors.ts';
import { formatJson } from './format.ts';

export type CliStream = NodeJS.WritableStream & { isTTY?: boolean };

/** What the CLI reads and writes, injectable so tests run `main()` in-process. */
export interface CliIo {
  stdout: CliStream;
  stderr: CliStream;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** How often `--wait` polls the run; 500 ms unless a test wants it faster. */
  pollIntervalMs?: number;
}

/** Settings and the API client, made on first use so `--help` and usage errors need neither. */
export class CliContext {
  readonly io: CliIo;
  /** Set by a command that completes but must report failure (a failed run, a timeout). */
  exitCode = 0;
  #settings: Settings | undefined;
  #client: ApiClient | undefined;

  constructor(io: CliIo) {
    this.io = io;
  }

  get settings(): Settings {
    this.#settings ??= loadSettings(this.io.env, this.io.cwd);
    return this.#settings;
  }

  get client(): ApiClient {
    this.#client ??= new ApiClient(apiUrlOf(this.settings), this.#token());
    return this.#client;
  }

  /** Where standalone writes its token, named in the hint printed on a 401. */
  get tokenFile(): string {
    return join(this.settings.home, 'api-token');
  }

  print(text: string): void {
    this.io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  printJson(value: unknown): void {
    this.io.stdout.write(formatJson(value));
  }

  warn(text: string): void {
    this.io.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  #token(): string | undefined {
    const fromEnv = this.io.env.UPDRAFT_API_TOKEN?.trim();
    if (fromEnv) return fromEnv;
    if (!existsSync(this.tokenFile)) return undefined;
    return readFileSync(this.tokenFile, 'utf8').trim() || undefined;
  }
}

/** A commander argument parser for integers within bounds. */
export function integerOption(min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < min || parsed > max) {
      throw new InvalidArgumentError(`Expected an integer from ${min} to ${max}.`);
    }
    return parsed;
  };
}

/** `--conf` must be a JSON object: it becomes the run's `conf`, which Airflow also requires to be an object. */
export function parseConf(text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new CliUsageError(
      `--conf is not valid JSON (${(error as Error).message}); expected an object such as --conf '{"key": "value"}'`,
      { cause: error },
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CliUsageError(`--conf must be a JSON object such as '{"key": "value"}', got: ${text}`);
  }
  return parsed as Record<string, unknown>;
}

export function checkIsoDate(option: string, value: string): string {
  if (Number.isNaN(Date.parse(value))) {
    throw new CliUsageError(
      `${option} must be an ISO 8601 date-time such as 2026-01-31T00:00:00Z, got: ${value}`,
    );
  }
  return value;
}

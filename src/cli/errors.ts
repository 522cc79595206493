/** Errors of the `updraft` CLI; each is printed as its message, and the CLI exits with 2. */
export class CliError extends Error {
  override name = 'CliError';
}

/** A command line the CLI cannot act on, e.g. `--conf` that is not a JSON object. */
export class CliUsageError extends CliError {
  override name = 'CliUsageError';
}

/** The API did not answer: nothing listens at its URL, or the connection failed or timed out. */
export class ApiUnreachableError extends CliError {
  override name = 'ApiUnreachableError';
  readonly baseUrl: string;

  constructor(baseUrl: string, options?: ErrorOptions) {
    super(
      `Cannot reach the Updraft API at ${baseUrl}: is it running? Start it with \`npm start\` (or set UPDRAFT_API_URL).`,
      options,
    );
    this.baseUrl = baseUrl;
  }
}

/** The API answered with an error status; `detail` is its own explanation. */
export class ApiRequestError extends CliError {
  override name = 'ApiRequestError';
  readonly status: number;
  readonly detail: string;

  constructor(method: string, path: string, status: number, detail: string) {
    super(`${detail} (HTTP ${status} from ${method} ${path})`);
    this.status = status;
    this.detail = detail;
  }
}

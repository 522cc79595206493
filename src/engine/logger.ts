export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

/**
 * A structured logger: one JSON object per line when the output is not a terminal (for log
 * shippers), a short readable line on a terminal. Errors in fields are flattened to their message.
 */
export function createLogger(options: {
  level: LogLevel;
  write?: (line: string) => void;
  pretty?: boolean;
  fields?: Record<string, unknown>;
}): Logger {
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const pretty = options.pretty ?? Boolean(process.stderr.isTTY);
  const base = options.fields ?? {};
  const emit = (level: LogLevel, message: string, fields?: Record<string, unknown>) => {
    if (LEVELS[level] < LEVELS[options.level]) return;
    const all = { ...base, ...fields };
    for (const [key, value] of Object.entries(all)) if (value instanceof Error) all[key] = value.message;
    if (pretty) {
      const time = new Date().toISOString().slice(11, 23);
      const extra = Object.entries(all)
        .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
        .join(' ');
      write(`${time} ${level.toUpperCase().padEnd(5)} ${message}${extra ? ` ${extra}` : ''}`);
    } else {
      write(JSON.stringify({ timestamp: new Date().toISOString(), level, message, ...all }));
    }
  };
  return {
    debug: (message, fields) => emit('debug', message, fields),
    info: (message, fields) => emit('info', message, fields),
    warn: (message, fields) => emit('warn', message, fields),
    error: (message, fields) => emit('error', message, fields),
    child: (fields) => createLogger({ ...options, write, pretty, fields: { ...base, ...fields } }),
  };
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};

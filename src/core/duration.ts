import { InvalidDurationError } from './errors.ts';

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000, ms: 1 } as const;
type Unit = keyof typeof UNIT_MS;
/** Units from largest to smallest: a composite duration must list them in this order, each once. */
const UNIT_ORDER: readonly Unit[] = ['d', 'h', 'm', 's', 'ms'];
// `ms` before `m` in the alternation so '500ms' is not read as 500 minutes followed by garbage.
const PART = /(\d+(?:\.\d+)?)(ms|d|h|m|s)/y;
const EXPECTED = "a number of seconds or a string like '30s', '5m', '1h30m', '2d' or '500ms'";

export type DurationInput = number | string;

/**
 * Reads a duration into milliseconds. A number is seconds (Airflow's timedelta(seconds=…) habit);
 * a string is one or more `<amount><unit>` parts, largest unit first: '1h30m', '2d', '500ms'.
 * `what` names the value in the error, e.g. "task 'load' option retryDelay".
 */
export function parseDuration(value: DurationInput, what: string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) {
      throw new InvalidDurationError(`Invalid duration for ${what}: ${value} (expected ${EXPECTED}, >= 0)`);
    }
    return Math.round(value * 1000);
  }
  if (typeof value !== 'string') {
    throw new InvalidDurationError(`Invalid duration for ${what}: expected ${EXPECTED}, got ${typeof value}`);
  }
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  if (text === '')
    throw new InvalidDurationError(`Invalid duration for ${what}: empty string (expected ${EXPECTED})`);

  let total = 0;
  let lastUnitIndex = -1;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const start = PART.lastIndex;
    const match = PART.exec(text);
    if (!match) {
      throw new InvalidDurationError(
        `Invalid duration for ${what}: '${value}' cannot be read at '${text.slice(start)}' (expected ${EXPECTED})`,
      );
    }
    const unit = match[2] as Unit;
    const unitIndex = UNIT_ORDER.indexOf(unit);
    if (unitIndex <= lastUnitIndex) {
      throw new InvalidDurationError(
        `Invalid duration for ${what}: '${value}' lists unit '${unit}' twice or out of order (largest unit first, e.g. '1h30m')`,
      );
    }
    lastUnitIndex = unitIndex;
    total += Number(match[1]) * UNIT_MS[unit];
  }
  return Math.round(total);
}

/** The shortest readable form of a duration in milliseconds, e.g. 5_400_000 → '1h30m'. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = Math.round(ms);
  let text = '';
  for (const unit of UNIT_ORDER) {
    const amount = Math.floor(rest / UNIT_MS[unit]);
    if (amount > 0) {
      text += `${amount}${unit}`;
      rest -= amount * UNIT_MS[unit];
    }
  }
  return text;
}

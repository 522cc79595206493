import { Cron, type CronOptions } from 'croner';
import { CoreError, InvalidScheduleError } from './errors.ts';
import type { Schedule } from './serialized-dag.ts';

/**
 * Schedules as DAG authors write them, and the fire times they produce. A cron schedule keeps the
 * author's text (a 5-field cron, a preset like '@daily' or an AWS `cron(...)`), so what the UI shows
 * is what was written; it is compiled again on each use, which costs microseconds.
 */

export type ScheduleInput = string | { cron: string; timezone?: string } | null;

const PRESETS: Readonly<Record<string, { cron: string; description: string }>> = {
  '@hourly': { cron: '0 * * * *', description: 'every hour' },
  '@daily': { cron: '0 0 * * *', description: 'every day at midnight' },
  '@midnight': { cron: '0 0 * * *', description: 'every day at midnight' },
  '@weekly': { cron: '0 0 * * 0', description: 'every Sunday at midnight' },
  '@monthly': { cron: '0 0 1 * *', description: 'on the 1st of every month at midnight' },
  '@yearly': { cron: '0 0 1 1 *', description: 'every 1 January at midnight' },
  '@annually': { cron: '0 0 1 1 *', description: 'every 1 January at midnight' },
};

const RATE_UNITS_MS: Readonly<Record<string, number>> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };
const AWS_CRON = /^cron\((.*)\)$/i;
const AWS_RATE = /^rate\((.*)\)$/i;

/** Reads a schedule; `null` (no schedule: runs are only triggered) stays `null`. */
export function parseSchedule(input: ScheduleInput | undefined): Schedule | null {
  if (input === null || input === undefined) return null;
  if (typeof input === 'string') {
    const text = input.trim();
    if (AWS_RATE.test(text)) return parseRate(text);
    return parseCron(text, 'UTC');
  }
  if (typeof input !== 'object' || typeof input.cron !== 'string') {
    throw new InvalidScheduleError(
      `Invalid schedule ${JSON.stringify(input)}: expected a string, { cron, timezone } or null`,
    );
  }
  const text = input.cron.trim();
  if (AWS_RATE.test(text)) {
    throw new InvalidScheduleError(
      `Invalid schedule '${text}': a rate() has no time zone; give it as a plain string, not { cron }`,
    );
  }
  return parseCron(text, input.timezone ?? 'UTC');
}

function parseRate(text: string): Schedule {
  const fail = (why: string): never => {
    throw new InvalidScheduleError(`Invalid schedule '${text}': ${why}`);
  };
  const body = AWS_RATE.exec(text)?.[1]?.trim() ?? '';
  const match = /^(\d+)\s+([a-z]+)$/i.exec(body);
  if (!match) return fail("expected rate(<positive integer> <unit>), e.g. 'rate(5 minutes)'");
  const value = Number(match[1]);
  const unitText = match[2]!.toLowerCase();
  const singular = unitText.endsWith('s') ? unitText.slice(0, -1) : unitText;
  const unitMs = RATE_UNITS_MS[singular];
  if (unitMs === undefined) return fail(`unknown unit '${match[2]}' (expected minute(s), hour(s) or day(s))`);
  if (value < 1) return fail('the value must be a positive integer');
  // EventBridge refuses 'rate(1 minutes)' and 'rate(5 minute)'; refusing them here keeps DAGs portable.
  if (value === 1 && unitText !== singular)
    return fail(`use the singular unit with 1: 'rate(1 ${singular})'`);
  if (value > 1 && unitText === singular)
    return fail(`use the plural unit above 1: 'rate(${value} ${singular}s)'`);
  return { type: 'rate', expression: `rate(${value} ${unitText})`, everyMs: value * unitMs };
}

function parseCron(text: string, timezone: string): Schedule {
  if (text.toLowerCase() === '@once') {
    throw new InvalidScheduleError(
      "Invalid schedule '@once': not supported; use schedule null and trigger the DAG once instead",
    );
  }
  if (!isValidTimeZone(timezone)) {
    throw new InvalidScheduleError(
      `Invalid schedule '${text}': unknown time zone '${timezone}' (expected an IANA name like 'Europe/Paris')`,
    );
  }
  const schedule: Schedule = { type: 'cron', expression: text, timezone };
  const cron = compileCron(schedule);
  if (cron.nextRun(new Date(0)) === null) {
    throw new InvalidScheduleError(`Invalid schedule '${text}': it never fires (no matching date)`);
  }
  return schedule;
}

function isValidTimeZone(timezone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
    return true;
  } catch {
    return false;
  }
}

/** Turns a stored cron schedule into a croner job (never started: only its date arithmetic is used). */
function compileCron(schedule: Extract<Schedule, { type: 'cron' }>): Cron {
  const text = schedule.expression;
  const options: CronOptions = { timezone: schedule.timezone, mode: '5-part' };
  let pattern = text;
  const preset = PRESETS[text.toLowerCase()];
  if (preset) {
    pattern = preset.cron;
  } else if (text.startsWith('@')) {
    throw new InvalidScheduleError(
      `Invalid schedule '${text}': unknown preset (expected one of ${Object.keys(PRESETS).join(', ')})`,
    );
  } else {
    const aws = AWS_CRON.exec(text);
    const awsFields = aws?.[1]?.trim().split(/\s+/) ?? [];
    if (aws && awsFields.length === 5) {
      // 'cron(0 6 * * *)' is a standard cron in AWS clothing: read it as one, weekdays 0-6 from Sunday.
      pattern = awsFields.join(' ');
    } else if (aws) {
      pattern = awsCronToCroner(text, aws[1] ?? '');
      // AWS numbers weekdays 1-7 from Sunday (like Quartz) and has a year field.
      options.mode = '7-part';
      options.alternativeWeekdays = true;
    } else {
      const fields = text.split(/\s+/);
      if (fields.length !== 5) {
        throw new InvalidScheduleError(
          `Invalid schedule '${text}': a cron expression has 5 fields (minute hour day-of-month month day-of-week), got ${fields.length}; for AWS syntax write cron(minutes hours day-of-month month day-of-week year)`,
        );
      }
    }
  }
  try {
    return new Cron(pattern, options);
  } catch (error) {
    const why = (error as Error).message.replace(/^CronPattern: /, '');
    throw new InvalidScheduleError(`Invalid schedule '${text}': ${why}`, { cause: error });
  }
}

function awsCronToCroner(text: string, body: string): string {
  const fields = body.trim().split(/\s+/);
  if (fields.length !== 6) {
    throw new InvalidScheduleError(
      `Invalid schedule '${text}': AWS cron() has 6 fields (minutes hours day-of-month month day-of-week year), got ${fields.length}; a standard cron has 5`,
    );
  }
  const [minutes, hours, dayOfMonth, month, dayOfWeek, year] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  if ((dayOfMonth === '?') === (dayOfWeek === '?')) {
    throw new InvalidScheduleError(
      `Invalid schedule '${text}': AWS cron() needs '?' in exactly one of day-of-month and day-of-week`,
    );
  }
  const star = (field: string) => (field === '?' ? '*' : field);
  return ['0', minutes, hours, star(dayOfMonth), month, star(dayOfWeek), year].join(' ');
}

function parseInstant(iso: string, what: string): number {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new CoreError(`Invalid ${what}: '${iso}' is not an ISO-8601 date-time`);
  return ms;
}

/**
 * The first fire time strictly after `afterIso`, or null when the schedule never fires again.
 * Rate schedules fire at anchor + k × period (k ≥ 0), the anchor being the DAG's start date; without
 * one they are anchored at the Unix epoch, so 'rate(1 hour)' fires on the hour.
 */
export function nextFireAfter(
  schedule: Schedule,
  afterIso: string,
  anchorIso?: string | null,
): string | null {
  const after = parseInstant(afterIso, 'date');
  if (schedule.type === 'rate') {
    const anchor = anchorIso ? parseInstant(anchorIso, 'anchor date') : 0;
    const steps = after < anchor ? 0 : Math.floor((after - anchor) / schedule.everyMs) + 1;
    return new Date(anchor + steps * schedule.everyMs).toISOString();
  }
  const next = compileCron(schedule).nextRun(new Date(after));
  return next ? next.toISOString() : null;
}

/**
 * The latest fire time at or before `atIso`, or null when the schedule has not fired by then. It
 * jumps there directly, so a schedule that missed months of 15-minute intervals costs one step.
 */
export function latestFireAtOrBefore(
  schedule: Schedule,
  atIso: string,
  anchorIso?: string | null,
): string | null {
  const at = parseInstant(atIso, 'date');
  if (schedule.type === 'rate') {
    const anchor = anchorIso ? parseInstant(anchorIso, 'anchor date') : 0;
    if (at < anchor) return null;
    return new Date(anchor + Math.floor((at - anchor) / schedule.everyMs) * schedule.everyMs).toISOString();
  }
  // croner counts a fire earlier in the same second as the reference: 1 ms later includes `at`.
  const [latest] = compileCron(schedule).previousRuns(1, new Date(at + 1));
  return latest ? latest.toISOString() : null;
}

/** Fire times t with from ≤ t ≤ to, oldest first, at most `limit` of them. */
export function fireTimesBetween(
  schedule: Schedule,
  fromIso: string,
  toIso: string,
  limit: number,
  anchorIso?: string | null,
): string[] {
  const to = parseInstant(toIso, 'end date');
  const times: string[] = [];
  let cursor = new Date(parseInstant(fromIso, 'start date') - 1).toISOString();
  while (times.length < limit) {
    const next = nextFireAfter(schedule, cursor, anchorIso);
    if (next === null || Date.parse(next) > to) break;
    times.push(next);
    cursor = next;
  }
  return times;
}

/** A short human description, e.g. 'every 5 minutes' or '0 6 * * * (Europe/Paris)'. */
export function describeSchedule(schedule: Schedule | null): string {
  if (schedule === null) return 'no schedule (triggered runs only)';
  if (schedule.type === 'rate') {
    const body = AWS_RATE.exec(schedule.expression)?.[1]?.trim() ?? schedule.expression;
    return `every ${body}`;
  }
  const preset = PRESETS[schedule.expression.toLowerCase()];
  const what = preset ? `${schedule.expression}: ${preset.description}` : schedule.expression;
  return `${what} (${schedule.timezone})`;
}

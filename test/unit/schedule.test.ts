import { describe, expect, it } from 'vitest';
import { InvalidScheduleError } from '#core/errors.ts';
import { describeSchedule, fireTimesBetween, nextFireAfter, parseSchedule } from '#core/schedule.ts';

describe('parseSchedule', () => {
  it('keeps null as no schedule', () => {
    expect(parseSchedule(null)).toBeNull();
    expect(parseSchedule(undefined)).toBeNull();
  });

  it('reads a 5-field cron in UTC', () => {
    expect(parseSchedule('0 6 * * *')).toEqual({ type: 'cron', expression: '0 6 * * *', timezone: 'UTC' });
  });

  it('reads { cron, timezone }', () => {
    expect(parseSchedule({ cron: '0 6 * * *', timezone: 'Europe/Paris' })).toEqual({
      type: 'cron',
      expression: '0 6 * * *',
      timezone: 'Europe/Paris',
    });
  });

  it('reads presets', () => {
    for (const preset of ['@hourly', '@daily', '@weekly', '@monthly', '@yearly']) {
      expect(parseSchedule(preset)).toEqual({ type: 'cron', expression: preset, timezone: 'UTC' });
    }
  });

  it('reads AWS cron() with 6 fields', () => {
    expect(parseSchedule('cron(0 6 ? * MON-FRI *)')).toEqual({
      type: 'cron',
      expression: 'cron(0 6 ? * MON-FRI *)',
      timezone: 'UTC',
    });
  });

  it('reads rate() with singular and plural units', () => {
    expect(parseSchedule('rate(1 minute)')).toEqual({
      type: 'rate',
      expression: 'rate(1 minute)',
      everyMs: 60_000,
    });
    expect(parseSchedule('rate(5 minutes)')).toEqual({
      type: 'rate',
      expression: 'rate(5 minutes)',
      everyMs: 300_000,
    });
    expect(parseSchedule('rate(1 hour)')?.type).toBe('rate');
    expect(parseSchedule('rate(2 days)')).toEqual({
      type: 'rate',
      expression: 'rate(2 days)',
      everyMs: 172_800_000,
    });
  });

  it('refuses a plural unit with 1 and a singular unit above 1, like EventBridge', () => {
    expect(() => parseSchedule('rate(1 minutes)')).toThrow(
      "Invalid schedule 'rate(1 minutes)': use the singular unit with 1: 'rate(1 minute)'",
    );
    expect(() => parseSchedule('rate(5 minute)')).toThrow(
      "Invalid schedule 'rate(5 minute)': use the plural unit above 1: 'rate(5 minutes)'",
    );
  });

  it('refuses unknown rate units and zero', () => {
    expect(() => parseSchedule('rate(5 weeks)')).toThrow("unknown unit 'weeks'");
    expect(() => parseSchedule('rate(0 minutes)')).toThrow('the value must be a positive integer');
    expect(() => parseSchedule('rate(soon)')).toThrow("Invalid schedule 'rate(soon)': expected rate(");
  });

  it('refuses a cron with the wrong number of fields, naming the expression', () => {
    expect(() => parseSchedule('0 6 * *')).toThrow(
      "Invalid schedule '0 6 * *': a cron expression has 5 fields (minute hour day-of-month month day-of-week), got 4",
    );
  });

  it('refuses AWS cron() without exactly one ?', () => {
    expect(() => parseSchedule('cron(0 6 * * MON *)')).toThrow(
      "Invalid schedule 'cron(0 6 * * MON *)': AWS cron() needs '?' in exactly one of day-of-month and day-of-week",
    );
  });

  it('refuses AWS cron() with 4 fields', () => {
    expect(() => parseSchedule('cron(0 6 * *)')).toThrow('AWS cron() has 6 fields');
  });

  it('refuses out-of-range values with the reason', () => {
    expect(() => parseSchedule('61 6 * * *')).toThrow(
      "Invalid schedule '61 6 * * *': Invalid value for minute: 61",
    );
  });

  it('refuses an unknown time zone', () => {
    expect(() => parseSchedule({ cron: '0 6 * * *', timezone: 'Mars/Olympus' })).toThrow(
      "Invalid schedule '0 6 * * *': unknown time zone 'Mars/Olympus'",
    );
  });

  it('refuses a schedule that never fires', () => {
    expect(() => parseSchedule('0 0 30 2 *')).toThrow("Invalid schedule '0 0 30 2 *': it never fires");
  });

  it('refuses unknown presets and @once', () => {
    expect(() => parseSchedule('@fortnightly')).toThrow(InvalidScheduleError);
    expect(() => parseSchedule('@once')).toThrow("Invalid schedule '@once': not supported");
  });

  it('refuses rate() inside { cron }', () => {
    expect(() => parseSchedule({ cron: 'rate(1 hour)', timezone: 'UTC' })).toThrow(
      'a rate() has no time zone',
    );
  });
});

describe('nextFireAfter', () => {
  it('returns the next cron fire time strictly after the given instant', () => {
    const schedule = parseSchedule('0 6 * * *')!;
    expect(nextFireAfter(schedule, '2026-01-01T06:00:00.000Z')).toBe('2026-01-02T06:00:00.000Z');
    expect(nextFireAfter(schedule, '2026-01-01T05:59:59.999Z')).toBe('2026-01-01T06:00:00.000Z');
  });

  it('follows the time zone across the spring DST change', () => {
    const schedule = parseSchedule({ cron: '0 6 * * *', timezone: 'Europe/Paris' })!;
    // 06:00 Paris is 05:00 UTC in winter (CET) and 04:00 UTC from 29 March 2026 (CEST).
    expect(nextFireAfter(schedule, '2026-03-28T00:00:00Z')).toBe('2026-03-28T05:00:00.000Z');
    expect(nextFireAfter(schedule, '2026-03-28T05:00:00Z')).toBe('2026-03-29T04:00:00.000Z');
  });

  it('follows the time zone across the autumn DST change', () => {
    const schedule = parseSchedule({ cron: '0 6 * * *', timezone: 'Europe/Paris' })!;
    expect(nextFireAfter(schedule, '2026-10-24T12:00:00Z')).toBe('2026-10-25T05:00:00.000Z');
  });

  it('reads AWS day-of-week numbers from Sunday = 1', () => {
    const schedule = parseSchedule('cron(0 6 ? * 2 *)')!; // Mondays
    expect(nextFireAfter(schedule, '2026-01-01T00:00:00Z')).toBe('2026-01-05T06:00:00.000Z');
  });

  it('reads 5-field cron() as a standard cron', () => {
    const schedule = parseSchedule('cron(0 6 * * 1)')!; // Mondays, standard numbering
    expect(nextFireAfter(schedule, '2026-01-01T00:00:00Z')).toBe('2026-01-05T06:00:00.000Z');
  });

  it('anchors rate schedules at the anchor date', () => {
    const schedule = parseSchedule('rate(1 hour)')!;
    const anchor = '2026-01-01T00:30:00.000Z';
    expect(nextFireAfter(schedule, '2026-01-01T02:00:00Z', anchor)).toBe('2026-01-01T02:30:00.000Z');
    expect(nextFireAfter(schedule, '2026-01-01T02:30:00Z', anchor)).toBe('2026-01-01T03:30:00.000Z');
  });

  it('returns the anchor itself for an instant before it', () => {
    const schedule = parseSchedule('rate(5 minutes)')!;
    expect(nextFireAfter(schedule, '2025-12-31T00:00:00Z', '2026-01-01T00:00:00Z')).toBe(
      '2026-01-01T00:00:00.000Z',
    );
  });

  it('anchors rate schedules at the epoch without an anchor', () => {
    expect(nextFireAfter(parseSchedule('rate(1 hour)')!, '2026-01-01T10:20:00Z')).toBe(
      '2026-01-01T11:00:00.000Z',
    );
  });

  it('refuses a date that is not ISO-8601', () => {
    expect(() => nextFireAfter(parseSchedule('@daily')!, 'yesterday')).toThrow(
      "Invalid date: 'yesterday' is not an ISO-8601 date-time",
    );
  });
});

describe('fireTimesBetween', () => {
  it('lists fire times with both ends included', () => {
    const schedule = parseSchedule('0 */6 * * *')!;
    expect(fireTimesBetween(schedule, '2026-01-01T00:00:00Z', '2026-01-01T12:00:00Z', 10)).toEqual([
      '2026-01-01T00:00:00.000Z',
      '2026-01-01T06:00:00.000Z',
      '2026-01-01T12:00:00.000Z',
    ]);
  });

  it('stops at the limit', () => {
    const schedule = parseSchedule('@hourly')!;
    expect(fireTimesBetween(schedule, '2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z', 2)).toEqual([
      '2026-01-01T00:00:00.000Z',
      '2026-01-01T01:00:00.000Z',
    ]);
  });

  it('lists rate fire times from the anchor', () => {
    const schedule = parseSchedule('rate(30 minutes)')!;
    expect(
      fireTimesBetween(schedule, '2026-01-01T00:00:00Z', '2026-01-01T01:30:00Z', 10, '2026-01-01T00:10:00Z'),
    ).toEqual(['2026-01-01T00:10:00.000Z', '2026-01-01T00:40:00.000Z', '2026-01-01T01:10:00.000Z']);
  });
});

describe('describeSchedule', () => {
  it('describes each kind', () => {
    expect(describeSchedule(null)).toBe('no schedule (triggered runs only)');
    expect(describeSchedule(parseSchedule('rate(5 minutes)'))).toBe('every 5 minutes');
    expect(describeSchedule(parseSchedule({ cron: '0 6 * * *', timezone: 'Europe/Paris' }))).toBe(
      '0 6 * * * (Europe/Paris)',
    );
    expect(describeSchedule(parseSchedule('@daily'))).toBe('@daily: every day at midnight (UTC)');
  });
});

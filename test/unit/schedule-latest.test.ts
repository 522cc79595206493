import { describe, expect, it } from 'vitest';
import { latestFireAtOrBefore, nextFireAfter, parseSchedule } from '#core/schedule.ts';

describe('latestFireAtOrBefore', () => {
  it('returns a cron fire time that falls exactly on the given instant', () => {
    const schedule = parseSchedule('*/15 * * * *')!;
    expect(latestFireAtOrBefore(schedule, '2026-11-24T00:15:00.000Z')).toBe('2026-11-24T00:15:00.000Z');
  });

  it('returns the previous cron fire time between two fires', () => {
    const schedule = parseSchedule('*/15 * * * *')!;
    expect(latestFireAtOrBefore(schedule, '2026-11-24T00:14:59.999Z')).toBe('2026-11-24T00:00:00.000Z');
  });

  it('follows the time zone across a daylight saving change, like nextFireAfter', () => {
    const schedule = parseSchedule({ cron: '30 2 * * *', timezone: 'Europe/Paris' })!;
    const latest = latestFireAtOrBefore(schedule, '2026-03-29T12:00:00.000Z');
    expect(latest).toBe('2026-03-29T01:00:00.000Z');
    expect(nextFireAfter(schedule, '2026-03-28T12:00:00.000Z')).toBe(latest);
  });

  it('jumps back over a year of a yearly AWS cron', () => {
    const schedule = parseSchedule('cron(0 6 1 1 ? *)')!;
    expect(latestFireAtOrBefore(schedule, '2026-11-24T00:00:00.000Z')).toBe('2026-01-01T06:00:00.000Z');
  });

  it('counts rate fire times from the anchor', () => {
    const schedule = parseSchedule('rate(1 hour)')!;
    const anchor = '2026-01-01T00:30:00.000Z';
    expect(latestFireAtOrBefore(schedule, '2026-01-02T10:29:59.999Z', anchor)).toBe(
      '2026-01-02T09:30:00.000Z',
    );
    expect(latestFireAtOrBefore(schedule, '2026-01-02T10:30:00.000Z', anchor)).toBe(
      '2026-01-02T10:30:00.000Z',
    );
  });

  it('returns null before a rate schedule first fires', () => {
    const schedule = parseSchedule('rate(1 hour)')!;
    expect(latestFireAtOrBefore(schedule, '2025-12-31T23:59:59.999Z', '2026-01-01T00:00:00.000Z')).toBeNull();
  });
});

import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '#core/duration.ts';
import { InvalidDurationError } from '#core/errors.ts';

describe('parseDuration', () => {
  it('reads a number as seconds', () => {
    expect(parseDuration(30, 'x')).toBe(30_000);
    expect(parseDuration(1.5, 'x')).toBe(1_500);
    expect(parseDuration(0, 'x')).toBe(0);
  });

  it('reads each unit', () => {
    expect(parseDuration('500ms', 'x')).toBe(500);
    expect(parseDuration('30s', 'x')).toBe(30_000);
    expect(parseDuration('5m', 'x')).toBe(300_000);
    expect(parseDuration('2h', 'x')).toBe(7_200_000);
    expect(parseDuration('2d', 'x')).toBe(172_800_000);
  });

  it('reads composite durations, largest unit first', () => {
    expect(parseDuration('1h30m', 'x')).toBe(5_400_000);
    expect(parseDuration('1d2h3m4s5ms', 'x')).toBe(93_784_005);
    expect(parseDuration(' 1m30s ', 'x')).toBe(90_000);
  });

  it('reads a numeric string as seconds and decimals in a part', () => {
    expect(parseDuration('45', 'x')).toBe(45_000);
    expect(parseDuration('1.5h', 'x')).toBe(5_400_000);
  });

  it('names the value in the error for an unknown unit', () => {
    expect(() => parseDuration('5w', "task 'load' option retryDelay")).toThrow(
      "Invalid duration for task 'load' option retryDelay: '5w' cannot be read at '5w'",
    );
  });

  it('refuses negative numbers, empty strings and non-finite numbers', () => {
    expect(() => parseDuration(-1, 'retryDelay')).toThrow(InvalidDurationError);
    expect(() => parseDuration(-1, 'retryDelay')).toThrow('Invalid duration for retryDelay: -1');
    expect(() => parseDuration('', 'retryDelay')).toThrow('Invalid duration for retryDelay: empty string');
    expect(() => parseDuration(Number.POSITIVE_INFINITY, 'retryDelay')).toThrow(InvalidDurationError);
  });

  it('refuses units out of order or repeated', () => {
    expect(() => parseDuration('30m1h', 'timeout')).toThrow("lists unit 'h' twice or out of order");
    expect(() => parseDuration('1m1m', 'timeout')).toThrow("lists unit 'm' twice or out of order");
  });

  it('refuses trailing garbage', () => {
    expect(() => parseDuration('5m later', 'timeout')).toThrow("cannot be read at ' later'");
  });
});

describe('formatDuration', () => {
  it('writes the shortest form', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(5_400_000)).toBe('1h30m');
    expect(formatDuration(93_784_005)).toBe('1d2h3m4s5ms');
  });

  it('round-trips through parseDuration', () => {
    expect(parseDuration(formatDuration(93_784_005), 'x')).toBe(93_784_005);
  });
});

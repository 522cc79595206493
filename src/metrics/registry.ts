import type { Metrics } from './port.ts';

/**
 * In-process metrics: gauges (last value) and counters (monotonic), named after Airflow's
 * statsd metrics where one exists (`executor.open_slots`, `scheduler.tasks.starving`, …).
 * The API serves a snapshot as JSON; standalone also logs it periodically as one structured line.
 */
export class MetricsRegistry implements Metrics {
  readonly #gauges = new Map<string, number>();
  readonly #counters = new Map<string, number>();
  readonly #sources: (() => Record<string, number> | Promise<Record<string, number>>)[] = [];

  gauge(name: string, value: number): void {
    this.#gauges.set(name, value);
  }

  increment(name: string, by = 1): void {
    this.#counters.set(name, (this.#counters.get(name) ?? 0) + by);
  }

  /** Registers gauges computed on demand (e.g. from a queue's current depth). */
  addSource(source: () => Record<string, number> | Promise<Record<string, number>>): void {
    this.#sources.push(source);
  }

  async snapshot(): Promise<{ gauges: Record<string, number>; counters: Record<string, number> }> {
    const gauges = Object.fromEntries(this.#gauges);
    for (const source of this.#sources) Object.assign(gauges, await source());
    return {
      gauges: Object.fromEntries(Object.entries(gauges).sort(([a], [b]) => a.localeCompare(b))),
      counters: Object.fromEntries([...this.#counters].sort(([a], [b]) => a.localeCompare(b))),
    };
  }
}

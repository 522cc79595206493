/**
 * What the engine reports metrics through. Standalone keeps them in a `MetricsRegistry` served by
 * the API; a Lambda handler publishes them as CloudWatch EMF. Names follow Airflow's statsd names.
 */
export interface Metrics {
  increment(name: string, by?: number): void;
  gauge(name: string, value: number): void;
}

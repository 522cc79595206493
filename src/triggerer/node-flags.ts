/**
 * Node/V8 flags every triggerer process starts with (standalone's child, the container's
 * `NODE_OPTIONS`, the benchmark's child).
 *
 * A triggerer holds many small, long-lived objects (each trigger's generator, promises, timer
 * entry) and allocates little per second. V8 sizes its young generation from the memory it sees:
 * 16–32 MiB semi-spaces on a host with several GB, which let the RSS grow far past what the
 * triggerer holds. The flag is a ceiling: with 4 MiB semi-spaces 10,000 time triggers peaked at
 * about 240–280 MB RSS instead of about 360 MB, for about the same CPU (`npm run bench`, triggers
 * part, on a 24 GB host). Where V8 picks less by itself (about 1 MiB for a 512 MiB heap, the
 * Fargate task's default size) it may grow to 4 MiB: at most about 9 MB more.
 */
export const TRIGGERER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];

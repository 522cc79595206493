/**
 * Node/V8 flags every triggerer process starts with (standalone's child, the container's
 * `NODE_OPTIONS`, the benchmark's child).
 *
 * A triggerer holds many small, long-lived objects (each trigger's generator, promises, timer
 * entry) and allocates little per second; V8's default young generation lets its RSS grow far
 * past what it holds. With 4 MiB semi-spaces, 10,000 time triggers peaked at about 240 MB RSS
 * instead of about 360 MB, for about the same CPU (`npm run bench`, triggers part).
 */
export const TRIGGERER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];

/**
 * Node/V8 flags every triggerer process starts with (standalone's child, the container's
 * command, the benchmark's child).
 *
 * A triggerer holds many small, long-lived objects (each trigger's generator, promises, timer
 * entry) and allocates little per second. V8 sizes its young generation from the memory it sees:
 * 16–32 MiB semi-spaces on a host with several GB, which let the RSS grow far past what the
 * triggerer holds. The flag is a ceiling: with 4 MiB semi-spaces 10,000 time triggers peaked at
 * about 240–280 MB RSS instead of about 360 MB, for about the same CPU (`npm run bench`, triggers
 * part, on a 24 GB host). Where V8 picks less by itself (about 1 MiB for a 512 MiB heap, the
 * Fargate task's default size) it may grow to 4 MiB: at most about 9 MB more.
 *
 * `--heap-growing-percent=25`: after a full collection V8 lets the old generation grow by 25%
 * before the next, rather than by the factor it picks itself (up to 4x where memory is plenty).
 * The triggerer's live heap is small and steady (about 9 KB a held trigger) while its calls leave
 * garbage at a steady rate, so V8's own factor let the heap reach twice the live set between
 * collections: with 10,000 triggers and 64 reports in flight the peak RSS was about 360 MB, and
 * 170–180 MB with this flag, for about 15% more of the triggerer's CPU (`npm run bench`, triggers
 * part). V8 takes this flag on the command line only, not from NODE_OPTIONS: the container's
 * Dockerfile passes it on its command.
 */
export const TRIGGERER_NODE_FLAGS: readonly string[] = [
  '--max-semi-space-size=4',
  '--heap-growing-percent=25',
];

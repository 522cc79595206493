/** Time as the worker sees it. The simulation passes a fake clock; nothing else waits on real timers. */
export interface WorkerClock {
  now(): number;
  /** Resolves after `ms`, or as soon as `signal` aborts (it never rejects). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** setTimeout's largest delay: a longer one fires after 1 ms instead, so long waits are re-armed. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export const systemClock: WorkerClock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const until = Date.now() + ms;
      let timer: ReturnType<typeof setTimeout>;
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const arm = () => {
        const left = until - Date.now();
        if (left <= 0) return done();
        timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
      };
      signal?.addEventListener('abort', done, { once: true });
      arm();
    }),
};

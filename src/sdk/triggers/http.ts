import { isDeepStrictEqual } from 'node:util';
import * as z from 'zod';
import { describeIssues } from '../options.ts';
import { BaseTrigger, type TriggerEvent, type TriggerRunContext, triggerEvent } from './base.ts';
import { registerBuiltinTrigger } from './registry.ts';
import { InvalidTriggerKwargsError } from './validation.ts';

/** At most this much of a response body is kept in the event (it travels and is stored as an XCom). */
/** Below the default XCom limit (48 KiB) with room for the event's envelope and escaping. */
export const HTTP_BODY_LIMIT_BYTES = 16 * 1024;
export const HTTP_BODY_TRUNCATED_MARKER = `…[truncated: the response is longer than ${HTTP_BODY_LIMIT_BYTES} bytes]`;

/**
 * When a response counts as "done". Data, not a function, because kwargs are serialized. Every
 * given check must hold. `jsonPath` is a dot path into the JSON body ('state', 'job.state',
 * 'items.0.id'); with `equals` the value there must deep-equal it, without it the value must be
 * present and not null. `equals` without `jsonPath` compares the whole body.
 */
const conditionSchema = z.strictObject({
  /** Accepted status codes (default [200]). */
  status: z.array(z.number().int().min(100).max(599)).min(1).default([200]),
  jsonPath: z
    .string()
    .regex(/^[^.]+(\.[^.]+)*$/, 'must be a dot path such as job.state')
    .optional(),
  equals: z.unknown().optional(),
  bodyContains: z.string().min(1).optional(),
});

const kwargsSchema = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),
  method: z.enum(['GET', 'HEAD']).default('GET'),
  headers: z.record(z.string(), z.string()).default({}),
  /** Time between polls (default 5 s, at least 100 ms). */
  intervalMs: z.number().int().min(100).default(5_000),
  /** One request may take this long, body included (default 10 s). */
  requestTimeoutMs: z.number().int().min(1).default(10_000),
  condition: conditionSchema.prefault({}),
});

export type HttpCondition = z.input<typeof conditionSchema>;
export type HttpPollTriggerInput = z.input<typeof kwargsSchema>;
export type HttpPollTriggerKwargs = z.output<typeof kwargsSchema>;

/** The event payload: the matching response. `body` is null for HEAD. */
export interface HttpPollResult {
  status: number;
  body: unknown;
}

/**
 * Polls a URL until its response matches `condition`, then fires `{ status, body }`. A network
 * error, a timeout or a response that does not match is logged and polled again after
 * `intervalMs`. Headers travel in the kwargs: a secret in them is stored with the trigger.
 */
export class HttpPollTrigger extends BaseTrigger<HttpPollTriggerKwargs> {
  static override readonly triggerName: string = 'updraft.HttpPollTrigger';

  constructor(kwargs: HttpPollTriggerInput, options: { queue?: string } = {}) {
    super(parseHttpPollKwargs(kwargs), options);
  }

  override async *run(ctx: TriggerRunContext): AsyncGenerator<TriggerEvent, void, void> {
    const kwargs = this.kwargs;
    const target = shownUrl(kwargs.url);
    for (let attempt = 1; ; attempt++) {
      const result = await pollOnce(kwargs, ctx.signal);
      if ('error' in result) {
        ctx.log.warn(`Polling ${target} failed; polling again`, { attempt, error: result.error });
      } else {
        const mismatch = mismatchOf(kwargs.condition, result);
        if (mismatch === null) {
          ctx.log.info(`${target} matched the condition`, { attempt, status: result.status });
          yield triggerEvent({ status: result.status, body: result.body } satisfies HttpPollResult);
          return;
        }
        ctx.log.info(`${target} does not match yet; polling again`, {
          attempt,
          status: result.status,
          reason: mismatch,
        });
      }
      await ctx.sleepUntil(ctx.now() + kwargs.intervalMs);
    }
  }
}

/** Checked, defaulted kwargs; throws InvalidTriggerKwargsError naming the bad key. */
export function parseHttpPollKwargs(kwargs: unknown): HttpPollTriggerKwargs {
  const parsed = kwargsSchema.safeParse(kwargs);
  if (!parsed.success) {
    throw new InvalidTriggerKwargsError(`HttpPollTrigger: ${describeIssues(parsed.error, 'kwarg')}`);
  }
  return parsed.data;
}

interface PolledResponse {
  status: number;
  /** The raw text (at most the limit), for bodyContains; null for HEAD. */
  text: string | null;
  /** The JSON body when it is JSON and complete, else the text (with the marker when cut). */
  body: unknown;
  isJson: boolean;
}

async function pollOnce(
  kwargs: HttpPollTriggerKwargs,
  stop: AbortSignal,
): Promise<PolledResponse | { error: string }> {
  // One timer per request in flight only; the wait between polls is ctx.sleepUntil.
  const signal = AbortSignal.any([stop, AbortSignal.timeout(kwargs.requestTimeoutMs)]);
  try {
    const response = await fetch(kwargs.url, { method: kwargs.method, headers: kwargs.headers, signal });
    if (kwargs.method === 'HEAD') {
      await response.body?.cancel();
      return { status: response.status, text: null, body: null, isJson: false };
    }
    const { text, truncated } = await readLimited(response);
    if (truncated) {
      return { status: response.status, text, body: `${text}${HTTP_BODY_TRUNCATED_MARKER}`, isJson: false };
    }
    const json = looksLikeJson(response.headers.get('content-type'), text) ? parseJson(text) : undefined;
    return json === undefined
      ? { status: response.status, text, body: text, isJson: false }
      : { status: response.status, text, body: json.value, isJson: true };
  } catch (error) {
    // The trigger is being stopped: end the run rather than poll again.
    if (stop.aborted) throw stop.reason;
    if ((error as Error).name === 'TimeoutError') {
      return { error: `no complete response within ${kwargs.requestTimeoutMs} ms` };
    }
    const cause = (error as { cause?: { message?: string } }).cause?.message;
    return { error: cause ? `${(error as Error).message}: ${cause}` : (error as Error).message };
  }
}

async function readLimited(response: Response): Promise<{ text: string; truncated: boolean }> {
  const reader = response.body?.getReader();
  if (!reader) return { text: '', truncated: false };
  const decoder = new TextDecoder();
  let text = '';
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { text: text + decoder.decode(), truncated: false };
    if (size + value.byteLength > HTTP_BODY_LIMIT_BYTES) {
      // `stream: true` leaves out a character cut in half at the limit.
      text += decoder.decode(value.subarray(0, HTTP_BODY_LIMIT_BYTES - size), { stream: true });
      await reader.cancel();
      return { text, truncated: true };
    }
    size += value.byteLength;
    text += decoder.decode(value, { stream: true });
  }
}

/** JSON by its content type, or by its shape when a server labels JSON as text. */
function looksLikeJson(contentType: string | null, text: string): boolean {
  if (contentType !== null && /[/+]json\b/i.test(contentType)) return true;
  const start = text.trimStart()[0];
  return start === '{' || start === '[';
}

function parseJson(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) as unknown };
  } catch {
    return undefined;
  }
}

/** Why the response does not match, or null when it does. */
function mismatchOf(condition: HttpPollTriggerKwargs['condition'], response: PolledResponse): string | null {
  if (!condition.status.includes(response.status)) {
    return `status ${response.status} is not one of ${condition.status.join(', ')}`;
  }
  if (condition.bodyContains !== undefined && !(response.text ?? '').includes(condition.bodyContains)) {
    return `the body does not contain ${JSON.stringify(condition.bodyContains)}`;
  }
  const checksBody = condition.jsonPath !== undefined || condition.equals !== undefined;
  if (!checksBody) return null;
  if (!response.isJson) return 'the body is not JSON (or was cut at the size limit)';
  const found = condition.jsonPath === undefined ? response.body : valueAt(response.body, condition.jsonPath);
  if (condition.equals !== undefined) {
    if (isDeepStrictEqual(found, condition.equals)) return null;
    return `${condition.jsonPath ?? 'the body'} is ${JSON.stringify(found) ?? 'absent'}, not ${JSON.stringify(condition.equals)}`;
  }
  return found === undefined || found === null ? `${condition.jsonPath} is absent or null` : null;
}

/** The value at a dot path, through own properties and array indexes only. */
function valueAt(root: unknown, path: string): unknown {
  let current = root;
  for (const segment of path.split('.')) {
    if (Array.isArray(current)) {
      current = /^\d+$/.test(segment) ? current[Number(segment)] : undefined;
    } else if (typeof current === 'object' && current !== null && Object.hasOwn(current, segment)) {
      current = (current as Record<string, unknown>)[segment];
    } else {
      return undefined;
    }
  }
  return current;
}

/** The URL without its query and credentials, which may hold secrets, for log lines. */
function shownUrl(url: string): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
}

registerBuiltinTrigger(HttpPollTrigger);

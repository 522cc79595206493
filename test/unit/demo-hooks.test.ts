import { describe, expect, it } from 'vitest';
import { DemoHookReceiver } from '#standalone/demo-jobs.ts';

describe('the demo webhook receiver of standalone', () => {
  const post = (body: string, key?: string) =>
    new Request('http://127.0.0.1/demo/hooks', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) },
    });

  it('keeps a notification once per idempotency key and lists what it kept', async () => {
    const hooks = new DemoHookReceiver();
    expect(await (await hooks.handle(post('{"kind":"task_failure"}', 'k1')))?.json()).toEqual({ kept: true });
    expect(await (await hooks.handle(post('{"kind":"task_failure"}', 'k1')))?.json()).toEqual({
      duplicate: true,
    });
    const listed = (await (await hooks.handle(new Request('http://127.0.0.1/demo/hooks')))?.json()) as {
      deliveries: { idempotency_key: string; body: unknown }[];
    };
    expect(listed.deliveries.map((d) => [d.idempotency_key, d.body])).toEqual([
      ['k1', { kind: 'task_failure' }],
    ]);
    expect((await hooks.handle(post('not json', 'k2')))?.status).toBe(400);
    expect(await hooks.handle(new Request('http://127.0.0.1/api/v2/dags'))).toBeUndefined();
  });
});

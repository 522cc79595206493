import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Trigger, TriggererJob } from '#core/models.ts';
import { DynamoStore } from '#store/dynamodb.ts';
import { createDynamoClient, toDocumentClient } from '#store/embedded.ts';
import { AlreadyExistsError, ConditionFailedError, InvalidKeyError, NotFoundError } from '#store/errors.ts';
import { instrumentClient, RequestCounter } from '#store/instrument.ts';
import { jobKey, TTL_ATTRIBUTE, triggerKey } from '#store/keys.ts';
import type { Page, PageRequest } from '#store/port.ts';
import { type StoreHarness, startStoreHarness } from './store-fixtures.ts';

let harness: StoreHarness;
const counter = new RequestCounter();
let counted: ReturnType<typeof toDocumentClient>;

beforeAll(async () => {
  harness = await startStoreHarness();
  counted = toDocumentClient(createDynamoClient({ endpoint: harness.endpoint, embedded: true }));
  instrumentClient(counted, counter);
});

afterAll(async () => {
  counted.destroy();
  await harness.close();
});

/** A store whose requests are counted from now on. */
async function countedStore(): Promise<DynamoStore> {
  const store = harness.storeOn(await harness.newTable(), counted);
  counter.reset();
  return store;
}

/** A store with a retention, and a raw read of its items. */
async function retainingStore() {
  const tableName = await harness.newTable();
  const store = new DynamoStore({ client: harness.documentClient, tableName, retentionDays: 7 });
  const rawItem = async (key: { pk: string; sk: string }) =>
    (
      await harness.documentClient.send(
        new GetCommand({ TableName: tableName, Key: key, ConsistentRead: true }),
      )
    ).Item;
  return { store, rawItem };
}

const T0 = '2026-01-01T00:00:00.000Z';
const CLAIMED_AT = '2026-01-01T00:05:00.000Z';

/** A trigger created `minute` minutes after T0. */
function trigger(triggerId: string, overrides: Partial<Trigger> = {}, minute = 0): Trigger {
  return {
    triggerId,
    name: 'DateTimeTrigger',
    kwargs: '{"moment":"2026-01-01T01:00:00.000Z"}',
    queue: 'default',
    ti: { dagId: 'etl', runId: 'r1', taskId: `wait_${triggerId}`, mapIndex: -1 },
    tryNumber: 1,
    deferralSeq: 1,
    createdAt: new Date(Date.parse(T0) + minute * 60_000).toISOString(),
    timeoutAt: null,
    jobId: null,
    claimedAt: null,
    revision: 0,
    ...overrides,
  };
}

function job(jobId: string, overrides: Partial<TriggererJob> = {}): TriggererJob {
  return {
    jobId,
    hostname: 'host-1',
    capacity: 100,
    queues: ['default'],
    state: 'running',
    startedAt: T0,
    heartbeatAt: T0,
    endedAt: null,
    running: 0,
    revision: 0,
    ...overrides,
  };
}

async function allPages<T>(list: (page: PageRequest) => Promise<Page<T>>, limit: number) {
  const pages: T[][] = [];
  let cursor: string | undefined;
  do {
    const page = await list(cursor === undefined ? { limit } : { limit, cursor });
    pages.push(page.items);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return pages;
}

const ids = (triggers: readonly Trigger[]) => triggers.map((t) => t.triggerId);

describe('DynamoStore triggers: put and read', () => {
  it('reads back a put trigger equal to what was put', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1', { timeoutAt: '2026-01-01T02:00:00.000Z' }));
    expect(await store.getTrigger('t1')).toEqual(trigger('t1', { timeoutAt: '2026-01-01T02:00:00.000Z' }));
  });

  it('reads a trigger that was never put as undefined', async () => {
    const store = await harness.newStore();
    expect(await store.getTrigger('missing')).toBeUndefined();
  });

  it('keeps the stored trigger and its claim when the same id is put again', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1'));
    const claimed = await store.claimTrigger('t1', null, 'job-a', CLAIMED_AT);
    await store.putTrigger(trigger('t1', { name: 'OtherTrigger' }));
    expect(await store.getTrigger('t1')).toEqual(claimed);
  });

  it('reads more than 100 triggers by id in batches, in the order asked for, leaving out missing ones', async () => {
    const store = await countedStore();
    const stored = Array.from({ length: 150 }, (_, index) => `t${String(index).padStart(3, '0')}`);
    for (const triggerId of stored) await store.putTrigger(trigger(triggerId));
    const asked = [...stored].reverse().concat(['gone-1', 'gone-2']);
    counter.reset();
    const read = await store.getTriggers(asked);
    expect(ids(read)).toEqual([...stored].reverse());
    expect(counter.snapshot().byOperation).toEqual({ BatchGetItem: 2 });
  });

  it('indexes a trigger under its queue while unclaimed and under its job while claimed', async () => {
    const { store, rawItem } = await retainingStore();
    await store.putTrigger(trigger('t1', { queue: 'sensors' }));
    expect(await rawItem(triggerKey('t1'))).toMatchObject({
      gsi1pk: 'TRIGGERS#QUEUE#sensors',
      gsi1sk: `${T0}#t1`,
    });
    await store.claimTrigger('t1', null, 'job-a', CLAIMED_AT);
    expect(await rawItem(triggerKey('t1'))).toMatchObject({
      gsi1pk: 'TRIGGERS#JOB#job-a',
      gsi1sk: `${T0}#t1`,
    });
  });

  it('stamps no time to live on a trigger, even with a retention', async () => {
    const { store, rawItem } = await retainingStore();
    await store.putTrigger(trigger('t1'));
    await store.claimTrigger('t1', null, 'job-a', CLAIMED_AT);
    await store.releaseTrigger('t1', 'job-a');
    expect(await rawItem(triggerKey('t1'))).not.toHaveProperty(TTL_ATTRIBUTE);
  });
});

describe('DynamoStore triggers: count', () => {
  it('counts every stored trigger, claimed or not, up to the cap', async () => {
    const store = await harness.newStore();
    expect(await store.countTriggers(10)).toBe(0);
    for (const id of ['c1', 'c2', 'c3', 'c4']) await store.putTrigger(trigger(id));
    await store.claimTrigger('c1', null, 'job-1', T0);
    expect([
      await store.countTriggers(10),
      await store.countTriggers(3),
      await store.countTriggers(4),
    ]).toEqual([4, 3, 4]);
    await expect(store.countTriggers(0)).rejects.toThrow('trigger count cap 0 is not a positive integer');
  });
});

describe('DynamoStore triggers: claim', () => {
  it('gives an unclaimed trigger to the job and returns it with its revision bumped', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1'));
    const claimed = await store.claimTrigger('t1', null, 'job-a', CLAIMED_AT);
    expect(claimed).toEqual(trigger('t1', { jobId: 'job-a', claimedAt: CLAIMED_AT, revision: 1 }));
    expect(await store.getTrigger('t1')).toEqual(claimed);
  });

  it('claims with one UpdateItem and nothing else', async () => {
    const store = await countedStore();
    await store.putTrigger(trigger('t1'));
    counter.reset();
    await store.claimTrigger('t1', null, 'job-a', CLAIMED_AT);
    expect(counter.snapshot().byOperation).toEqual({ UpdateItem: 1 });
  });

  it('refuses to claim a trigger held by another job as if unclaimed, writing nothing', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1'));
    const held = await store.claimTrigger('t1', null, 'job-a', CLAIMED_AT);
    await expect(store.claimTrigger('t1', null, 'job-b', CLAIMED_AT)).rejects.toThrow(ConditionFailedError);
    expect(await store.getTrigger('t1')).toEqual(held);
  });

  it('refuses a takeover that expects another holder than the stored one', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1'));
    const held = await store.claimTrigger('t1', null, 'job-a', CLAIMED_AT);
    await expect(store.claimTrigger('t1', 'job-x', 'job-b', CLAIMED_AT)).rejects.toThrow(
      ConditionFailedError,
    );
    expect(await store.getTrigger('t1')).toEqual(held);
  });

  it('takes a trigger over from the expected holder, moving it to the new job', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1'));
    await store.claimTrigger('t1', null, 'job-a', CLAIMED_AT);
    const taken = await store.claimTrigger('t1', 'job-a', 'job-b', '2026-01-01T00:10:00.000Z');
    expect(taken).toMatchObject({ jobId: 'job-b', claimedAt: '2026-01-01T00:10:00.000Z', revision: 2 });
    expect(ids((await store.listTriggersOfJob('job-b', { limit: 10 })).items)).toEqual(['t1']);
    expect((await store.listTriggersOfJob('job-a', { limit: 10 })).items).toEqual([]);
  });

  it('refuses to claim a trigger that does not exist, creating nothing', async () => {
    const store = await harness.newStore();
    await expect(store.claimTrigger('missing', null, 'job-a', CLAIMED_AT)).rejects.toThrow(
      ConditionFailedError,
    );
    expect(await store.getTrigger('missing')).toBeUndefined();
  });
});

describe('DynamoStore triggers: release', () => {
  it('puts a trigger its holder releases back to its queue, unclaimed', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1'));
    await store.claimTrigger('t1', null, 'job-a', CLAIMED_AT);
    await store.releaseTrigger('t1', 'job-a');
    expect(await store.getTrigger('t1')).toEqual(trigger('t1', { revision: 2 }));
    expect(ids(await store.listUnclaimedTriggers(['default'], 10))).toEqual(['t1']);
  });

  it('leaves a trigger held by another job as it is, without an error', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1'));
    const held = await store.claimTrigger('t1', null, 'job-b', CLAIMED_AT);
    await store.releaseTrigger('t1', 'job-a');
    expect(await store.getTrigger('t1')).toEqual(held);
  });

  it('leaves a trigger that does not exist absent, without an error', async () => {
    const store = await harness.newStore();
    await store.releaseTrigger('missing', 'job-a');
    expect(await store.getTrigger('missing')).toBeUndefined();
  });
});

describe('DynamoStore triggers: delete', () => {
  it('deletes a trigger', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1'));
    await store.deleteTrigger('t1');
    expect(await store.getTrigger('t1')).toBeUndefined();
  });

  it('treats deleting a trigger that is gone as done', async () => {
    const store = await harness.newStore();
    await expect(store.deleteTrigger('missing')).resolves.toBeUndefined();
    await expect(store.deleteTrigger('missing', 'job-a')).resolves.toBeUndefined();
  });

  it('deletes a trigger held by the expected job', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1'));
    await store.claimTrigger('t1', null, 'job-a', CLAIMED_AT);
    await store.deleteTrigger('t1', 'job-a');
    expect(await store.getTrigger('t1')).toBeUndefined();
  });

  it('keeps a trigger held by another job than the expected one, without an error', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1'));
    const held = await store.claimTrigger('t1', null, 'job-b', CLAIMED_AT);
    await store.deleteTrigger('t1', 'job-a');
    expect(await store.getTrigger('t1')).toEqual(held);
  });

  it('keeps a claimed trigger when the delete expects it unclaimed', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1'));
    const held = await store.claimTrigger('t1', null, 'job-a', CLAIMED_AT);
    await store.deleteTrigger('t1', null);
    expect(await store.getTrigger('t1')).toEqual(held);
  });
});

describe('DynamoStore triggers: listUnclaimedTriggers', () => {
  it('lists the triggers of several queues merged, oldest first', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('late', { queue: 'a' }, 3));
    await store.putTrigger(trigger('first', { queue: 'b' }, 0));
    await store.putTrigger(trigger('second', { queue: 'a' }, 1));
    await store.putTrigger(trigger('third', { queue: 'b' }, 2));
    expect(ids(await store.listUnclaimedTriggers(['a', 'b'], 10))).toEqual([
      'first',
      'second',
      'third',
      'late',
    ]);
  });

  it('returns at most the limit, the oldest ones', async () => {
    const store = await harness.newStore();
    for (let minute = 0; minute < 6; minute++) {
      await store.putTrigger(trigger(`t${minute}`, { queue: minute % 2 === 0 ? 'a' : 'b' }, minute));
    }
    expect(ids(await store.listUnclaimedTriggers(['a', 'b'], 3))).toEqual(['t0', 't1', 't2']);
  });

  it('leaves out claimed triggers', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1', {}, 0));
    await store.putTrigger(trigger('t2', {}, 1));
    await store.claimTrigger('t1', null, 'job-a', CLAIMED_AT);
    expect(ids(await store.listUnclaimedTriggers(['default'], 10))).toEqual(['t2']);
  });

  it('leaves out the triggers of queues not asked for', async () => {
    const store = await harness.newStore();
    await store.putTrigger(trigger('t1', { queue: 'a' }));
    await store.putTrigger(trigger('t2', { queue: 'b' }));
    expect(ids(await store.listUnclaimedTriggers(['b'], 10))).toEqual(['t2']);
  });

  it('lists nothing for no queues, without a request', async () => {
    const store = await countedStore();
    expect(await store.listUnclaimedTriggers([], 10)).toEqual([]);
    expect(counter.snapshot().reads).toBe(0);
  });
});

describe('DynamoStore triggers: listings', () => {
  it('lists the triggers of one job page by page, oldest first', async () => {
    const store = await harness.newStore();
    for (let minute = 0; minute < 5; minute++) {
      await store.putTrigger(trigger(`a${minute}`, {}, 4 - minute));
      await store.claimTrigger(`a${minute}`, null, 'job-a', CLAIMED_AT);
    }
    await store.putTrigger(trigger('b0'));
    await store.claimTrigger('b0', null, 'job-b', CLAIMED_AT);
    await store.putTrigger(trigger('unclaimed'));
    const pages = await allPages((page) => store.listTriggersOfJob('job-a', page), 2);
    expect(pages.slice(0, 2).map((page) => page.length)).toEqual([2, 2]);
    expect(ids(pages.flat())).toEqual(['a4', 'a3', 'a2', 'a1', 'a0']);
  });

  it('lists every trigger page by page, by id', async () => {
    const store = await harness.newStore();
    for (const triggerId of ['c', 'a', 'e', 'b', 'd']) await store.putTrigger(trigger(triggerId));
    await store.claimTrigger('b', null, 'job-a', CLAIMED_AT);
    const pages = await allPages((page) => store.listTriggers(page), 2);
    expect(pages.slice(0, 2).map((page) => page.length)).toEqual([2, 2]);
    expect(ids(pages.flat())).toEqual(['a', 'b', 'c', 'd', 'e']);
  });
});

describe('DynamoStore triggers: ids', () => {
  it.each([
    ['a trigger id', () => trigger('t#1'), "trigger id 't#1'"],
    ['a queue', () => trigger('t1', { queue: 'a#b' }), "trigger queue 'a#b'"],
    ['a holder', () => trigger('t1', { jobId: 'job#a', claimedAt: CLAIMED_AT }), "job id 'job#a'"],
  ])('refuses to put a trigger with # in %s, naming it', async (_kind, make, named) => {
    const store = await countedStore();
    await expect(store.putTrigger(make())).rejects.toThrow(InvalidKeyError);
    await expect(store.putTrigger(make())).rejects.toThrow(named);
    expect(counter.snapshot().writes).toBe(0);
  });

  it('refuses a claim for a job id with #, before any request', async () => {
    const store = await countedStore();
    await expect(store.claimTrigger('t1', null, 'job#a', CLAIMED_AT)).rejects.toThrow(
      "job id 'job#a' cannot be stored",
    );
    expect(counter.snapshot().writes).toBe(0);
  });

  it('refuses to list the unclaimed triggers of a queue with #', async () => {
    const store = await harness.newStore();
    await expect(store.listUnclaimedTriggers(['a#b'], 10)).rejects.toThrow(InvalidKeyError);
  });

  it('refuses to create a job whose id has #', async () => {
    const store = await harness.newStore();
    await expect(store.putJob(job('job#1'))).rejects.toThrow("job id 'job#1' cannot be stored");
  });
});

describe('DynamoStore triggerer jobs', () => {
  it('reads back a created job equal to what was put', async () => {
    const store = await harness.newStore();
    await store.putJob(job('job-a', { queues: ['default', 'sensors'] }));
    expect(await store.getJob('job-a')).toEqual(job('job-a', { queues: ['default', 'sensors'] }));
  });

  it('refuses to create a job whose id is taken, keeping the first', async () => {
    const store = await harness.newStore();
    await store.putJob(job('job-a'));
    await expect(store.putJob(job('job-a', { hostname: 'host-2' }))).rejects.toThrow(AlreadyExistsError);
    expect(await store.getJob('job-a')).toEqual(job('job-a'));
  });

  it('records a heartbeat of a running job, bumping its revision', async () => {
    const store = await harness.newStore();
    await store.putJob(job('job-a'));
    const beat = await store.heartbeatJob('job-a', '2026-01-01T00:00:30.000Z', 7);
    expect(beat).toEqual(job('job-a', { heartbeatAt: '2026-01-01T00:00:30.000Z', running: 7, revision: 1 }));
    expect(await store.getJob('job-a')).toEqual(beat);
  });

  it('refuses a heartbeat of a complete job with ConditionFailedError', async () => {
    const store = await harness.newStore();
    await store.putJob(job('job-a'));
    const complete = await store.completeJob('job-a', '2026-01-01T00:01:00.000Z');
    await expect(store.heartbeatJob('job-a', '2026-01-01T00:02:00.000Z', 1)).rejects.toThrow(
      ConditionFailedError,
    );
    expect(await store.getJob('job-a')).toEqual(complete);
  });

  it('refuses a heartbeat of a job that does not exist, creating nothing', async () => {
    const store = await harness.newStore();
    await expect(store.heartbeatJob('missing', T0, 0)).rejects.toThrow(ConditionFailedError);
    expect(await store.getJob('missing')).toBeUndefined();
  });

  it('marks a job complete with its end time', async () => {
    const store = await harness.newStore();
    await store.putJob(job('job-a'));
    const complete = await store.completeJob('job-a', '2026-01-01T00:01:00.000Z');
    expect(complete).toEqual(
      job('job-a', { state: 'complete', endedAt: '2026-01-01T00:01:00.000Z', revision: 1 }),
    );
  });

  it('completes a complete job again as a no-op, keeping the first end time', async () => {
    const store = await harness.newStore();
    await store.putJob(job('job-a'));
    const first = await store.completeJob('job-a', '2026-01-01T00:01:00.000Z');
    expect(await store.completeJob('job-a', '2026-01-01T00:09:00.000Z')).toEqual(first);
    expect(await store.getJob('job-a')).toEqual(first);
  });

  it('refuses to complete a job that does not exist with NotFoundError', async () => {
    const store = await harness.newStore();
    await expect(store.completeJob('missing', T0)).rejects.toThrow(NotFoundError);
    expect(await store.getJob('missing')).toBeUndefined();
  });

  it('lists every job page by page, by id', async () => {
    const store = await harness.newStore();
    for (const jobId of ['job-c', 'job-a', 'job-b']) await store.putJob(job(jobId));
    const pages = await allPages((page) => store.listJobs(page), 2);
    expect(pages[0]).toHaveLength(2);
    expect(pages.flat().map((j) => j.jobId)).toEqual(['job-a', 'job-b', 'job-c']);
  });

  it('deletes a job, and a job already gone without an error', async () => {
    const store = await harness.newStore();
    await store.putJob(job('job-a'));
    await store.deleteJob('job-a');
    expect(await store.getJob('job-a')).toBeUndefined();
    await expect(store.deleteJob('job-a')).resolves.toBeUndefined();
  });

  it('stamps no time to live on a job, even with a retention', async () => {
    const { store, rawItem } = await retainingStore();
    await store.putJob(job('job-a'));
    await store.heartbeatJob('job-a', '2026-01-01T00:00:30.000Z', 1);
    await store.completeJob('job-a', '2026-01-01T00:01:00.000Z');
    expect(await rawItem(jobKey('job-a'))).not.toHaveProperty(TTL_ATTRIBUTE);
  });
});

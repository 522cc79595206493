import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerDeps } from '#aws/handler-deps.ts';
import { readSerializedDags } from '#aws/lambda-serialized-dags.ts';
import { settingsSchema } from '#config/settings.ts';
import type { ParsedDagsFolder } from '#engine/dag-registry.ts';
import { dag } from '#sdk/index.ts';
import { versionDag } from '#sdk/serialize.ts';
import type { Store } from '#store/port.ts';
import { makeHandler, REGISTRATION_ID, type RegistrationResult } from '../../functions/register-dags.ts';
import { type LambdaHandler, lambdaContext, quietObservability } from '../support/lambda-events.ts';
import { type StoreHarness, startStoreHarness } from './store-fixtures.ts';

/**
 * The deploy-time registration as CloudFormation drives it: Create and Update write the DAGs,
 * Delete touches nothing, and CloudFormation always gets an answer at its response URL (or, under
 * the provider framework, the handler's return value or error).
 */

const RESPONSE_URL = 'https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/signed?x=1';

const first = dag({ id: 'first_dag', startDate: '2026-01-01T00:00:00Z' }, (d) => {
  d.task('a', async () => 1);
});
const second = dag({ id: 'second_dag', startDate: '2026-01-01T00:00:00Z' }, (d) => {
  d.task('b', async () => 2);
});

function serialized(...dags: (typeof first)[]): ParsedDagsFolder {
  return { dags: dags.map((one) => versionDag(one, `${one.dagId}.ts`)), errors: [] };
}

let harness: StoreHarness;

beforeAll(async () => {
  harness = await startStoreHarness();
});

afterAll(async () => {
  await harness.close();
});

interface Answer {
  url: string;
  method: string;
  body: Record<string, unknown>;
}

function registration(store: Store, overrides: Partial<HandlerDeps> = {}) {
  const answers: Answer[] = [];
  const responseFetch = (async (url: string | URL | Request, init?: RequestInit) => {
    answers.push({ url: String(url), method: init?.method ?? 'GET', body: JSON.parse(String(init?.body)) });
    return new Response('', { status: 200 });
  }) as typeof fetch;
  const handler = makeHandler({
    ...quietObservability(),
    settings: settingsSchema.parse({}),
    now: Date.now,
    store,
    responseFetch,
    ...overrides,
  }) as unknown as LambdaHandler<CloudFormationCustomResourceEvent, RegistrationResult>;
  return { handler, answers };
}

function cfnEvent(
  type: 'Create' | 'Update' | 'Delete',
  properties: Record<string, unknown>,
  responseUrl = RESPONSE_URL,
): CloudFormationCustomResourceEvent {
  const common = {
    ServiceToken: 'arn:aws:lambda:us-east-1:123456789012:function:register',
    ResponseURL: responseUrl,
    StackId: 'arn:aws:cloudformation:us-east-1:123456789012:stack/updraft/1',
    RequestId: `request-${type}`,
    LogicalResourceId: 'DagRegistration',
    ResourceType: 'Custom::UpdraftDagRegistration',
    ResourceProperties: {
      ServiceToken: 'arn:aws:lambda:us-east-1:123456789012:function:register',
      ...properties,
    },
  };
  if (type === 'Create') return { ...common, RequestType: 'Create' };
  if (type === 'Update')
    return {
      ...common,
      RequestType: 'Update',
      PhysicalResourceId: REGISTRATION_ID,
      OldResourceProperties: common.ResourceProperties,
    };
  return { ...common, RequestType: 'Delete', PhysicalResourceId: REGISTRATION_ID };
}

describe('the register-dags handler', () => {
  it('registers the DAGs of the SerializedDags property on Create and answers SUCCESS', async () => {
    const store = await harness.newStore();
    const { handler, answers } = registration(store);
    const result = await handler(
      cfnEvent('Create', { SerializedDags: JSON.stringify(serialized(first, second)) }),
      lambdaContext('register'),
    );
    expect(result).toEqual({ PhysicalResourceId: REGISTRATION_ID, Data: { DagCount: 2 } });
    expect((await store.getDag('first_dag'))?.isActive).toBe(true);
    expect((await store.getDag('second_dag'))?.isActive).toBe(true);
    expect(answers).toEqual([
      {
        url: RESPONSE_URL,
        method: 'PUT',
        body: {
          Status: 'SUCCESS',
          PhysicalResourceId: REGISTRATION_ID,
          StackId: 'arn:aws:cloudformation:us-east-1:123456789012:stack/updraft/1',
          RequestId: 'request-Create',
          LogicalResourceId: 'DagRegistration',
          Data: { DagCount: 2 },
        },
      },
    ]);
  });

  it('marks a DAG no longer deployed inactive on Update', async () => {
    const store = await harness.newStore();
    const { handler } = registration(store);
    await handler(
      cfnEvent('Create', { SerializedDags: JSON.stringify(serialized(first, second)) }),
      lambdaContext('r'),
    );
    await handler(
      cfnEvent('Update', { SerializedDags: JSON.stringify(serialized(first)) }),
      lambdaContext('r'),
    );
    expect((await store.getDag('first_dag'))?.isActive).toBe(true);
    expect((await store.getDag('second_dag'))?.isActive).toBe(false);
  });

  it('reads the bundled DAGs when the resource has no SerializedDags property', async () => {
    const store = await harness.newStore();
    const { handler } = registration(store, { serializedDags: async () => serialized(second) });
    await handler(cfnEvent('Create', {}), lambdaContext('r'));
    expect((await store.getDag('second_dag'))?.isActive).toBe(true);
    expect(await store.getDag('first_dag')).toBeUndefined();
  });

  it('does nothing to the table on Delete, and answers SUCCESS', async () => {
    const untouchable = new Proxy({} as Store, {
      get: () => () => Promise.reject(new Error('Delete must not touch the table')),
    });
    const { handler, answers } = registration(untouchable);
    await handler(cfnEvent('Delete', {}), lambdaContext('r'));
    expect(answers.map((answer) => [answer.body.Status, answer.body.PhysicalResourceId])).toEqual([
      ['SUCCESS', REGISTRATION_ID],
    ]);
  });

  it('answers FAILED with the reason when the DAGs are malformed, instead of leaving CloudFormation waiting', async () => {
    const store = await harness.newStore();
    const { handler, answers } = registration(store);
    const result = await handler(
      cfnEvent('Create', { SerializedDags: JSON.stringify({ dags: [{ dag: {} }], errors: [] }) }),
      lambdaContext('r'),
    );
    expect(result).toEqual({ PhysicalResourceId: REGISTRATION_ID });
    expect(answers).toHaveLength(1);
    expect(answers[0]?.body).toMatchObject({ Status: 'FAILED', PhysicalResourceId: REGISTRATION_ID });
    expect(String(answers[0]?.body.Reason)).toContain('malformed');
  });

  it('leaves the answer to the provider framework when it is in between: returns, or throws', async () => {
    const store = await harness.newStore();
    const { handler, answers } = registration(store);
    const result = await handler(
      cfnEvent('Create', { SerializedDags: JSON.stringify(serialized(first)) }, '...'),
      lambdaContext('r'),
    );
    expect(result).toEqual({ PhysicalResourceId: REGISTRATION_ID, Data: { DagCount: 1 } });
    await expect(
      handler(cfnEvent('Update', { SerializedDags: 'not json' }, '...'), lambdaContext('r')),
    ).rejects.toThrow('not JSON');
    expect(answers).toEqual([]);
  });
});

describe('readSerializedDags', () => {
  it('reads a bundled file and names it when it is missing', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'updraft-serialized-'));
    try {
      const file = join(folder, 'serialized-dags.json');
      await writeFile(file, JSON.stringify(serialized(first)));
      expect((await readSerializedDags(pathToFileURL(file))).dags.map((one) => one.dag.dagId)).toEqual([
        'first_dag',
      ]);
      await expect(readSerializedDags(pathToFileURL(join(folder, 'missing.json')))).rejects.toThrow(
        'missing.json',
      );
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});

import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as z from 'zod';
import { SETTING_ENV_VARS, type Settings, settingsSchema } from '#config/settings.ts';
import { TABLE_DEFINITION, TTL_ATTRIBUTE } from '#store/keys.ts';
import { LogBucketConfigurationError, type UpdraftLogBucketOverrides } from '../../lib/log-bucket.ts';
import { RETENTION_DAYS_ENV_VAR } from '../../lib/store-table.ts';
import { MIN_DEPLOYED_QUEUED_TIMEOUT, UpdraftConfigurationError } from '../../lib/updraft.ts';
import {
  environmentOf,
  logicalIdOf,
  removeOutdirs,
  type Synthesized,
  synthesize,
  synthesizeTemplate,
  type TemplateOnly,
  testStackProps,
} from './helpers.ts';

afterAll(removeOutdirs);

const tableResourceSchema = z.object({
  Properties: z.record(z.string(), z.unknown()),
  DeletionPolicy: z.string().optional(),
  UpdateReplacePolicy: z.string().optional(),
});

interface TableResource {
  logicalId: string;
  resource: z.infer<typeof tableResourceSchema>;
}

function onlyTable(template: Template): TableResource {
  const tables = Object.entries(template.findResources('AWS::DynamoDB::Table'));
  expect(tables).toHaveLength(1);
  const [logicalId, resource] = tables[0]!;
  return { logicalId, resource: tableResourceSchema.parse(resource) };
}

function keySchema(partitionKey: string, sortKey: string) {
  return [
    { AttributeName: partitionKey, KeyType: 'HASH' },
    { AttributeName: sortKey, KeyType: 'RANGE' },
  ];
}

describe('UpdraftStack', () => {
  let synthesized: Synthesized;
  let table: TableResource;

  beforeAll(() => {
    synthesized = synthesize();
    table = onlyTable(synthesized.template);
  });

  it('holds exactly one DynamoDB table', () => {
    synthesized.template.resourceCountIs('AWS::DynamoDB::Table', 1);
  });

  it('keys the table by pk (HASH) and sk (RANGE)', () => {
    expect(table.resource.Properties.KeySchema).toEqual(keySchema('pk', 'sk'));
    expect(table.resource.Properties.KeySchema).toEqual(
      keySchema(TABLE_DEFINITION.partitionKey.name, TABLE_DEFINITION.sortKey.name),
    );
  });

  it('defines exactly the key attributes of the key design, all strings', () => {
    const fromDefinition = [
      TABLE_DEFINITION.partitionKey,
      TABLE_DEFINITION.sortKey,
      ...TABLE_DEFINITION.globalSecondaryIndexes.flatMap((index) => [index.partitionKey, index.sortKey]),
    ].map((attribute) => ({ AttributeName: attribute.name, AttributeType: attribute.type }));
    const literal = ['pk', 'sk', 'gsi1pk', 'gsi1sk', 'gsi2pk', 'gsi2sk'].map((name) => ({
      AttributeName: name,
      AttributeType: 'S',
    }));
    expect(table.resource.Properties.AttributeDefinitions).toEqual(fromDefinition);
    expect(table.resource.Properties.AttributeDefinitions).toEqual(literal);
  });

  it('creates both global secondary indexes with the keys and projections of the key design', () => {
    const fromDefinition = TABLE_DEFINITION.globalSecondaryIndexes.map((index) => ({
      IndexName: index.indexName,
      KeySchema: keySchema(index.partitionKey.name, index.sortKey.name),
      Projection:
        index.nonKeyAttributes === undefined
          ? { ProjectionType: index.projectionType }
          : { ProjectionType: index.projectionType, NonKeyAttributes: [...index.nonKeyAttributes] },
    }));
    const literal = [
      { IndexName: 'gsi1', KeySchema: keySchema('gsi1pk', 'gsi1sk'), Projection: { ProjectionType: 'ALL' } },
      {
        IndexName: 'gsi2',
        KeySchema: keySchema('gsi2pk', 'gsi2sk'),
        Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['dagId', 'runId', 'state'] },
      },
    ];
    expect(table.resource.Properties.GlobalSecondaryIndexes).toEqual(fromDefinition);
    expect(table.resource.Properties.GlobalSecondaryIndexes).toEqual(literal);
  });

  it('bills on demand', () => {
    expect(table.resource.Properties.BillingMode).toBe('PAY_PER_REQUEST');
  });

  it('enables point-in-time recovery', () => {
    expect(table.resource.Properties.PointInTimeRecoverySpecification).toEqual({
      PointInTimeRecoveryEnabled: true,
    });
  });

  it('expires items by their expiresAt attribute (time to live)', () => {
    expect(TTL_ATTRIBUTE).toBe('expiresAt');
    expect(table.resource.Properties.TimeToLiveSpecification).toEqual({
      AttributeName: 'expiresAt',
      Enabled: true,
    });
  });

  it('encrypts with the AWS-managed key', () => {
    expect(table.resource.Properties.SSESpecification).toEqual({ SSEEnabled: true });
  });

  it('retains the table when the stack is deleted or the table replaced', () => {
    expect(table.resource.DeletionPolicy).toBe('Retain');
    expect(table.resource.UpdateReplacePolicy).toBe('Retain');
  });

  it('leaves deletion protection off by default', () => {
    expect(table.resource.Properties.DeletionProtectionEnabled).toBe(false);
  });

  it('outputs the table name', () => {
    synthesized.template.hasOutput('TableName', { Value: { Ref: table.logicalId } });
  });

  it('outputs the API URL, where its token is, the Execution API URL, the log bucket and the dashboard', () => {
    const outputs = Object.keys(synthesized.template.findOutputs('*'));
    expect(outputs.sort()).toEqual(
      [
        'ApiTokenSecretArn',
        'ApiUrl',
        'DashboardName',
        'ExecutionApiUrl',
        'LogBucketName',
        'TableName',
      ].sort(),
    );
  });

  it('passes the AWS Solutions checks without errors', () => {
    const errors = synthesized.findings.filter((f) => f.severity === 'error' || f.severity === 'fatal');
    expect(errors).toEqual([]);
  });

  it('passes the AWS Solutions checks without warnings, which fail `cdk synth` under cdk-nag v3 too', () => {
    expect(synthesized.findings).toEqual([]);
  });
});

describe('UpdraftStack in an account and region', () => {
  it('passes the AWS Solutions checks when the environment is known at synth, as under `cdk deploy`', () => {
    const { findings } = synthesize(
      testStackProps({ env: { account: '123456789012', region: 'eu-west-1' } }),
    );
    expect(findings).toEqual([]);
  });
});

describe('UpdraftTable overrides', () => {
  it('lets the user choose the removal policy and deletion protection', () => {
    const { template } = synthesizeTemplate(
      testStackProps({
        store: { tableProps: { removalPolicy: RemovalPolicy.DESTROY, deletionProtection: true } },
      }),
    );
    const table = onlyTable(template);
    expect(table.resource.DeletionPolicy).toBe('Delete');
    expect(table.resource.Properties.DeletionProtectionEnabled).toBe(true);
  });

  it('keeps the key design whatever else the user overrides', () => {
    const { template } = synthesize(
      testStackProps({ store: { tableProps: { tableName: 'updraft-store' } } }),
    );
    const table = onlyTable(template);
    expect(table.resource.Properties.TableName).toBe('updraft-store');
    expect(table.resource.Properties.KeySchema).toEqual(keySchema('pk', 'sk'));
    expect(table.resource.Properties.BillingMode).toBe('PAY_PER_REQUEST');
    expect(table.resource.Properties.TimeToLiveSpecification).toEqual({
      AttributeName: 'expiresAt',
      Enabled: true,
    });
  });

  it('is caught by the AWS Solutions checks when point-in-time recovery is turned off', () => {
    const { findings } = synthesize(
      testStackProps({
        store: {
          tableProps: { pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: false } },
        },
      }),
    );
    expect(findings).toEqual([
      {
        rule: 'AwsSolutions-DDB3',
        severity: 'warning',
        paths: ['Updraft/Orchestrator/Store/Table/Resource'],
      },
    ]);
  });
});

function functionIdsOf(synthesized: TemplateOnly) {
  const { updraft } = synthesized.stack;
  return {
    api: logicalIdOf(updraft.api.function),
    executionApi: logicalIdOf(updraft.executionApi.function),
    scheduler: logicalIdOf(updraft.scheduler.function),
    worker: logicalIdOf(updraft.workers.function),
    registerDags: logicalIdOf(updraft.dagRegistration.function),
  };
}

/** The settings a function of the template reads from its environment, parsed as it parses them. */
function settingsOf(synthesized: TemplateOnly, functionId: string): Settings {
  const environment = environmentOf(synthesized.template, functionId);
  const values = Object.entries(SETTING_ENV_VARS)
    .filter(([, name]) => typeof environment[name] === 'string')
    .map(([key, name]) => [key, environment[name]]);
  return settingsSchema.parse(Object.fromEntries(values));
}

function logBucketOf(synthesized: TemplateOnly) {
  return synthesized.template.findResources('AWS::S3::Bucket')[
    logicalIdOf(synthesized.stack.updraft.logs.bucket)
  ];
}

function logBucketExpirations(synthesized: TemplateOnly): unknown[] {
  const rules = (logBucketOf(synthesized)?.Properties?.LifecycleConfiguration?.Rules ?? []) as {
    ExpirationInDays?: number;
  }[];
  return rules.map((rule) => rule.ExpirationInDays);
}

const SETTINGS_READERS = ['api', 'executionApi', 'scheduler'] as const;

describe('Updraft settings on a deployment', () => {
  let synthesized: TemplateOnly;
  let ids: ReturnType<typeof functionIdsOf>;

  beforeAll(() => {
    synthesized = synthesizeTemplate(testStackProps());
    ids = functionIdsOf(synthesized);
  });

  it('lets a workload wait 30 minutes in its queue before it is sent again: twice the worker timeout', () => {
    // Behind busy worker slots a workload waits in SQS, each slot held up to 900 s; standalone's
    // two minutes (five sends) would fail it as never started after ten.
    for (const name of SETTINGS_READERS) {
      expect(settingsOf(synthesized, ids[name]).queuedTimeoutMs, name).toBe(30 * 60_000);
    }
    expect(MIN_DEPLOYED_QUEUED_TIMEOUT.toMilliseconds()).toBeGreaterThanOrEqual(2 * 900_000);
  });

  it('gives task tokens two hours, so a queued token outlives the queued timeout (under half of it)', () => {
    for (const name of SETTINGS_READERS) {
      const settings = settingsOf(synthesized, ids[name]);
      expect(settings.executionTokenTtlSeconds, name).toBe(7_200);
      expect(settings.queuedTimeoutMs, name).toBeLessThan((settings.executionTokenTtlSeconds * 1000) / 2);
    }
  });

  it("keeps the user's queued timeout and derives the token lifetime from it", () => {
    const custom = synthesizeTemplate(testStackProps({ settings: { queuedTimeoutMs: 3_600_000 } }));
    const settings = settingsOf(custom, functionIdsOf(custom).scheduler);
    expect(settings.queuedTimeoutMs).toBe(3_600_000);
    expect(settings.executionTokenTtlSeconds).toBe(14_400);
  });

  it('never derives a token lifetime below the standalone default of 600 s', () => {
    const custom = synthesizeTemplate(testStackProps({ settings: { queuedTimeoutMs: 120_000 } }));
    expect(settingsOf(custom, functionIdsOf(custom).scheduler).executionTokenTtlSeconds).toBe(600);
  });

  it("refuses at synth a token lifetime of the user's too short for the deployment's queued timeout", () => {
    const attempt = () => synthesizeTemplate(testStackProps({ settings: { executionTokenTtlSeconds: 600 } }));
    expect(attempt).toThrow(UpdraftConfigurationError);
    expect(attempt).toThrow(/queuedTimeoutMs: must be below half of executionTokenTtlSeconds/);
  });

  it('gives the same settings to every function', () => {
    const expected = environmentOf(synthesized.template, ids.scheduler).UPDRAFT_QUEUED_TIMEOUT_MS;
    for (const [name, fn] of Object.entries(ids)) {
      expect(environmentOf(synthesized.template, fn).UPDRAFT_QUEUED_TIMEOUT_MS, name).toBe(expected);
    }
  });
});

describe('retention', () => {
  it('gives UPDRAFT_RETENTION_DAYS (90) to every function that writes the table, and not to the worker', () => {
    const synthesized = synthesizeTemplate(testStackProps());
    const ids = functionIdsOf(synthesized);
    for (const name of ['api', 'executionApi', 'scheduler', 'registerDags'] as const) {
      expect(environmentOf(synthesized.template, ids[name])[RETENTION_DAYS_ENV_VAR], name).toBe('90');
    }
    expect(environmentOf(synthesized.template, ids.worker)[RETENTION_DAYS_ENV_VAR]).toBeUndefined();
    expect(logBucketExpirations(synthesized)).toEqual([90]);
  });

  it('passes a retention of 30 days to the table writers and the log bucket alike', () => {
    const synthesized = synthesizeTemplate(testStackProps({ retention: Duration.days(30) }));
    const ids = functionIdsOf(synthesized);
    for (const name of ['api', 'executionApi', 'scheduler', 'registerDags'] as const) {
      expect(environmentOf(synthesized.template, ids[name])[RETENTION_DAYS_ENV_VAR], name).toBe('30');
    }
    expect(logBucketExpirations(synthesized)).toEqual([30]);
  });

  it('refuses a settings.retentionDays that disagrees with the retention prop, naming both', () => {
    const attempt = () => synthesizeTemplate(testStackProps({ settings: { retentionDays: 30 } }));
    expect(attempt).toThrow(UpdraftConfigurationError);
    expect(attempt).toThrow(
      /settings\.retentionDays \(UPDRAFT_RETENTION_DAYS\) is 30, but the retention prop is 90 days.*Duration\.days\(30\)/,
    );
  });

  it('refuses settings.retentionDays 0 (kept for good), which a deployment does not offer', () => {
    const attempt = () => synthesizeTemplate(testStackProps({ settings: { retentionDays: 0 } }));
    expect(attempt).toThrow(/is 0, but the retention prop is 90 days.*leave settings\.retentionDays out/);
  });

  it('accepts a settings.retentionDays equal to the retention prop', () => {
    const synthesized = synthesizeTemplate(
      testStackProps({ retention: Duration.days(30), settings: { retentionDays: 30 } }),
    );
    const ids = functionIdsOf(synthesized);
    expect(environmentOf(synthesized.template, ids.scheduler)[RETENTION_DAYS_ENV_VAR]).toBe('30');
    expect(environmentOf(synthesized.template, ids.worker)[RETENTION_DAYS_ENV_VAR]).toBeUndefined();
    expect(logBucketExpirations(synthesized)).toEqual([30]);
  });
});

describe('UpdraftLogBucket overrides', () => {
  it('leaves the log bucket unversioned', () => {
    const synthesized = synthesizeTemplate(testStackProps());
    expect(logBucketOf(synthesized)?.Properties?.VersioningConfiguration).toBeUndefined();
  });

  it('refuses a versioned log bucket, whose rewritten chunks would all be kept', () => {
    // A running try's open chunk is re-put, longer, under the same key (src/aws/ADAPTERS.md).
    const bucketProps = { versioned: true } as unknown as UpdraftLogBucketOverrides;
    const attempt = () => synthesizeTemplate(testStackProps({ logs: { bucketProps } }));
    expect(attempt).toThrow(LogBucketConfigurationError);
    expect(attempt).toThrow(
      /logs\.bucketProps\.versioned: the log bucket cannot be versioned.*rewritten in place/,
    );
  });
});

import { RemovalPolicy } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { TABLE_DEFINITION, TTL_ATTRIBUTE } from '#store/keys.ts';
import {
  removeOutdirs,
  type Synthesized,
  synthesize,
  synthesizeTemplate,
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

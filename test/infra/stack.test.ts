import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, RemovalPolicy, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { TABLE_DEFINITION } from '#store/keys.ts';
import { UpdraftStack, type UpdraftStackProps } from '../../lib/updraft-stack.ts';

const outdirs: string[] = [];

afterAll(() => {
  for (const outdir of outdirs.splice(0)) rmSync(outdir, { recursive: true, force: true });
});

// The parts of the cloud assembly's validation-report.json the checks below read.
const validationReportSchema = z.object({
  pluginReports: z.array(
    z.object({
      pluginName: z.string(),
      violations: z.array(
        z.object({
          ruleName: z.string(),
          severity: z.string(),
          violatingConstructs: z.array(z.object({ constructPath: z.string() })),
        }),
      ),
    }),
  ),
});

interface Finding {
  rule: string;
  severity: string;
  paths: string[];
}

const tableResourceSchema = z.object({
  Properties: z.record(z.string(), z.unknown()),
  DeletionPolicy: z.string().optional(),
  UpdateReplacePolicy: z.string().optional(),
});

interface TableResource {
  logicalId: string;
  resource: z.infer<typeof tableResourceSchema>;
}

function synthesize(props: UpdraftStackProps = {}) {
  const outdir = mkdtempSync(join(tmpdir(), 'updraft-infra-'));
  outdirs.push(outdir);
  const app = new App({
    outdir,
    // cdk-nag v3 runs as a policy-validation plugin; keeping synthesis going lets the test read
    // and name every finding instead of failing on a thrown report.
    context: { '@aws-cdk/core:failSynthOnValidationErrors': false },
    // CDK's own schema validation costs seconds per synthesis and is not what these tests check;
    // `cdk synth` still runs it.
    builtinCloudFormationValidation: false,
  });
  const stack = new UpdraftStack(app, 'Updraft', props);
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  const template = Template.fromStack(stack);
  const report = validationReportSchema.parse(
    JSON.parse(readFileSync(join(app.synth().directory, 'validation-report.json'), 'utf8')),
  );
  const findings: Finding[] = report.pluginReports
    .filter((plugin) => plugin.pluginName === 'AwsSolutions')
    .flatMap((plugin) =>
      plugin.violations.map((violation) => ({
        rule: violation.ruleName,
        severity: violation.severity,
        paths: violation.violatingConstructs.map((construct) => construct.constructPath),
      })),
    );
  return { stack, template, findings };
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
  let synthesized: ReturnType<typeof synthesize>;
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

  it('passes the AWS Solutions checks without errors', () => {
    const errors = synthesized.findings.filter((f) => f.severity === 'error' || f.severity === 'fatal');
    expect(errors).toEqual([]);
  });

  it('passes the AWS Solutions checks without warnings, which fail `cdk synth` under cdk-nag v3 too', () => {
    expect(synthesized.findings).toEqual([]);
  });
});

describe('UpdraftTable overrides', () => {
  it('lets the user choose the removal policy and deletion protection', () => {
    const { template } = synthesize({
      store: { tableProps: { removalPolicy: RemovalPolicy.DESTROY, deletionProtection: true } },
    });
    const table = onlyTable(template);
    expect(table.resource.DeletionPolicy).toBe('Delete');
    expect(table.resource.Properties.DeletionProtectionEnabled).toBe(true);
  });

  it('keeps the key design whatever else the user overrides', () => {
    const { template } = synthesize({ store: { tableProps: { tableName: 'updraft-store' } } });
    const table = onlyTable(template);
    expect(table.resource.Properties.TableName).toBe('updraft-store');
    expect(table.resource.Properties.KeySchema).toEqual(keySchema('pk', 'sk'));
    expect(table.resource.Properties.BillingMode).toBe('PAY_PER_REQUEST');
  });

  it('is caught by the AWS Solutions checks when point-in-time recovery is turned off', () => {
    const { findings } = synthesize({
      store: {
        tableProps: { pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: false } },
      },
    });
    expect(findings).toEqual([
      { rule: 'AwsSolutions-DDB3', severity: 'warning', paths: ['Updraft/Store/Table/Resource'] },
    ]);
  });
});

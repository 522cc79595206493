import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, CfnElement, Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { Code } from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import * as z from 'zod';
import type { FunctionCodeOverride } from '../../lib/functions.ts';
import { removeTempFiles } from '../../lib/temp-files.ts';
import { UpdraftStack, type UpdraftStackProps } from '../../lib/updraft-stack.ts';

const outdirs: string[] = [];

/** Removes the cloud assemblies written by `synthesize` (call from `afterAll`). */
export function removeOutdirs(): void {
  for (const outdir of outdirs.splice(0)) rmSync(outdir, { recursive: true, force: true });
  removeTempFiles();
}

/** Inline code for every function: synthesis without bundling the handlers. */
export const inlineFunctionCode: FunctionCodeOverride = (name) =>
  Code.fromInline(`export const handler = async () => { throw new Error('${name}: test stub'); };`);

/** A registry image: synthesis without bundling the triggerer entry. */
export const registryTriggererImage = ContainerImage.fromRegistry(
  'public.ecr.aws/docker/library/node:24-slim',
);

/** Test defaults: stub code, no image build, the project's example DAGs. */
export function testStackProps(props: UpdraftStackProps = {}): UpdraftStackProps {
  return {
    functionCode: inlineFunctionCode,
    dagsDir: 'dags',
    ...props,
    triggerer: { image: registryTriggererImage, ...props.triggerer },
  };
}

// The parts of the cloud assembly's validation-report.json the checks read.
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

export interface Finding {
  rule: string;
  severity: string;
  paths: string[];
}

export interface Synthesized {
  app: App;
  stack: UpdraftStack;
  template: Template;
  findings: Finding[];
}

function newApp(): { app: App; outdir: string } {
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
  return { app, outdir };
}

export type TemplateOnly = Omit<Synthesized, 'findings'>;

/** Synthesizes the stack without the AWS Solutions checks, for tests of the template alone. */
export function synthesizeTemplate(props: UpdraftStackProps = testStackProps()): TemplateOnly {
  const { app } = newApp();
  const stack = new UpdraftStack(app, 'Updraft', props);
  return { app, stack, template: Template.fromStack(stack) };
}

/**
 * Synthesizes the stack with the AWS Solutions checks and returns its template and the checks'
 * findings (those not acknowledged). `props` default to `testStackProps()`.
 */
export function synthesize(props: UpdraftStackProps = testStackProps()): Synthesized {
  const { app } = newApp();
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
  return { app, stack, template, findings };
}

/** Every acknowledgment recorded in the construct tree: where, which rule, and the reason given. */
export function acknowledgmentsOf(root: IConstruct): { path: string; id: string; reason: unknown }[] {
  const found: { path: string; id: string; reason: unknown }[] = [];
  for (const construct of root.node.findAll()) {
    for (const entry of construct.node.metadata) {
      if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      for (const [id, reason] of Object.entries(entry.data as Record<string, unknown>)) {
        found.push({ path: construct.node.path, id, reason });
      }
    }
  }
  return found;
}

/** The logical id of a construct's CloudFormation resource in its stack. */
export function logicalIdOf(construct: IConstruct): string {
  const resource = construct.node.defaultChild;
  if (!(resource instanceof CfnElement))
    throw new Error(`${construct.node.path} has no CloudFormation resource`);
  return Stack.of(construct).getLogicalId(resource);
}

export interface PolicyStatement {
  Effect: string;
  Action: string | string[];
  Resource?: unknown;
  Condition?: Record<string, unknown>;
}

/** A statement's actions as a list. */
export function actionsOf(statement: PolicyStatement): string[] {
  return Array.isArray(statement.Action) ? statement.Action : [statement.Action];
}

/** A statement's resources as a list. */
export function resourcesOf(statement: PolicyStatement): unknown[] {
  if (statement.Resource === undefined) return [];
  return Array.isArray(statement.Resource) ? statement.Resource : [statement.Resource];
}

const policyDocumentSchema = z.object({ Statement: z.array(z.custom<PolicyStatement>()) });
const refSchema = z.object({ Ref: z.string() });

/**
 * Every statement that applies to a role: the standalone policies attached to it, its inline
 * policies and the managed policies it lists (returned by ARN, since their statements are AWS's).
 */
export function policiesOfRole(
  template: Template,
  roleLogicalId: string,
): { statements: PolicyStatement[]; managedPolicyArns: unknown[] } {
  const statements: PolicyStatement[] = [];
  for (const type of ['AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy']) {
    for (const policy of Object.values(template.findResources(type))) {
      const properties = policy.Properties as { Roles?: unknown[]; PolicyDocument: unknown };
      const roles = (properties.Roles ?? []).map((role) => refSchema.safeParse(role).data?.Ref);
      if (!roles.includes(roleLogicalId)) continue;
      statements.push(...policyDocumentSchema.parse(properties.PolicyDocument).Statement);
    }
  }
  const role = template.findResources('AWS::IAM::Role')[roleLogicalId];
  if (!role) throw new Error(`No role ${roleLogicalId} in the template`);
  const properties = role.Properties as {
    Policies?: { PolicyDocument: unknown }[];
    ManagedPolicyArns?: unknown[];
  };
  for (const inline of properties.Policies ?? []) {
    statements.push(...policyDocumentSchema.parse(inline.PolicyDocument).Statement);
  }
  return { statements, managedPolicyArns: properties.ManagedPolicyArns ?? [] };
}

/** The logical id of the role a Lambda function runs as. */
export function roleOfFunction(template: Template, functionLogicalId: string): string {
  const fn = template.findResources('AWS::Lambda::Function')[functionLogicalId];
  const role = z
    .object({ 'Fn::GetAtt': z.tuple([z.string(), z.literal('Arn')]) })
    .parse(fn?.Properties?.Role);
  return role['Fn::GetAtt'][0];
}

/** The environment variables of a Lambda function. */
export function environmentOf(template: Template, functionLogicalId: string): Record<string, unknown> {
  const fn = template.findResources('AWS::Lambda::Function')[functionLogicalId];
  return (fn?.Properties?.Environment?.Variables ?? {}) as Record<string, unknown>;
}

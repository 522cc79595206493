import { afterAll, describe, expect, it } from 'vitest';
import {
  actionsOf,
  logicalIdOf,
  policiesOfRole,
  removeOutdirs,
  resourcesOf,
  roleOfFunction,
  synthesizeTemplate,
  testStackProps,
} from './helpers.ts';

/** The built-in notifiers' grants: on the worker function and the triggerer only, on exactly the named topics and identities. */
describe('notifier grants', () => {
  afterAll(removeOutdirs);

  const topic = 'arn:aws:sns:eu-west-1:123456789012:alerts.fifo';
  const identity = 'arn:aws:ses:eu-west-1:123456789012:identity/example.com';

  const notifierStatements = (synthesized: ReturnType<typeof synthesizeTemplate>, fn: string) =>
    policiesOfRole(synthesized.template, roleOfFunction(synthesized.template, fn)).statements.filter(
      (statement) => actionsOf(statement).some((action) => /^(sns|ses):/.test(action)),
    );

  it('gives the worker and the triggerer sns:Publish and ses:SendEmail on the configured ARNs and nothing else', () => {
    const synthesized = synthesizeTemplate(
      testStackProps({ notifiers: { snsTopicArns: [topic], sesIdentityArns: [identity] } }),
    );
    const { updraft } = synthesized.stack;
    const worker = notifierStatements(synthesized, logicalIdOf(updraft.workers.function));
    expect(worker.map((statement) => [actionsOf(statement), resourcesOf(statement)])).toEqual([
      [['sns:Publish'], [topic]],
      [['ses:SendEmail'], [identity]],
    ]);
    // Async callbacks run on the triggerer: its task role gets the same, and nothing more.
    const triggererRole = logicalIdOf(updraft.triggerer.taskDefinition.taskRole);
    const triggerer = policiesOfRole(synthesized.template, triggererRole).statements.filter((statement) =>
      actionsOf(statement).some((action) => /^(sns|ses):/.test(action)),
    );
    expect(triggerer.map((statement) => [actionsOf(statement), resourcesOf(statement)])).toEqual([
      [['sns:Publish'], [topic]],
      [['ses:SendEmail'], [identity]],
    ]);
    for (const other of [updraft.api.function, updraft.executionApi.function, updraft.scheduler.function]) {
      expect(notifierStatements(synthesized, logicalIdOf(other))).toEqual([]);
    }
  });

  it('grants nothing of the kind without them', () => {
    const synthesized = synthesizeTemplate(testStackProps());
    expect(notifierStatements(synthesized, logicalIdOf(synthesized.stack.updraft.workers.function))).toEqual(
      [],
    );
  });
});

/** The DAG code's own environment: where callbacks run (the worker function and the triggerer container). */
describe('dagEnvironment', () => {
  afterAll(removeOutdirs);

  it('sets the variables on the worker function and the triggerer container, with the settings on both', () => {
    const synthesized = synthesizeTemplate(
      testStackProps({
        dagEnvironment: { ALERTS_URL: 'https://alerts.example.com/hook' },
        settings: { triggererCallbackCapacity: 50 },
      }),
    );
    const { template, stack } = synthesized;
    const worker =
      template.findResources('AWS::Lambda::Function')[logicalIdOf(stack.updraft.workers.function)];
    expect(worker?.Properties?.Environment?.Variables).toMatchObject({
      ALERTS_URL: 'https://alerts.example.com/hook',
      UPDRAFT_TRIGGERER_CALLBACK_CAPACITY: '50',
    });
    const [taskDefinition] = Object.values(template.findResources('AWS::ECS::TaskDefinition'));
    const environment = Object.fromEntries(
      (
        (taskDefinition?.Properties?.ContainerDefinitions?.[0]?.Environment ?? []) as {
          Name: string;
          Value: unknown;
        }[]
      ).map((variable) => [variable.Name, variable.Value]),
    );
    expect(environment).toMatchObject({
      ALERTS_URL: 'https://alerts.example.com/hook',
      UPDRAFT_TRIGGERER_CALLBACK_CAPACITY: '50',
    });
    for (const other of [stack.updraft.api.function, stack.updraft.scheduler.function]) {
      const fn = template.findResources('AWS::Lambda::Function')[logicalIdOf(other)];
      expect(fn?.Properties?.Environment?.Variables?.ALERTS_URL).toBeUndefined();
    }
  });

  it('refuses settings and runtime variables in it, naming them', () => {
    expect(() =>
      synthesizeTemplate(testStackProps({ dagEnvironment: { UPDRAFT_WORKER_SLOTS: '4' } })),
    ).toThrow("dagEnvironment: UPDRAFT_WORKER_SLOTS is refused (UPDRAFT_ settings go in 'settings'");
    expect(() => synthesizeTemplate(testStackProps({ dagEnvironment: { AWS_REGION: 'x' } }))).toThrow(
      'dagEnvironment: AWS_REGION is refused',
    );
    expect(() => synthesizeTemplate(testStackProps({ dagEnvironment: { 'A-B': 'x' } }))).toThrow(
      'dagEnvironment: "A-B" is not a variable name',
    );
  });
});

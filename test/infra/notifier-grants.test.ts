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

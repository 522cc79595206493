import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serializedDagsHash } from '../../lib/dags.ts';
import {
  environmentOf,
  logicalIdOf,
  removeOutdirs,
  synthesizeTemplate,
  type TemplateOnly,
  testStackProps,
} from './helpers.ts';

afterAll(removeOutdirs);

describe('UpdraftDagRegistration', () => {
  let synthesized: TemplateOnly;

  beforeAll(() => {
    synthesized = synthesizeTemplate(testStackProps());
  });

  const registrationOf = (s: TemplateOnly) => {
    const resources = Object.values(s.template.findResources('Custom::UpdraftDagRegistration'));
    expect(resources).toHaveLength(1);
    return resources[0]!.Properties as Record<string, unknown>;
  };

  it('registers the DAGs of the DAGs folder at deploy through the provider framework', () => {
    const properties = registrationOf(synthesized);
    expect(properties.dagIds).toEqual([
      'example_branching',
      'example_callbacks',
      'example_deferrable',
      'example_etl',
      'example_schedule',
    ]);
    expect(properties.ServiceToken).toEqual({
      'Fn::GetAtt': [expect.stringContaining('DagRegistrationProviderframeworkonEvent'), 'Arn'],
    });
  });

  it('carries the serialized DAGs inline, so a rollback registers the DAGs it rolls back to', () => {
    const properties = registrationOf(synthesized);
    expect(JSON.parse(properties.SerializedDags as string)).toEqual(synthesized.stack.updraft.serializedDags);
  });

  it('carries a hash of the serialized DAGs, so every DAG change runs the registration again', () => {
    expect(registrationOf(synthesized).dagsHash).toBe(
      serializedDagsHash(synthesized.stack.updraft.serializedDags),
    );
    const other = synthesizeTemplate(testStackProps({ dagsDir: 'test/infra/fixtures/dags-timeout-880' }));
    expect(registrationOf(other).dagsHash).not.toBe(registrationOf(synthesized).dagsHash);
    expect(registrationOf(other).dagIds).toEqual(['long_running']);
  });

  it('gives the registration function the table', () => {
    const fn = logicalIdOf(synthesized.stack.updraft.dagRegistration.function);
    expect(environmentOf(synthesized.template, fn).UPDRAFT_TABLE_NAME).toEqual({
      Ref: logicalIdOf(synthesized.stack.updraft.store.table),
    });
  });
});

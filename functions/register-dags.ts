import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import {
  answersCloudFormation,
  type CustomResourceOutcome,
  responseBody,
  sendResponse,
} from '#aws/handler-custom-resource.ts';
import { type HandlerDeps, LazyDeps } from '#aws/handler-deps.ts';
import {
  createObservability,
  EmfMetricsRegistry,
  engineLoggerOf,
  type Observability,
  withObservability,
} from '#aws/handler-observability.ts';
import {
  parseSerializedDags,
  readSerializedDags,
  SERIALIZED_DAGS_FILE,
} from '#aws/lambda-serialized-dags.ts';
import { registerDags } from '#engine/dag-registry.ts';

/** One registration per stack: updates keep it, so CloudFormation never replaces (deletes) it. */
export const REGISTRATION_ID = 'updraft-dag-registration';

/** What the provider framework reads when it is in between (CloudFormation ignores it). */
export interface RegistrationResult {
  PhysicalResourceId: string;
  Data?: Record<string, string | number>;
}

/**
 * The deploy-time DAG registration, a CloudFormation custom resource: on Create and Update it
 * writes the serialized DAGs of this deploy to the table exactly as standalone's DAG processor
 * does (`registerDags`: new versions, records, and DAGs no longer deployed marked inactive), so
 * the scheduler and the API find them without ever loading DAG code. Delete does nothing: the
 * table's own removal policy decides what happens to the DAGs. The DAGs come from the resource's
 * `SerializedDags` property (JSON) when it has one, which a rollback sends back as it was, else
 * from `serialized-dags.json` bundled beside this function. Uses the table only.
 */
export function makeHandler(given: Partial<HandlerDeps & Observability> = {}) {
  const observability = createObservability('updraft-register-dags', given);
  const deps = new LazyDeps(
    {
      serializedDags: () => readSerializedDags(new URL(`./${SERIALIZED_DAGS_FILE}`, import.meta.url)),
      ...given,
    },
    observability,
    { store: () => import('#aws/handler-defaults-table.ts') },
  );
  const metrics = new EmfMetricsRegistry(observability.metrics);
  const log = engineLoggerOf(observability.logger, { component: 'dag-registration' });

  async function apply(event: CloudFormationCustomResourceEvent): Promise<CustomResourceOutcome> {
    metrics.increment(`register_dags.${event.RequestType.toLowerCase()}`);
    if (event.RequestType === 'Delete') return { physicalResourceId: event.PhysicalResourceId };
    const inline: unknown = event.ResourceProperties.SerializedDags;
    const parsed =
      inline === undefined
        ? await (await deps.get('serializedDags'))()
        : parseSerializedDags(inline, "the custom resource's SerializedDags property");
    const [store, settings, now] = await Promise.all([
      deps.get('store'),
      deps.get('settings'),
      deps.get('now'),
    ]);
    await registerDags({ store, log, now, pausedAtCreation: settings.dagsArePausedAtCreation }, parsed);
    metrics.gauge('register_dags.dags', parsed.dags.length);
    return { physicalResourceId: REGISTRATION_ID, data: { DagCount: parsed.dags.length } };
  }

  return withObservability(async (event: CloudFormationCustomResourceEvent): Promise<RegistrationResult> => {
    const physicalResourceId = event.RequestType === 'Create' ? REGISTRATION_ID : event.PhysicalResourceId;
    let outcome: CustomResourceOutcome;
    try {
      outcome = await apply(event);
    } catch (error) {
      log.error('Registering the DAGs failed', { requestType: event.RequestType, error });
      // Under the provider framework, throwing is how the failure reaches CloudFormation.
      if (!answersCloudFormation(event)) throw error;
      const reason = `Registering the DAGs failed: ${error instanceof Error ? error.message : String(error)}`;
      await sendResponse(
        event.ResponseURL,
        responseBody(event, { ok: false, reason, physicalResourceId }),
        await deps.get('responseFetch'),
      );
      return { PhysicalResourceId: physicalResourceId };
    }
    if (answersCloudFormation(event)) {
      await sendResponse(
        event.ResponseURL,
        responseBody(event, { ok: true, value: outcome }),
        await deps.get('responseFetch'),
      );
    }
    return {
      PhysicalResourceId: outcome.physicalResourceId,
      ...(outcome.data ? { Data: outcome.data } : {}),
    };
  }, observability);
}

export const handler = makeHandler();

import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { HandlerError } from './handler-errors.ts';

/**
 * The CloudFormation side of a Lambda-backed custom resource. Invoked by CloudFormation itself
 * (`CustomResource` with the function as service token), the function must PUT its outcome to the
 * event's pre-signed `ResponseURL`, whatever happened, or the stack waits for an hour. Invoked
 * through the CDK provider framework, the URL is a placeholder and the framework reports what the
 * handler returns or throws; both work, so the construct may use either.
 */

export interface CustomResourceOutcome {
  /** Stays the same across updates, so CloudFormation never replaces (and deletes) the resource. */
  physicalResourceId: string;
  data?: Record<string, string | number>;
}

/** Whether this invocation must answer CloudFormation itself (no provider framework in between). */
export function answersCloudFormation(event: CloudFormationCustomResourceEvent): boolean {
  return /^https:\/\//.test(event.ResponseURL ?? '');
}

/** The body CloudFormation reads: SUCCESS with data, or FAILED with a reason (kept short). */
export function responseBody(
  event: CloudFormationCustomResourceEvent,
  outcome:
    | { ok: true; value: CustomResourceOutcome }
    | { ok: false; reason: string; physicalResourceId: string },
): string {
  const common = {
    StackId: event.StackId,
    RequestId: event.RequestId,
    LogicalResourceId: event.LogicalResourceId,
  };
  if (outcome.ok) {
    return JSON.stringify({
      ...common,
      Status: 'SUCCESS',
      PhysicalResourceId: outcome.value.physicalResourceId,
      ...(outcome.value.data ? { Data: outcome.value.data } : {}),
    });
  }
  return JSON.stringify({
    ...common,
    Status: 'FAILED',
    // CloudFormation shows the reason in the stack events; the whole response must stay under 4 KB.
    Reason: outcome.reason.slice(0, 1_000),
    PhysicalResourceId: outcome.physicalResourceId,
  });
}

/** PUTs the response to the pre-signed URL (its signature covers no content type: none is sent). */
export async function sendResponse(url: string, body: string, transport: typeof fetch): Promise<void> {
  const response = await transport(url, {
    method: 'PUT',
    headers: { 'content-type': '' },
    body,
  });
  if (!response.ok) {
    throw new HandlerError(
      `CloudFormation's response URL answered ${response.status}: ${await response.text()}`,
    );
  }
}

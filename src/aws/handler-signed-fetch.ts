import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { RequestSigningError } from './handler-errors.ts';

/**
 * Calls to the Execution API's Lambda function URL (auth type AWS_IAM) signed with SigV4 for the
 * service `lambda`, as a `fetch` the worker's HTTP client takes (its `fetch` option is the hook:
 * nothing in `src/http` changes). SigV4 needs the `Authorization` header, where the client puts
 * the task token, so the token moves to `TASK_TOKEN_HEADER` (signed like the other headers, so
 * it cannot be swapped in transit) and the Execution API function moves it back before routing.
 */

/** Carries the task token past the function URL's IAM auth; never logged. */
export const TASK_TOKEN_HEADER = 'x-updraft-task-token';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

export interface SignedFetchOptions {
  /** The function URL's region (`AWS_REGION` in Lambda). */
  region: string;
  /** The role's credentials (on Lambda, read from the environment: see `roleCredentials`). */
  credentials: () => Promise<AwsCredentials>;
  /** The transport underneath (the global `fetch`); a test passes its own. */
  fetch?: typeof fetch;
  /** The signing service; `lambda` for function URLs. */
  service?: string;
}

export function createSignedFetch(options: SignedFetchOptions): typeof fetch {
  if (!options.region) {
    throw new RequestSigningError('No AWS region to sign Execution API requests for (AWS_REGION is not set)');
  }
  const signer = new SignatureV4({
    service: options.service ?? 'lambda',
    region: options.region,
    credentials: options.credentials,
    sha256: Sha256,
  });
  const transport = options.fetch ?? fetch;
  const signedFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => {
      headers[name] = value;
    });
    const bearer = /^bearer +(\S+) *$/i.exec(headers.authorization ?? '');
    delete headers.authorization;
    if (bearer?.[1]) headers[TASK_TOKEN_HEADER] = bearer[1];
    headers.host = url.host;
    const body = request.body === null ? undefined : await request.text();
    const query: Record<string, string | string[]> = {};
    for (const name of new Set(url.searchParams.keys())) {
      const values = url.searchParams.getAll(name);
      query[name] = values.length === 1 ? (values[0] as string) : values;
    }
    const signed = await signer.sign({
      method: request.method,
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      // As it is on the wire (percent-encoded once); the signer encodes it again, as SigV4 wants.
      path: url.pathname,
      query,
      headers,
      ...(body === undefined ? {} : { body }),
    });
    const sent = new Headers(signed.headers as Record<string, string>);
    // `fetch` sets Host from the URL; undici refuses it as a header of its own.
    sent.delete('host');
    return transport(url, {
      method: request.method,
      headers: sent,
      ...(body === undefined ? {} : { body }),
      signal: request.signal,
    });
  };
  return signedFetch as typeof fetch;
}

/**
 * The Execution API function's side: the task token back into `Authorization` (replacing the
 * SigV4 signature, which the function URL has already checked), as the router expects it.
 * Header names are lower-case in function URL events.
 */
export function restoreTaskToken(
  headers: Record<string, string | undefined>,
): Record<string, string | undefined> {
  const { [TASK_TOKEN_HEADER]: token, authorization, ...rest } = headers;
  if (token) return { ...rest, authorization: `Bearer ${token}` };
  // A signature without a token: the router must answer 401, not read the signature as a token.
  if (authorization === undefined || authorization.startsWith('AWS4-')) return rest;
  return { ...rest, authorization };
}

import type { Duration } from 'aws-cdk-lib';
import type { IGrantable, Role } from 'aws-cdk-lib/aws-iam';
import { type FunctionUrl, FunctionUrlAuthType, InvokeMode } from 'aws-cdk-lib/aws-lambda';
import type { NodejsFunction, NodejsFunctionProps } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { AWS_ENV } from '#aws/environment.ts';
import { createUpdraftFunction, type FunctionDefaults } from './functions.ts';
import { bindSecretReader, createGeneratedSecret } from './secrets.ts';

export interface UpdraftExecutionApiProps {
  readonly defaults: FunctionDefaults;
  readonly timeout: Duration;
  readonly memorySize: number;
  readonly functionProps?: Partial<NodejsFunctionProps>;
  readonly environment?: Record<string, string>;
}

/** Something that can be told the Execution API's URL: a function or a container. */
export interface ExecutionApiClient {
  readonly grantee: IGrantable;
  addEnvironment(name: string, value: string): unknown;
}

/**
 * The Execution API for workers and the triggerer: its Lambda function behind a function URL
 * with IAM auth (callers sign with SigV4; no API Gateway request charge), and the keyring secret
 * that signs and checks task-scoped tokens. Clients are bound with `bindClient`, which grants
 * invoking this URL and nothing else.
 */
export class UpdraftExecutionApi extends Construct {
  readonly function: NodejsFunction;
  readonly url: FunctionUrl;
  /** `kid=secret` lines, the first signing; generated as one bare secret (key id `default`). */
  readonly keyring: Secret;

  constructor(scope: Construct, id: string, props: UpdraftExecutionApiProps) {
    super(scope, id);
    this.function = createUpdraftFunction(this, 'Function', props.defaults, {
      name: 'executionApi',
      description:
        'Updraft Execution API: task starts, heartbeats, reports and logs from workers and the triggerer',
      timeout: props.timeout,
      memorySize: props.memorySize,
      ...(props.environment ? { environment: props.environment } : {}),
      ...(props.functionProps ? { overrides: props.functionProps } : {}),
    });
    this.url = this.function.addFunctionUrl({
      authType: FunctionUrlAuthType.AWS_IAM,
      invokeMode: InvokeMode.BUFFERED,
    });
    this.keyring = createGeneratedSecret(this, 'SigningKeyring', {
      description:
        'Updraft execution-token keyring: kid=secret lines, the first signs and every one verifies (a bare secret is the key "default")',
      rotationReason:
        'Rotated by key id, by hand: put the new key first and keep the old one until tokens signed with it have expired (the token TTL). A rotation Lambda could not know when that is.',
    });
    this.bindKeyringReader(this.function);
  }

  /** Lets a function sign or check task tokens (the Execution API itself, and the scheduler that queues workloads). */
  bindKeyringReader(fn: NodejsFunction): void {
    bindSecretReader(this.keyring, fn, AWS_ENV.signingKeySecretArn);
  }

  /**
   * Lets a worker or the triggerer call the Execution API: `lambda:InvokeFunctionUrl` on this
   * function (and `lambda:InvokeFunction` only when invoked through its URL, which AWS requires
   * alongside it), and the URL.
   */
  bindClient(client: ExecutionApiClient): void {
    this.function.grantInvokeUrl(client.grantee);
    client.addEnvironment(AWS_ENV.executionApiUrl, this.url.url);
  }

  /**
   * Binds the triggerer's task role as a client whose signed job registration is its credential:
   * the function gets the role's id and issues a triggerer token to a registration signed by it,
   * so the triggerer holds no secret.
   */
  bindTriggerer(client: ExecutionApiClient & { grantee: Role }): void {
    this.bindClient(client);
    this.function.addEnvironment(AWS_ENV.triggererRoleId, client.grantee.roleId);
  }
}

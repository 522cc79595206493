import { type Duration, RemovalPolicy } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import {
  HttpApi,
  HttpStage,
  LogGroupLogDestination,
  type ThrottleSettings,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import type { NodejsFunction, NodejsFunctionProps } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { AWS_ENV } from '#aws/environment.ts';
import { createUpdraftFunction, type FunctionDefaults } from './functions.ts';
import { acknowledge } from './nag.ts';
import { bindSecretReader, createGeneratedSecret } from './secrets.ts';

/** One JSON line per request, with the HTTP API's own context variables (no body, no token). */
const HTTP_API_ACCESS_LOG_FORMAT = AccessLogFormat.custom(
  JSON.stringify({
    requestId: '$context.requestId',
    ip: '$context.identity.sourceIp',
    requestTime: '$context.requestTime',
    method: '$context.httpMethod',
    path: '$context.path',
    routeKey: '$context.routeKey',
    status: '$context.status',
    protocol: '$context.protocol',
    responseLength: '$context.responseLength',
    integrationLatency: '$context.integrationLatency',
    integrationError: '$context.integrationErrorMessage',
  }),
);

export interface UpdraftPublicApiProps {
  readonly defaults: FunctionDefaults;
  readonly timeout: Duration;
  readonly memorySize: number;
  readonly functionProps?: Partial<NodejsFunctionProps>;
  readonly environment?: Record<string, string>;
  /** Stage-wide rate limit (default: 50 requests per second, bursts of 100). */
  readonly throttle?: ThrottleSettings;
  readonly accessLogRetention: RetentionDays;
}

/**
 * The public REST API (`/api/v2`, what the CLI and the UI call): its Lambda function behind an API
 * Gateway HTTP API, every route forwarded to it. The function authenticates each request against
 * the bearer token kept in Secrets Manager, as standalone does against its token file.
 */
export class UpdraftPublicApi extends Construct {
  readonly function: NodejsFunction;
  readonly httpApi: HttpApi;
  readonly stage: HttpStage;
  /** The API's bearer token(s), generated at deploy. */
  readonly tokenSecret: Secret;

  constructor(scope: Construct, id: string, props: UpdraftPublicApiProps) {
    super(scope, id);
    this.function = createUpdraftFunction(this, 'Function', props.defaults, {
      name: 'api',
      description: 'Updraft public REST API (/api/v2), behind API Gateway',
      timeout: props.timeout,
      memorySize: props.memorySize,
      ...(props.environment ? { environment: props.environment } : {}),
      ...(props.functionProps ? { overrides: props.functionProps } : {}),
    });
    this.tokenSecret = createGeneratedSecret(this, 'Token', {
      description: 'Updraft public API bearer token (UPDRAFT_API_TOKEN of the CLI)',
      rotationReason:
        'The token is shared with CLI users, who must receive the new value; it is rotated by hand with put-secret-value, which the API picks up on its next cold start or cache expiry.',
    });
    bindSecretReader(this.tokenSecret, this.function, AWS_ENV.apiTokenSecretArn);

    this.httpApi = new HttpApi(this, 'HttpApi', {
      description: 'Updraft public REST API',
      createDefaultStage: false,
      defaultIntegration: new HttpLambdaIntegration('Integration', this.function),
    });
    const accessLogs = new LogGroup(this, 'AccessLogs', {
      retention: props.accessLogRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stage = new HttpStage(this, 'DefaultStage', {
      httpApi: this.httpApi,
      stageName: '$default',
      autoDeploy: true,
      throttle: props.throttle ?? { rateLimit: 50, burstLimit: 100 },
      accessLogSettings: {
        destination: new LogGroupLogDestination(accessLogs),
        format: HTTP_API_ACCESS_LOG_FORMAT,
      },
    });
    for (const route of this.httpApi.node.findAll()) {
      if (route.node.id !== 'DefaultRoute') continue;
      acknowledge(route, [
        {
          id: 'AwsSolutions-APIG4',
          reason:
            'The API function authenticates every request itself: a bearer token from Secrets Manager, compared in constant time; only health and the OpenAPI document are public, as in Airflow.',
        },
      ]);
    }
  }

  /** The API's base URL (the CLI's UPDRAFT_API_URL). */
  get url(): string {
    return this.stage.url;
  }
}

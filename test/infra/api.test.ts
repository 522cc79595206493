import { Match } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  environmentOf,
  logicalIdOf,
  removeOutdirs,
  synthesizeTemplate,
  type TemplateOnly,
  testStackProps,
} from './helpers.ts';

afterAll(removeOutdirs);

describe('public API and Execution API', () => {
  let synthesized: TemplateOnly;
  let apiFunction: string;
  let executionFunction: string;

  beforeAll(() => {
    synthesized = synthesizeTemplate(testStackProps());
    apiFunction = logicalIdOf(synthesized.stack.updraft.api.function);
    executionFunction = logicalIdOf(synthesized.stack.updraft.executionApi.function);
  });

  it('serves the public API from one API Gateway HTTP API', () => {
    synthesized.template.resourceCountIs('AWS::ApiGatewayV2::Api', 1);
    synthesized.template.hasResourceProperties('AWS::ApiGatewayV2::Api', { ProtocolType: 'HTTP' });
  });

  it('forwards every route to the public API function with the 2.0 payload', () => {
    synthesized.template.resourceCountIs('AWS::ApiGatewayV2::Route', 1);
    synthesized.template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: '$default' });
    synthesized.template.resourceCountIs('AWS::ApiGatewayV2::Integration', 1);
    synthesized.template.hasResourceProperties('AWS::ApiGatewayV2::Integration', {
      IntegrationType: 'AWS_PROXY',
      IntegrationUri: { 'Fn::GetAtt': [apiFunction, 'Arn'] },
      PayloadFormatVersion: '2.0',
    });
  });

  it('deploys the default stage with access logs and a rate limit', () => {
    synthesized.template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      AccessLogSettings: {
        DestinationArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('ApiAccessLogs'), 'Arn'] },
        Format: Match.serializedJson(
          Match.objectLike({ requestId: '$context.requestId', routeKey: '$context.routeKey' }),
        ),
      },
      DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
    });
  });

  it('keeps the bearer token in a generated secret and tells the API function where it is', () => {
    const token = logicalIdOf(synthesized.stack.updraft.api.tokenSecret);
    const secret = synthesized.template.findResources('AWS::SecretsManager::Secret')[token];
    expect(secret?.Properties.GenerateSecretString).toEqual({
      PasswordLength: 64,
      ExcludePunctuation: true,
      IncludeSpace: false,
    });
    expect(secret?.Properties.SecretString).toBeUndefined();
    expect(environmentOf(synthesized.template, apiFunction).UPDRAFT_API_TOKEN_SECRET_ARN).toEqual({
      Ref: token,
    });
  });

  it('generates the signing keyring as one bare secret (the key id "default")', () => {
    const keyring = logicalIdOf(synthesized.stack.updraft.executionApi.keyring);
    const secret = synthesized.template.findResources('AWS::SecretsManager::Secret')[keyring];
    expect(secret?.Properties.GenerateSecretString).toEqual({
      PasswordLength: 64,
      ExcludePunctuation: true,
      IncludeSpace: false,
    });
  });

  it('serves the Execution API from a function URL with IAM auth, not from API Gateway', () => {
    synthesized.template.resourceCountIs('AWS::Lambda::Url', 1);
    synthesized.template.hasResourceProperties('AWS::Lambda::Url', {
      AuthType: 'AWS_IAM',
      InvokeMode: 'BUFFERED',
      TargetFunctionArn: { 'Fn::GetAtt': [executionFunction, 'Arn'] },
    });
    const permissions = Object.values(synthesized.template.findResources('AWS::Lambda::Permission'));
    const onExecutionApi = permissions.filter(
      (permission) =>
        JSON.stringify(permission.Properties.FunctionName) ===
        JSON.stringify({ 'Fn::GetAtt': [executionFunction, 'Arn'] }),
    );
    // No resource policy opens it: only identities granted lambda:InvokeFunctionUrl can call it.
    expect(onExecutionApi).toEqual([]);
  });

  it('tells the worker the Execution API URL', () => {
    const url = logicalIdOf(synthesized.stack.updraft.executionApi.url);
    const worker = logicalIdOf(synthesized.stack.updraft.workers.function);
    expect(environmentOf(synthesized.template, worker).UPDRAFT_EXECUTION_API_URL).toEqual({
      'Fn::GetAtt': [url, 'FunctionUrl'],
    });
  });

  it('outputs the API URL and the secret holding its token', () => {
    const { template } = synthesized;
    template.hasOutput('ApiUrl', {});
    template.hasOutput('ApiTokenSecretArn', {
      Value: { Ref: logicalIdOf(synthesized.stack.updraft.api.tokenSecret) },
    });
  });
});

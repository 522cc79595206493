import { RemovalPolicy } from 'aws-cdk-lib';
import type { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { acknowledge } from './nag.ts';

/**
 * A secret generated at deploy: 64 letters and digits, never in the template. A bare value is
 * what both readers take as their first key: the API token (the whole value) and the execution
 * keyring (a single bare secret is the key id `default`).
 */
export function createGeneratedSecret(
  scope: Construct,
  id: string,
  options: { description: string; rotationReason: string },
): Secret {
  const secret = new Secret(scope, id, {
    description: options.description,
    generateSecretString: { passwordLength: 64, excludePunctuation: true, includeSpace: false },
    removalPolicy: RemovalPolicy.DESTROY,
  });
  acknowledge(secret, [{ id: 'AwsSolutions-SMG4', reason: options.rotationReason }]);
  return secret;
}

/** Lets a function read the secret, and tells it which one, under `envVar`. */
export function bindSecretReader(secret: Secret, fn: LambdaFunction, envVar: string): void {
  fn.addEnvironment(envVar, secret.secretArn);
  secret.grantRead(fn);
}

import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CustomResource, Duration, RemovalPolicy } from 'aws-cdk-lib';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Provider } from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { type SerializedDagsFolder, serializedDagsHash } from './dags.ts';
import { createUpdraftFunction, type FunctionDefaults, shellQuote } from './functions.ts';
import { acknowledge, arnReferenceOf } from './nag.ts';
import type { UpdraftTable } from './store-table.ts';
import { removeOnExit } from './temp-files.ts';

/** The file in the registration function's bundle holding what it registers (`{ dags, errors }`). */
export const SERIALIZED_DAGS_FILE = 'serialized-dags.json';
/**
 * Serialized DAGs up to this size also travel in the resource's `SerializedDags` property, so a
 * rollback registers the DAGs it rolls back to (CloudFormation sends the old properties while the
 * function may still hold the new bundle). Larger ones come from the bundle only, keeping the
 * template well under CloudFormation's 1 MB.
 */
export const INLINE_SERIALIZED_DAGS_MAX_BYTES = 200 * 1024;

export interface UpdraftDagRegistrationProps {
  readonly defaults: FunctionDefaults;
  readonly store: UpdraftTable;
  readonly serialized: SerializedDagsFolder;
  readonly logRetention: RetentionDays;
  readonly environment?: Record<string, string>;
}

/**
 * Writes the serialized DAGs to the table at deploy: a custom resource (the CDK provider
 * framework) calling the registration function, whose bundle carries the DAGs serialized at
 * synth. Its `dagsHash` property changes with any change to the DAGs or their code, so every such
 * deploy registers again; the scheduler never loads DAG code.
 */
export class UpdraftDagRegistration extends Construct {
  readonly function: NodejsFunction;
  readonly resource: CustomResource;
  readonly dagsHash: string;

  constructor(scope: Construct, id: string, props: UpdraftDagRegistrationProps) {
    super(scope, id);
    this.dagsHash = serializedDagsHash(props.serialized);
    const serializedFile = join(tmpdir(), `updraft-serialized-dags-${this.dagsHash}.json`);
    const serializedJson = JSON.stringify(props.serialized);
    writeFileSync(serializedFile, serializedJson);
    removeOnExit(serializedFile);
    const node = shellQuote(process.execPath);
    this.function = createUpdraftFunction(this, 'Function', props.defaults, {
      name: 'registerDags',
      description: 'Updraft deploy-time DAG registration: writes the serialized DAGs to the table',
      timeout: Duration.minutes(5),
      memorySize: 512,
      ...(props.environment ? { environment: props.environment } : {}),
      afterBundling: (outputDir) => [
        `${node} -e ${shellQuote('require("node:fs").copyFileSync(process.argv[1], process.argv[2])')} ${shellQuote(serializedFile)} ${shellQuote(join(outputDir, SERIALIZED_DAGS_FILE))}`,
      ],
    });
    props.store.bindReadWrite(this.function);
    const provider = new Provider(this, 'Provider', {
      onEventHandler: this.function,
      logGroup: new LogGroup(this, 'ProviderLogs', {
        retention: props.logRetention,
        removalPolicy: RemovalPolicy.DESTROY,
      }),
    });
    acknowledge(provider, [
      {
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        reason:
          "The CDK provider framework's function uses Lambda's managed basic execution policy, which only lets it write its own logs.",
      },
      {
        id: `AwsSolutions-IAM5[Resource::${arnReferenceOf(this.function)}:*]`,
        reason:
          'The CDK provider framework may invoke any version of the registration function (its grant covers the function and its qualifiers), and no other function.',
      },
    ]);
    this.resource = new CustomResource(this, 'Registration', {
      serviceToken: provider.serviceToken,
      resourceType: 'Custom::UpdraftDagRegistration',
      properties: {
        dagsHash: this.dagsHash,
        dagIds: props.serialized.dags.map(({ dag }) => dag.dagId),
        ...(Buffer.byteLength(serializedJson) <= INLINE_SERIALIZED_DAGS_MAX_BYTES
          ? { SerializedDags: serializedJson }
          : {}),
      },
    });
  }
}

import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DynamoStore } from '#store/dynamodb.ts';
import { AWS_ENV, requireEnv } from './environment.ts';
import type { DepFactories } from './handler-deps.ts';
import { sdkClientLogger } from './handler-observability.ts';

/**
 * The table (`UPDRAFT_TABLE_NAME`): the engine's DynamoDB adapter over an SDK client that reads
 * region, credentials and `AWS_ENDPOINT_URL` (LocalStack) from the environment, traced by X-Ray.
 */
export const factories: Pick<DepFactories, 'store'> = {
  store: async (deps, { tracer, logger }) =>
    new DynamoStore({
      retentionDays: (await deps.get('settings')).retentionDays,
      // As the store's own document client: native values, undefined fields left out.
      client: DynamoDBDocumentClient.from(
        tracer.captureAWSv3Client(new DynamoDBClient({ logger: sdkClientLogger(logger) })),
        {
          marshallOptions: { removeUndefinedValues: true },
        },
      ),
      tableName: requireEnv(process.env, AWS_ENV.tableName),
    }),
};

import { type Duration, RemovalPolicy } from 'aws-cdk-lib';
import {
  AttributeType,
  BillingMode,
  ProjectionType,
  Table,
  TableEncryption,
  type TableProps,
} from 'aws-cdk-lib/aws-dynamodb';
import type { Grant, IGrantable } from 'aws-cdk-lib/aws-iam';
import type { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { AWS_ENV } from '#aws/environment.ts';
import { SETTING_ENV_VARS } from '#config/settings.ts';
import {
  type GlobalSecondaryIndexDefinition,
  type KeyAttribute,
  TABLE_DEFINITION,
  TTL_ATTRIBUTE,
} from '#store/keys.ts';
import { acknowledge, arnReferenceOf } from './nag.ts';

/**
 * Days a run's items are kept after their last write (the store stamps `TTL_ATTRIBUTE` on every
 * write of them). The same retention expires log chunks in the log bucket.
 */
export const RETENTION_DAYS_ENV_VAR = SETTING_ENV_VARS.retentionDays;

/**
 * The DynamoDB actions the store adapter (`src/store`) uses, and all a bound function gets: no
 * scans, no streams, no table management. Single items are deleted only for trigger rows and
 * triggerer jobs, which end when their deferral or triggerer does. An infra test checks the
 * adapter's commands against this list.
 */
export const STORE_DYNAMODB_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:Query',
  'dynamodb:BatchGetItem',
  'dynamodb:BatchWriteItem',
] as const;

/**
 * Table properties a user may set. The keys and the billing mode belong to the key design in
 * `src/store/keys.ts` (the embedded store builds its table from the same definition), so they
 * cannot be overridden here.
 */
export type UpdraftTableOverrides = Omit<
  TableProps,
  'partitionKey' | 'sortKey' | 'billingMode' | 'timeToLiveAttribute'
>;

export interface UpdraftTableProps {
  /**
   * Merged over the secure defaults: on-demand billing, point-in-time recovery, AWS-managed
   * encryption, `RemovalPolicy.RETAIN`, no deletion protection. Set `removalPolicy` and
   * `deletionProtection` here.
   */
  readonly tableProps?: UpdraftTableOverrides;
  /** How long finished runs and their items are kept before their time to live expires them. */
  readonly retention?: Duration;
}

const ATTRIBUTE_TYPES: Record<KeyAttribute['type'], AttributeType> = {
  S: AttributeType.STRING,
};

const PROJECTION_TYPES: Record<GlobalSecondaryIndexDefinition['projectionType'], ProjectionType> = {
  ALL: ProjectionType.ALL,
  KEYS_ONLY: ProjectionType.KEYS_ONLY,
  INCLUDE: ProjectionType.INCLUDE,
};

const BILLING_MODES: Record<(typeof TABLE_DEFINITION)['billingMode'], BillingMode> = {
  PAY_PER_REQUEST: BillingMode.PAY_PER_REQUEST,
};

function toAttribute(attribute: KeyAttribute): { name: string; type: AttributeType } {
  return { name: attribute.name, type: ATTRIBUTE_TYPES[attribute.type] };
}

/**
 * Secure defaults first, the user's overrides next, the key design last: a user can relax
 * retention or pick a customer-managed key, but never change the keys the store code writes.
 */
function resolveTableProps(overrides: UpdraftTableOverrides = {}): TableProps {
  const defaults: UpdraftTableOverrides = {
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    encryption: TableEncryption.AWS_MANAGED,
    // The table is the source of truth for every run; deleting the stack must not delete it.
    removalPolicy: RemovalPolicy.RETAIN,
    deletionProtection: false,
  };
  return {
    ...defaults,
    ...overrides,
    partitionKey: toAttribute(TABLE_DEFINITION.partitionKey),
    sortKey: toAttribute(TABLE_DEFINITION.sortKey),
    billingMode: BILLING_MODES[TABLE_DEFINITION.billingMode],
    timeToLiveAttribute: TTL_ATTRIBUTE,
  };
}

/** The store's DynamoDB table, built from the key design shared with the embedded store. */
export class UpdraftTable extends Construct {
  readonly table: Table;
  readonly retention: Duration | undefined;

  constructor(scope: Construct, id: string, props: UpdraftTableProps = {}) {
    super(scope, id);
    this.retention = props.retention;
    this.table = new Table(this, 'Table', resolveTableProps(props.tableProps));
    for (const index of TABLE_DEFINITION.globalSecondaryIndexes) {
      this.table.addGlobalSecondaryIndex({
        indexName: index.indexName,
        partitionKey: toAttribute(index.partitionKey),
        sortKey: toAttribute(index.sortKey),
        projectionType: PROJECTION_TYPES[index.projectionType],
        ...(index.nonKeyAttributes === undefined ? {} : { nonKeyAttributes: [...index.nonKeyAttributes] }),
      });
    }
  }

  get tableName(): string {
    return this.table.tableName;
  }

  grantReadWriteData(grantee: IGrantable): Grant {
    return this.table.grantReadWriteData(grantee);
  }

  /**
   * Gives a function the table: the store adapter's actions on the table and its indexes, its
   * name and the retention it stamps on items. Only the scheduler, the APIs and the DAG registration get it;
   * workers and the triggerer never do.
   */
  bindReadWrite(fn: LambdaFunction): Grant {
    fn.addEnvironment(AWS_ENV.tableName, this.table.tableName);
    if (this.retention) fn.addEnvironment(RETENTION_DAYS_ENV_VAR, String(this.retention.toDays()));
    acknowledge(fn, [
      {
        id: `AwsSolutions-IAM5[Resource::${arnReferenceOf(this.table)}/index/*]`,
        reason:
          "The store queries the table's own global secondary indexes (runs by logical date, active runs); the wildcard covers this table's indexes only.",
      },
    ]);
    return this.table.grant(fn, ...STORE_DYNAMODB_ACTIONS);
  }
}

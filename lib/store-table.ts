import { RemovalPolicy } from 'aws-cdk-lib';
import {
  AttributeType,
  BillingMode,
  ProjectionType,
  Table,
  TableEncryption,
  type TableProps,
} from 'aws-cdk-lib/aws-dynamodb';
import type { Grant, IGrantable } from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { type GlobalSecondaryIndexDefinition, type KeyAttribute, TABLE_DEFINITION } from '#store/keys.ts';

/**
 * Table properties a user may set. The keys and the billing mode belong to the key design in
 * `src/store/keys.ts` (the embedded store builds its table from the same definition), so they
 * cannot be overridden here.
 */
export type UpdraftTableOverrides = Omit<TableProps, 'partitionKey' | 'sortKey' | 'billingMode'>;

export interface UpdraftTableProps {
  /**
   * Merged over the secure defaults: on-demand billing, point-in-time recovery, AWS-managed
   * encryption, `RemovalPolicy.RETAIN`, no deletion protection. Set `removalPolicy` and
   * `deletionProtection` here.
   */
  readonly tableProps?: UpdraftTableOverrides;
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
  };
}

/** The store's DynamoDB table, built from the key design shared with the embedded store. */
export class UpdraftTable extends Construct {
  readonly table: Table;

  constructor(scope: Construct, id: string, props: UpdraftTableProps = {}) {
    super(scope, id);
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
}

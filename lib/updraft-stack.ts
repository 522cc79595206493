import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { UpdraftTable, type UpdraftTableProps } from './store-table.ts';

export interface UpdraftStackProps extends StackProps {
  readonly store?: UpdraftTableProps;
}

/**
 * The deployed Updraft: for now the store's DynamoDB table and its name as an output. The
 * queues, functions and the triggerer service join it as they are built.
 */
export class UpdraftStack extends Stack {
  readonly store: UpdraftTable;

  constructor(scope: Construct, id: string, props: UpdraftStackProps = {}) {
    super(scope, id, props);
    this.store = new UpdraftTable(this, 'Store', props.store);
    new CfnOutput(this, 'TableName', {
      value: this.store.tableName,
      description: 'DynamoDB table holding DAGs, runs, task instances and XComs',
    });
  }
}

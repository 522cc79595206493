/** What DAG files import as 'updraft'. */
export type { TaskContext, TaskLogger } from './context.ts';
export { type BranchChoice, Dag, DagBuilder, dag, isDag } from './dag.ts';
export { DagImportError, DagValidationError, SdkError } from './errors.ts';
export { BaseOperator, type OperatorContext } from './operator.ts';
export type { DagOptions, DefaultArgs, TaskOptions, UpstreamRef } from './options.ts';
export { FailSignal, fail, SkipSignal, skip } from './signals.ts';
export { chain, type TaskCallable, TaskHandle, XComArg } from './task.ts';

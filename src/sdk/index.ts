/** What DAG files import as 'updraft'. */
export type { CallbackContext } from './callback-context.ts';
export type { TaskContext, TaskLogger, TaskResume } from './context.ts';
export { type BranchChoice, Dag, DagBuilder, dag, isDag } from './dag.ts';
export { DagImportError, DagValidationError, SdkError } from './errors.ts';
export {
  type NotificationSummary,
  type SesEmailNotifierOptions,
  type SnsNotifierOptions,
  sesEmailNotifier,
  snsNotifier,
  type WebhookNotifierOptions,
  webhookNotifier,
} from './notifiers.ts';
export { BaseOperator, type OperatorContext } from './operator.ts';
export type {
  CallbackFunction,
  CallbackInput,
  CallbackSpec,
  DagOptions,
  DeadlineAverage,
  DeadlineBy,
  DeadlineOption,
  DeadlineWithin,
  DefaultArgs,
  TaskOptions,
  UpstreamRef,
} from './options.ts';
export {
  DateTimeSensor,
  type DateTimeSensorOptions,
  HttpSensor,
  type HttpSensorOptions,
  TimeDeltaSensor,
  type TimeDeltaSensorOptions,
} from './sensors.ts';
export { registerSerializable, type Serializable } from './serde.ts';
export {
  type DeferRequest,
  DeferralError,
  DeferSignal,
  defer,
  FailSignal,
  fail,
  isDeferSignal,
  SkipSignal,
  skip,
} from './signals.ts';
export { chain, type TaskCallable, TaskHandle, XComArg } from './task.ts';
export {
  BaseTrigger,
  DateTimeTrigger,
  FileExistsTrigger,
  type HttpCondition,
  type HttpPollResult,
  HttpPollTrigger,
  registerTrigger,
  TimeDeltaTrigger,
  type TriggerEvent,
  type TriggerRunContext,
  taskFailureEvent,
  taskSuccessEvent,
  triggerEvent,
} from './triggers/index.ts';

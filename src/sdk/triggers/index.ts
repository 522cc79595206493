/** Triggers: the base class, the registry and the built-in triggers (importing this registers them). */
export {
  BaseTrigger,
  type TriggerClass,
  type TriggerEvent,
  type TriggerRunContext,
  type TriggerSpec,
  taskFailureEvent,
  taskSuccessEvent,
  triggerEvent,
} from './base.ts';
export { FileExistsTrigger, type FileExistsTriggerKwargs } from './file.ts';
export {
  HTTP_BODY_LIMIT_BYTES,
  HTTP_BODY_TRUNCATED_MARKER,
  type HttpCondition,
  type HttpPollResult,
  HttpPollTrigger,
  type HttpPollTriggerInput,
  type HttpPollTriggerKwargs,
  parseHttpPollKwargs,
} from './http.ts';
export {
  registerBuiltinTrigger,
  registeredTriggerNames,
  registerTrigger,
  TriggerRegistrationError,
  triggerClassOf,
} from './registry.ts';
export { DateTimeTrigger, type DateTimeTriggerKwargs, TimeDeltaTrigger } from './temporal.ts';
export { InvalidTriggerKwargsError, millisecondsOf } from './validation.ts';

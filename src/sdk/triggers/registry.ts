import { SdkError } from '../errors.ts';
import type { TriggerClass } from './base.ts';

/**
 * Trigger classes by their `triggerName`: a triggerer gets a trigger as a name and kwargs and
 * finds its code here. Kept on globalThis so a DAG file with its own copy of the SDK registers
 * into the same registry the triggerer reads.
 */

export class TriggerRegistrationError extends SdkError {
  override name = 'TriggerRegistrationError';
}

const REGISTRY_KEY = Symbol.for('updraft.triggers.registry');
const BUILTIN_PREFIX = 'updraft.';
const TRIGGER_NAME_PATTERN = /^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/;

function registry(): Map<string, TriggerClass> {
  const holder = globalThis as typeof globalThis & { [REGISTRY_KEY]?: Map<string, TriggerClass> };
  holder[REGISTRY_KEY] ??= new Map();
  return holder[REGISTRY_KEY];
}

/**
 * Registers a trigger class under its static `triggerName` (a dotted name such as
 * `myco.JobDoneTrigger`) and returns it. Registering the same class again does nothing; another
 * class under a taken name throws, since a triggerer would run the wrong code. Names starting with
 * `updraft.` belong to the built-in triggers.
 */
export function registerTrigger<C extends TriggerClass>(cls: C): C {
  const name = checkedName(cls);
  if (name.startsWith(BUILTIN_PREFIX)) {
    throw new TriggerRegistrationError(
      `registerTrigger(${cls.name}): trigger names starting with '${BUILTIN_PREFIX}' are reserved for Updraft's built-in triggers; use your own prefix, e.g. 'myco.${cls.name}'`,
    );
  }
  const existing = registry().get(name);
  if (existing !== undefined && existing !== cls) {
    throw new TriggerRegistrationError(
      `registerTrigger(${cls.name}): the trigger name '${name}' is already taken by class ${existing.name}; give each trigger class its own triggerName`,
    );
  }
  registry().set(name, cls);
  return cls;
}

/**
 * Registers one of Updraft's own triggers. Two copies of the SDK in one process (a DAG bundle
 * with its own) both register them: the first copy's class is kept, as both hold the same code.
 */
export function registerBuiltinTrigger<C extends TriggerClass>(cls: C): C {
  const name = checkedName(cls);
  if (!registry().has(name)) registry().set(name, cls);
  return cls;
}

function checkedName(cls: TriggerClass): string {
  if (typeof cls !== 'function' || typeof cls.prototype?.run !== 'function') {
    throw new TriggerRegistrationError('registerTrigger() takes a trigger class (a BaseTrigger subclass)');
  }
  const name: unknown = cls.triggerName;
  if (typeof name !== 'string' || !TRIGGER_NAME_PATTERN.test(name)) {
    throw new TriggerRegistrationError(
      `registerTrigger(${cls.name}): static triggerName ${JSON.stringify(name)} is not a dotted name such as 'myco.${cls.name}'`,
    );
  }
  return name;
}

/** The class registered under `name`, or undefined. */
export function triggerClassOf(name: string): TriggerClass | undefined {
  return registry().get(name);
}

/** The registered trigger names, sorted. */
export function registeredTriggerNames(): string[] {
  return [...registry().keys()].sort();
}

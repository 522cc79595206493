import type { TaskContext } from './context.ts';
import type { TaskOptions } from './options.ts';

/** What an operator's execute() receives: the task context plus the positional args from `.args(...)`. */
export type OperatorContext = TaskContext & { readonly args: unknown[] };

/**
 * Base of reusable task classes. Subclasses declare their own options in `O`; the task options
 * (id, retries, pool…) sit beside them in the same object:
 *
 *   class Greet extends BaseOperator<{ name: string }> {
 *     async execute(ctx: OperatorContext) { return `hello ${this.options.name}`; }
 *   }
 *   d.add(new Greet({ id: 'greet', name: 'world', retries: 2 }));
 *
 * The class name is the serialized `operator`, shown in the UI.
 */
export abstract class BaseOperator<O extends object = Record<never, never>> {
  readonly options: TaskOptions & O;

  constructor(options: TaskOptions & O) {
    this.options = options;
  }

  get taskId(): string {
    return this.options.id;
  }

  /** Runs one try. Return a value (the XCom), or return/throw skip() or fail(). */
  abstract execute(ctx: OperatorContext): Promise<unknown>;
}

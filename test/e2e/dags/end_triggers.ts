import { BaseTrigger, registerTrigger, type TriggerEvent, taskFailureEvent, taskSuccessEvent } from 'updraft';

/**
 * A user trigger that ends its task without a worker (end from trigger). Standalone's triggerer
 * imports this module (UPDRAFT_TRIGGER_MODULES) to run it.
 */
export class EndTrigger extends BaseTrigger<{ outcome: 'success' | 'failure' }> {
  static override readonly triggerName = 'e2e.EndTrigger';

  override async *run(): AsyncGenerator<TriggerEvent, void, void> {
    yield this.kwargs.outcome === 'success'
      ? taskSuccessEvent({ rows: 3 })
      : taskFailureEvent('the external job failed');
  }
}

registerTrigger(EndTrigger);

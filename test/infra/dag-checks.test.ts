import { App, Duration, Stack } from 'aws-cdk-lib';
import { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { afterAll, describe, expect, it } from 'vitest';
import { HAND_BACK_MARGIN_MS } from '#aws/handler-worker.ts';
import type { SerializedDag, SerializedTask } from '#core/serialized-dag.ts';
import {
  checkTaskTimeouts,
  DagsFolderError,
  serializeDagsFolder,
  TaskTimeoutError,
  workerTaskTimeLimitMs,
} from '../../lib/dags.ts';
import { Updraft, type UpdraftProps } from '../../lib/updraft.ts';
import { WorkerConfigurationError } from '../../lib/workers.ts';
import { inlineFunctionCode, registryTriggererImage, removeOutdirs } from './helpers.ts';

afterAll(removeOutdirs);

function task(taskId: string, executionTimeoutMs: number | null): SerializedTask {
  return {
    taskId,
    operator: 'task',
    isBranch: false,
    upstream: [],
    args: [],
    retries: 0,
    retryDelayMs: 1000,
    retryExponentialBackoff: false,
    maxRetryDelayMs: null,
    executionTimeoutMs,
    triggerRule: 'all_success',
    priorityWeight: 1,
    weightRule: 'downstream',
    queue: 'default',
    pool: 'default_pool',
    poolSlots: 1,
    doc: null,
  };
}

function dagWith(dagId: string, tasks: SerializedTask[]): SerializedDag {
  return {
    formatVersion: 1,
    dagId,
    description: null,
    fileloc: `${dagId}.ts`,
    schedule: null,
    startDate: null,
    endDate: null,
    catchup: false,
    maxActiveRuns: 16,
    maxActiveTasks: 16,
    params: {},
    tags: [],
    tasks,
  };
}

/** Builds the construct alone (no template, no checks): the timeout check runs in its constructor. */
function build(props: Partial<UpdraftProps> & Pick<UpdraftProps, 'dagsDir'>): Updraft {
  const stack = new Stack(new App(), 'Updraft');
  return new Updraft(stack, 'Orchestrator', {
    functionCode: inlineFunctionCode,
    triggerer: { image: registryTriggererImage },
    ...props,
  });
}

describe('checkTaskTimeouts', () => {
  it('refuses a task whose execution timeout exceeds the worker timeout less the hand-back margin, naming the task, its DAG and the limit', () => {
    const dags = [dagWith('etl', [task('extract', 60_000), task('long_task', 881_000)])];
    expect(() => checkTaskTimeouts(dags, 900)).toThrow(TaskTimeoutError);
    expect(() => checkTaskTimeouts(dags, 900)).toThrow(
      "task 'long_task' of DAG 'etl' (etl.ts) has an execution timeout of 881 s: over the limit of 880 s, the worker function's timeout (900 s) less the 20 s in which the worker hands a running try back",
    );
  });

  it("says that a try outliving the limit is a retryable failure, not the task's timeout", () => {
    const dags = [dagWith('etl', [task('long_task', 900_000)])];
    expect(() => checkTaskTimeouts(dags, 900)).toThrow(
      /reported as a retryable failure \("outlived the worker's time limit"\).*Lower the task's executionTimeout to 880 s or less/,
    );
  });

  it('takes the margin from the worker handler (HAND_BACK_MARGIN_MS)', () => {
    expect(workerTaskTimeLimitMs(900)).toBe(900_000 - HAND_BACK_MARGIN_MS);
  });

  it('keeps at most a third of a short worker timeout as the margin, as the worker does', () => {
    expect(workerTaskTimeLimitMs(30)).toBe(20_000);
  });

  it('accepts a task whose execution timeout equals the limit', () => {
    expect(() => checkTaskTimeouts([dagWith('etl', [task('long_task', 880_000)])], 900)).not.toThrow();
  });

  it('accepts a task without an execution timeout', () => {
    expect(() => checkTaskTimeouts([dagWith('etl', [task('open_ended', null)])], 900)).not.toThrow();
  });

  it('refuses a callback whose timeout exceeds the limit, wherever it is attached, and accepts one at the limit', () => {
    const etl = dagWith('etl', [
      { ...task('load', null), callbacks: { onFailure: [{ name: 'page', timeoutMs: 871_000 }] } },
    ]);
    expect(() => checkTaskTimeouts([etl], 900, 60_000)).toThrow(
      "callback 'page' (onFailure of task 'load' of DAG 'etl', etl.ts) has a timeout of 871 s: over the limit of 870 s for callbacks, the worker function's timeout (900 s) less the 20 s in which the worker hands a running attempt back and 10 s for the attempt's start",
    );
    const onDag = { ...dagWith('d', []), callbacks: { onSuccess: [{ name: 'tell', timeoutMs: 900_000 }] } };
    expect(() => checkTaskTimeouts([onDag], 900, 60_000)).toThrow(
      /callback 'tell' \(the DAG's onSuccess of DAG 'd', d.ts\).*handed back unfinished.*Lower the timeout to 870 s or less/,
    );
    const deadline = {
      ...dagWith('late', []),
      deadlines: [
        {
          reference: 'queued_at' as const,
          withinMs: 60_000,
          callbacks: [{ name: 'warn', timeoutMs: 899_000 }],
        },
      ],
    };
    expect(() => checkTaskTimeouts([deadline], 900, 60_000)).toThrow(
      /callback 'warn' \(deadline 0 of DAG 'late'/,
    );
    const atLimit = dagWith('etl', [
      { ...task('load', null), callbacks: { onFailure: [{ name: 'page', timeoutMs: 870_000 }] } },
    ]);
    expect(() => checkTaskTimeouts([atLimit], 900, 870_000)).not.toThrow();
  });

  it('refuses a default callback timeout (UPDRAFT_CALLBACK_EXECUTION_TIMEOUT_MS) over the limit', () => {
    expect(() => checkTaskTimeouts([], 60, 45_000)).toThrow(
      'UPDRAFT_CALLBACK_EXECUTION_TIMEOUT_MS, the timeout of callbacks that set none, is 45 s: over the limit of 30 s for callbacks',
    );
  });

  it('names every task over the limit in one error', () => {
    const dags = [dagWith('a', [task('first', 1_000_000)]), dagWith('b', [task('second', 2_000_000)])];
    expect(() => checkTaskTimeouts(dags, 900)).toThrow(/task 'first' of DAG 'a'.*; task 'second' of DAG 'b'/);
  });
});

describe('Updraft DAG checks at synth', () => {
  it('fails the synth for a DAG with an 881 s execution timeout, naming the task and the 880 s limit', () => {
    const attempt = () => build({ dagsDir: 'test/infra/fixtures/dags-timeout-881' });
    expect(attempt).toThrow(TaskTimeoutError);
    expect(attempt).toThrow(/task 'long_task' of DAG 'long_running'.*881 s.*limit of 880 s/);
  });

  it('builds with a DAG whose execution timeout is 880 s, registering it', () => {
    const updraft = build({ dagsDir: 'test/infra/fixtures/dags-timeout-880' });
    expect(updraft.serializedDags.dags.map(({ dag }) => dag.dagId)).toEqual(['long_running']);
  });

  it('takes the limit from the worker function timeout', () => {
    const attempt = () =>
      build({ dagsDir: 'test/infra/fixtures/dags-timeout-880', workers: { timeout: Duration.minutes(10) } });
    expect(attempt).toThrow(/execution timeout of 880 s: over the limit of 580 s/);
  });

  it('fails the synth for a default callback timeout over the worker limit', () => {
    const attempt = () =>
      build({
        dagsDir: 'test/infra/fixtures/dags-timeout-880',
        workers: { timeout: Duration.minutes(15) },
        settings: { callbackExecutionTimeoutMs: 871_000 },
      });
    expect(attempt).toThrow(
      /UPDRAFT_CALLBACK_EXECUTION_TIMEOUT_MS.*871 s: over the limit of 870 s for callbacks/,
    );
  });

  it('fails the synth for a DAG in a .mjs file, which the worker does not bundle, naming the file and the rule', () => {
    // The DAG loader takes .ts, .mts, .js and .mjs files; functions/worker.ts bundles only the
    // .ts ones, so every task of such a DAG would fail "is not bundled" on the worker.
    const attempt = () => serializeDagsFolder('test/infra/fixtures/dags-mjs', { timeoutMs: 60_000 });
    expect(attempt).toThrow(DagsFolderError);
    expect(attempt).toThrow(/plain_js\.mjs.*bundles the \.ts files of the DAGs folder only/);
  });

  it('fails the synth for a DAG file that does not import, naming the file', () => {
    const attempt = () => build({ dagsDir: 'test/infra/fixtures/dags-broken' });
    expect(attempt).toThrow(DagsFolderError);
    expect(attempt).toThrow(/broken\.ts: .*this DAG file is broken on purpose/);
  });

  it('fails the synth for a DAGs folder the default worker entry does not bundle, before bundling anything', () => {
    let stack = new Stack();
    const attempt = () => {
      stack = new Stack(new App(), 'Updraft');
      return new Updraft(stack, 'Orchestrator', {
        dagsDir: 'test/infra/fixtures/dags-timeout-880',
        triggerer: { image: registryTriggererImage },
      });
    };
    expect(attempt).toThrow(WorkerConfigurationError);
    expect(attempt).toThrow(
      /dags-timeout-880 is not the one the default worker entry \(functions\/worker\.ts\) bundles/,
    );
    expect(stack.node.findAll().some((construct) => construct instanceof NodejsFunction)).toBe(false);
  });

  it('accepts another DAGs folder with a worker entry of its own', () => {
    const stack = new Stack(new App(), 'Updraft');
    const attempt = () =>
      new Updraft(stack, 'Orchestrator', {
        dagsDir: 'test/infra/fixtures/dags-timeout-880',
        workers: { entry: 'functions/worker.ts' },
        functionCode: inlineFunctionCode,
        triggerer: { image: registryTriggererImage },
      });
    expect(attempt).not.toThrow();
  });

  it('fails the synth for a DAGs folder that does not exist', () => {
    expect(() => build({ dagsDir: 'test/infra/fixtures/no-such-folder' })).toThrow(DagsFolderError);
  });
});

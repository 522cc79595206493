import { App, Duration, Stack } from 'aws-cdk-lib';
import { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { afterAll, describe, expect, it } from 'vitest';
import type { SerializedDag, SerializedTask } from '#core/serialized-dag.ts';
import { checkTaskTimeouts, DagsFolderError, TaskTimeoutError } from '../../lib/dags.ts';
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
  it('refuses a task whose execution timeout exceeds the limit, naming the task, its DAG and the limit', () => {
    const dags = [dagWith('etl', [task('extract', 60_000), task('long_task', 901_000)])];
    expect(() => checkTaskTimeouts(dags, 900)).toThrow(TaskTimeoutError);
    expect(() => checkTaskTimeouts(dags, 900)).toThrow(
      "task 'long_task' of DAG 'etl' (etl.ts) has an execution timeout of 901 s: over the worker function's limit of 900 s",
    );
  });

  it('accepts a task whose execution timeout equals the limit', () => {
    expect(() => checkTaskTimeouts([dagWith('etl', [task('long_task', 900_000)])], 900)).not.toThrow();
  });

  it('accepts a task without an execution timeout', () => {
    expect(() => checkTaskTimeouts([dagWith('etl', [task('open_ended', null)])], 900)).not.toThrow();
  });

  it('names every task over the limit in one error', () => {
    const dags = [dagWith('a', [task('first', 1_000_000)]), dagWith('b', [task('second', 2_000_000)])];
    expect(() => checkTaskTimeouts(dags, 900)).toThrow(/task 'first' of DAG 'a'.*; task 'second' of DAG 'b'/);
  });
});

describe('Updraft DAG checks at synth', () => {
  it('fails the synth for a DAG with a 901 s execution timeout, naming the task and the 900 s limit', () => {
    const attempt = () => build({ dagsDir: 'test/infra/fixtures/dags-timeout-901' });
    expect(attempt).toThrow(TaskTimeoutError);
    expect(attempt).toThrow(/task 'long_task' of DAG 'long_running'.*901 s.*limit of 900 s/);
  });

  it('builds with a DAG whose execution timeout is 900 s, registering it', () => {
    const updraft = build({ dagsDir: 'test/infra/fixtures/dags-timeout-900' });
    expect(updraft.serializedDags.dags.map(({ dag }) => dag.dagId)).toEqual(['long_running']);
  });

  it('takes the limit from the worker function timeout', () => {
    const attempt = () =>
      build({ dagsDir: 'test/infra/fixtures/dags-timeout-900', workers: { timeout: Duration.minutes(10) } });
    expect(attempt).toThrow(/execution timeout of 900 s: over the worker function's limit of 600 s/);
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
        dagsDir: 'test/infra/fixtures/dags-timeout-900',
        triggerer: { image: registryTriggererImage },
      });
    };
    expect(attempt).toThrow(WorkerConfigurationError);
    expect(attempt).toThrow(
      /dags-timeout-900 is not the one the default worker entry \(functions\/worker\.ts\) bundles/,
    );
    expect(stack.node.findAll().some((construct) => construct instanceof NodejsFunction)).toBe(false);
  });

  it('accepts another DAGs folder with a worker entry of its own', () => {
    const stack = new Stack(new App(), 'Updraft');
    const attempt = () =>
      new Updraft(stack, 'Orchestrator', {
        dagsDir: 'test/infra/fixtures/dags-timeout-900',
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

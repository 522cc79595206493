/**
 * The public REST API's wire shapes as the CLI reads them (Airflow REST API v2 names). Declared
 * here rather than imported from `src/api` so the CLI depends on the HTTP contract only, not on
 * the server's code or its dependencies.
 */

export interface Dag {
  dag_id: string;
  description: string | null;
  fileloc: string;
  is_paused: boolean;
  is_active: boolean;
  tags: string[];
  schedule: string | null;
  next_dagrun_logical_date: string | null;
  dag_version: string;
  last_parsed_time: string;
}

export interface DagTask {
  task_id: string;
  operator: string;
  upstream_task_ids: string[];
  downstream_task_ids: string[];
  trigger_rule: string;
  retries: number;
  pool: string;
  pool_slots: number;
  priority_weight: number;
  queue: string;
}

export interface DagDetail extends Dag {
  tasks: DagTask[];
  max_active_runs: number;
  max_active_tasks: number;
  catchup: boolean;
  start_date: string | null;
  params: Record<string, unknown>;
}

export interface ImportError {
  filename: string;
  stack_trace: string;
  timestamp: string;
}

export interface DagCollection {
  dags: Dag[];
  total_entries: number;
  next_cursor?: string;
  import_errors: ImportError[];
}

export interface DagRun {
  dag_id: string;
  dag_run_id: string;
  run_type: string;
  state: string;
  logical_date: string;
  data_interval_start: string | null;
  data_interval_end: string | null;
  queued_at: string;
  start_date: string | null;
  end_date: string | null;
  conf: Record<string, unknown>;
  dag_version: string;
}

export interface DagRunCollection {
  dag_runs: DagRun[];
  total_entries: number;
  next_cursor?: string;
}

export interface TriggerDagRunBody {
  dag_run_id?: string;
  logical_date?: string;
  conf?: Record<string, unknown>;
}

export interface TaskInstance {
  dag_id: string;
  dag_run_id: string;
  task_id: string;
  map_index: number;
  /** `null` stands for the state `none`, as in Airflow. */
  state: string | null;
  try_number: number;
  max_tries: number;
  start_date: string | null;
  end_date: string | null;
  /** Seconds. */
  duration: number | null;
  operator: string;
  pool: string;
  pool_slots: number;
  priority_weight: number;
  queue: string;
  queued_when: string | null;
  hostname: string | null;
  error_message: string | null;
  next_retry_at: string | null;
}

export interface TaskInstanceCollection {
  task_instances: TaskInstance[];
  total_entries: number;
}

export interface TaskLog {
  content: string;
}

export interface XComEntry {
  key: string;
  /** The XCom as JSON (the API parses the stored JSON text). */
  value: unknown;
  dag_id: string;
  dag_run_id: string;
  task_id: string;
  map_index: number;
}

export interface ClearTaskInstancesBody {
  dag_run_id: string;
  task_ids: string[];
  include_downstream?: boolean;
  only_failed?: boolean;
  dry_run?: boolean;
}

export interface ClearedTaskInstances {
  task_instances: TaskInstance[];
}

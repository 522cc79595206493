import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AWS_ENV, queueUrlEnvVar } from '#aws/environment.ts';
import { QUEUE_NAMES } from '#queue/port.ts';
import { STORE_DYNAMODB_ACTIONS } from '../../lib/store-table.ts';
import {
  actionsOf,
  environmentOf,
  logicalIdOf,
  type PolicyStatement,
  policiesOfRole,
  removeOutdirs,
  resourcesOf,
  roleOfFunction,
  synthesizeTemplate,
  type TemplateOnly,
  testStackProps,
} from './helpers.ts';

afterAll(removeOutdirs);

const getAtt = (logicalId: string, attribute = 'Arn') => ({ 'Fn::GetAtt': [logicalId, attribute] });

describe('least privilege', () => {
  let synthesized: TemplateOnly;
  let ids: Record<'api' | 'executionApi' | 'scheduler' | 'worker' | 'registerDags', string>;
  let statementsOf: (roleLogicalId: string) => PolicyStatement[];
  let functionStatements: (functionId: string) => PolicyStatement[];

  beforeAll(() => {
    synthesized = synthesizeTemplate(testStackProps());
    const { updraft } = synthesized.stack;
    ids = {
      api: logicalIdOf(updraft.api.function),
      executionApi: logicalIdOf(updraft.executionApi.function),
      scheduler: logicalIdOf(updraft.scheduler.function),
      worker: logicalIdOf(updraft.workers.function),
      registerDags: logicalIdOf(updraft.dagRegistration.function),
    };
    statementsOf = (role) => policiesOfRole(synthesized.template, role).statements;
    functionStatements = (fn) => statementsOf(roleOfFunction(synthesized.template, fn));
  });

  const triggererRoles = () => {
    const taskDefinition = synthesized.stack.updraft.triggerer.taskDefinition;
    return {
      task: logicalIdOf(taskDefinition.taskRole),
      execution: logicalIdOf(taskDefinition.executionRole!),
    };
  };
  const allActions = (statements: PolicyStatement[]) => statements.flatMap(actionsOf);

  it('gives the worker no DynamoDB action in any policy attached to its role', () => {
    const actions = allActions(functionStatements(ids.worker));
    expect(actions.length).toBeGreaterThan(0);
    expect(actions.filter((action) => action.toLowerCase().startsWith('dynamodb:'))).toEqual([]);
  });

  it('gives the worker no bucket, secret or timer access either: only its queues, the Execution API and X-Ray', () => {
    const services = new Set(
      allActions(functionStatements(ids.worker)).map((action) => action.split(':')[0]),
    );
    expect([...services].sort()).toEqual(['lambda', 'sqs', 'xray']);
  });

  it('gives the triggerer task and execution roles no DynamoDB action', () => {
    const { task, execution } = triggererRoles();
    for (const role of [task, execution]) {
      expect(
        allActions(statementsOf(role)).filter((action) => action.toLowerCase().startsWith('dynamodb:')),
      ).toEqual([]);
      expect(policiesOfRole(synthesized.template, role).managedPolicyArns).toEqual([]);
    }
  });

  it('lets the triggerer task role invoke the Execution API function URL and nothing else', () => {
    const executionApi = getAtt(ids.executionApi);
    expect(statementsOf(triggererRoles().task)).toEqual([
      {
        Effect: 'Allow',
        Action: 'lambda:InvokeFunctionUrl',
        Resource: executionApi,
        Condition: { StringEquals: { 'lambda:FunctionUrlAuthType': 'AWS_IAM' } },
      },
      // AWS requires InvokeFunction beside InvokeFunctionUrl; the condition keeps it to calls through the URL.
      {
        Effect: 'Allow',
        Action: 'lambda:InvokeFunction',
        Resource: executionApi,
        Condition: { Bool: { 'lambda:InvokedViaFunctionUrl': true } },
      },
    ]);
  });

  it('gives the worker the same Execution API grant as the triggerer', () => {
    const lambdaStatements = functionStatements(ids.worker).filter((statement) =>
      actionsOf(statement).some((action) => action.startsWith('lambda:')),
    );
    expect(lambdaStatements).toEqual(statementsOf(triggererRoles().task));
  });

  it('opens the triggerer to nothing inbound and to HTTPS only outbound', () => {
    const groups = Object.values(synthesized.template.findResources('AWS::EC2::SecurityGroup'));
    expect(groups).toHaveLength(1);
    expect(groups[0]?.Properties.SecurityGroupIngress).toBeUndefined();
    expect(groups[0]?.Properties.SecurityGroupEgress).toEqual([
      {
        CidrIp: '0.0.0.0/0',
        Description: 'HTTPS to AWS endpoints and the Execution API',
        FromPort: 443,
        IpProtocol: 'tcp',
        ToPort: 443,
      },
    ]);
    synthesized.template.resourceCountIs('AWS::EC2::SecurityGroupIngress', 0);
    synthesized.template.resourceCountIs('AWS::EC2::SecurityGroupEgress', 0);
  });

  it('lets only the APIs, the scheduler and the DAG registration reach the table, with the store actions only', () => {
    const table = logicalIdOf(synthesized.stack.updraft.store.table);
    const withTable = Object.entries(ids).filter(([, fn]) =>
      allActions(functionStatements(fn)).some((action) => action.startsWith('dynamodb:')),
    );
    expect(withTable.map(([name]) => name).sort()).toEqual([
      'api',
      'executionApi',
      'registerDags',
      'scheduler',
    ]);
    for (const [name, fn] of withTable) {
      const statements = functionStatements(fn).filter((statement) =>
        actionsOf(statement).some((action) => action.startsWith('dynamodb:')),
      );
      expect(statements, name).toEqual([
        {
          Effect: 'Allow',
          Action: [...STORE_DYNAMODB_ACTIONS],
          Resource: [getAtt(table), { 'Fn::Join': ['', [getAtt(table), '/index/*']] }],
        },
      ]);
      expect(environmentOf(synthesized.template, fn).UPDRAFT_TABLE_NAME, name).toEqual({ Ref: table });
    }
  });

  it('grants every DynamoDB command the store adapter sends', () => {
    const commandActions: Record<string, string> = {
      GetCommand: 'dynamodb:GetItem',
      PutCommand: 'dynamodb:PutItem',
      UpdateCommand: 'dynamodb:UpdateItem',
      DeleteCommand: 'dynamodb:DeleteItem',
      QueryCommand: 'dynamodb:Query',
      ScanCommand: 'dynamodb:Scan',
      BatchGetCommand: 'dynamodb:BatchGetItem',
      BatchWriteCommand: 'dynamodb:BatchWriteItem',
      TransactGetCommand: 'dynamodb:TransactGetItems',
      TransactWriteCommand: 'dynamodb:TransactWriteItems',
    };
    // The embedded server's bootstrap (standalone only) creates and describes its own table.
    const adapterFiles = readdirSync('src/store').filter(
      (file) => file.endsWith('.ts') && file !== 'embedded.ts',
    );
    const sent = new Set<string>();
    for (const file of adapterFiles) {
      for (const match of readFileSync(join('src/store', file), 'utf8').matchAll(/new (\w+Command)\b/g)) {
        sent.add(match[1]!);
      }
    }
    expect(sent.size).toBeGreaterThan(0);
    for (const command of sent) {
      expect(commandActions[command], `${command} has a known IAM action`).toBeDefined();
      expect(STORE_DYNAMODB_ACTIONS, command).toContain(commandActions[command]);
    }
  });

  it('lets only the two APIs reach the log bucket', () => {
    const withBucket = Object.entries(ids).filter(([, fn]) =>
      allActions(functionStatements(fn)).some((action) => action.startsWith('s3:')),
    );
    expect(withBucket.map(([name]) => name).sort()).toEqual(['api', 'executionApi']);
  });

  const s3Statements = (fn: string) =>
    functionStatements(fn).filter((statement) => actionsOf(statement).some((a) => a.startsWith('s3:')));

  it('lets the public API only read log chunks: get and list, under the logs/ prefix', () => {
    const bucket = logicalIdOf(synthesized.stack.updraft.logs.bucket);
    expect(s3Statements(ids.api)).toEqual([
      {
        Effect: 'Allow',
        Action: 's3:GetObject',
        Resource: { 'Fn::Join': ['', [getAtt(bucket), '/logs/*']] },
      },
      {
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: getAtt(bucket),
        Condition: { StringLike: { 's3:prefix': 'logs/*' } },
      },
    ]);
    expect(environmentOf(synthesized.template, ids.api).UPDRAFT_LOG_BUCKET).toEqual({ Ref: bucket });
  });

  it('lets the Execution API only write log chunks: put, under the logs/ prefix', () => {
    // It appends chunks (heartbeats, reports, late-report notes) and never reads a log back.
    const bucket = logicalIdOf(synthesized.stack.updraft.logs.bucket);
    expect(s3Statements(ids.executionApi)).toEqual([
      {
        Effect: 'Allow',
        Action: 's3:PutObject',
        Resource: { 'Fn::Join': ['', [getAtt(bucket), '/logs/*']] },
      },
    ]);
    expect(environmentOf(synthesized.template, ids.executionApi).UPDRAFT_LOG_BUCKET).toEqual({
      Ref: bucket,
    });
  });

  it('lets only the Execution API and the scheduler (which queues workloads with tokens) read the signing keyring', () => {
    const keyring = logicalIdOf(synthesized.stack.updraft.executionApi.keyring);
    const readers = Object.entries(ids).filter(([, fn]) =>
      functionStatements(fn).some((statement) =>
        resourcesOf(statement).some((r) => JSON.stringify(r) === JSON.stringify({ Ref: keyring })),
      ),
    );
    expect(readers.map(([name]) => name).sort()).toEqual(['executionApi', 'scheduler']);
    for (const [, fn] of readers) {
      expect(environmentOf(synthesized.template, fn).UPDRAFT_SIGNING_KEY_SECRET_ARN).toEqual({
        Ref: keyring,
      });
    }
  });

  it('lets only the public API read its bearer token', () => {
    const token = logicalIdOf(synthesized.stack.updraft.api.tokenSecret);
    const readers = Object.entries(ids).filter(([, fn]) =>
      functionStatements(fn).some((statement) =>
        resourcesOf(statement).some((r) => JSON.stringify(r) === JSON.stringify({ Ref: token })),
      ),
    );
    expect(readers.map(([name]) => name)).toEqual(['api']);
  });

  it('gives each function the URLs of exactly the queues it uses, and sends only to those', () => {
    const expected = {
      api: ['scheduler'],
      executionApi: ['scheduler', 'callbacks'],
      scheduler: [...QUEUE_NAMES],
      worker: ['callbacks', 'tasks_high', 'tasks_default', 'tasks_low'],
      registerDags: [],
    } as const;
    const { queues } = synthesized.stack.updraft.queues;
    const queueIds = new Map(QUEUE_NAMES.map((name) => [logicalIdOf(queues[name].queue), name]));
    for (const [name, fn] of Object.entries(ids) as [keyof typeof expected, string][]) {
      const environment = environmentOf(synthesized.template, fn);
      const withUrl = QUEUE_NAMES.filter((queue) => environment[queueUrlEnvVar(queue)] !== undefined);
      expect(withUrl.sort(), name).toEqual([...expected[name]].sort());
      const sqsQueues = functionStatements(fn)
        .filter((statement) => actionsOf(statement).some((action) => action.startsWith('sqs:')))
        .flatMap(resourcesOf)
        .map((resource) => queueIds.get((resource as { 'Fn::GetAtt': [string] })['Fn::GetAtt'][0]));
      expect([...new Set(sqsQueues)].sort(), name).toEqual([...expected[name]].sort());
    }
    // Sending is for the functions that produce messages; the worker only consumes.
    const senders = Object.entries(ids).filter(([, fn]) =>
      allActions(functionStatements(fn)).includes('sqs:SendMessage'),
    );
    expect(senders.map(([name]) => name).sort()).toEqual(['api', 'executionApi', 'scheduler']);
  });

  it('grants actions on "*" only where AWS accepts nothing narrower (X-Ray, the ECR login)', () => {
    const roles = Object.keys(synthesized.template.findResources('AWS::IAM::Role'));
    const onEverything = roles.flatMap((role) =>
      statementsOf(role)
        .filter((statement) => resourcesOf(statement).includes('*'))
        .flatMap(actionsOf),
    );
    expect(onEverything.length).toBeGreaterThan(0);
    const narrowestPossible = [
      'xray:PutTelemetryRecords',
      'xray:PutTraceSegments',
      'ecr:GetAuthorizationToken',
    ];
    for (const action of onEverything) expect(narrowestPossible).toContain(action);
  });

  it('lets the timer role only send to the scheduler queue, and only EventBridge Scheduler of this account assume it', () => {
    const { timers, queues } = synthesized.stack.updraft;
    const role = logicalIdOf(timers.targetRole);
    expect(statementsOf(role)).toEqual([
      {
        Effect: 'Allow',
        Action: 'sqs:SendMessage',
        Resource: getAtt(logicalIdOf(queues.queues.scheduler.queue)),
      },
    ]);
    const trust =
      synthesized.template.findResources('AWS::IAM::Role')[role]?.Properties.AssumeRolePolicyDocument;
    expect(trust.Statement).toEqual([
      {
        Effect: 'Allow',
        Action: 'sts:AssumeRole',
        Principal: { Service: 'scheduler.amazonaws.com' },
        Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
      },
    ]);
  });

  it('lets only the scheduler create timer schedules and pass the timer role', () => {
    const { timers } = synthesized.stack.updraft;
    const setters = Object.entries(ids).filter(([, fn]) =>
      allActions(functionStatements(fn)).includes('scheduler:CreateSchedule'),
    );
    expect(setters.map(([name]) => name)).toEqual(['scheduler']);
    const passers = Object.entries(ids).filter(([, fn]) =>
      allActions(functionStatements(fn)).includes('iam:PassRole'),
    );
    expect(passers.map(([name]) => name)).toEqual(['scheduler']);
    for (const [, fn] of setters) {
      const statements = functionStatements(fn);
      const create = statements.find((statement) =>
        actionsOf(statement).includes('scheduler:CreateSchedule'),
      );
      expect(actionsOf(create!)).toEqual(['scheduler:CreateSchedule']);
      expect(JSON.stringify(create!.Resource)).toContain(
        `:schedule/${timers.scheduleGroup.scheduleGroupName}/*`,
      );
      const pass = statements.find((statement) => actionsOf(statement).includes('iam:PassRole'));
      expect(pass).toEqual({
        Effect: 'Allow',
        Action: 'iam:PassRole',
        Resource: getAtt(logicalIdOf(timers.targetRole)),
        Condition: { StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } },
      });
      const environment = environmentOf(synthesized.template, fn);
      expect(environment.UPDRAFT_TIMER_TARGET_ARN).toEqual(
        getAtt(logicalIdOf(synthesized.stack.updraft.queues.queues.scheduler.queue)),
      );
      expect(environment.UPDRAFT_TIMER_ROLE_ARN).toEqual(getAtt(logicalIdOf(timers.targetRole)));
      expect(environment.UPDRAFT_TIMER_GROUP_NAME).toBeDefined();
    }
  });

  it('tells no function but the scheduler where timers go: the Execution API never sets one', () => {
    // The Execution API's router (createApiStack, src/api/stack.ts) takes no timers.
    const timerVariables = [AWS_ENV.timerTargetArn, AWS_ENV.timerRoleArn, AWS_ENV.timerGroupName];
    for (const [name, fn] of Object.entries(ids)) {
      const environment = environmentOf(synthesized.template, fn);
      const present = timerVariables.filter((variable) => environment[variable] !== undefined);
      expect(present, name).toEqual(name === 'scheduler' ? timerVariables : []);
    }
  });

  it('sets every variable each handler requires (requireEnv) on its function', () => {
    const required: Record<keyof typeof ids, string[]> = {
      api: [AWS_ENV.tableName, queueUrlEnvVar('scheduler'), AWS_ENV.logBucket, AWS_ENV.apiTokenSecretArn],
      executionApi: [
        AWS_ENV.tableName,
        queueUrlEnvVar('scheduler'),
        AWS_ENV.logBucket,
        AWS_ENV.signingKeySecretArn,
      ],
      scheduler: [
        AWS_ENV.tableName,
        ...QUEUE_NAMES.map(queueUrlEnvVar),
        AWS_ENV.timerTargetArn,
        AWS_ENV.timerRoleArn,
        AWS_ENV.timerGroupName,
        AWS_ENV.signingKeySecretArn,
      ],
      worker: [AWS_ENV.executionApiUrl],
      registerDags: [AWS_ENV.tableName],
    };
    for (const [name, variables] of Object.entries(required) as [keyof typeof ids, string[]][]) {
      const environment = environmentOf(synthesized.template, ids[name]);
      expect(
        variables.filter((variable) => environment[variable] === undefined),
        name,
      ).toEqual([]);
    }
  });
});

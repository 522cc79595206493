import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { UpdraftStack } from '../lib/updraft-stack.ts';

const app = new App();
// The CLI sets these from the caller's AWS configuration; unset values keep the stack
// environment-agnostic, so `cdk synth` works without credentials. The DAGs are those in `dags/`.
new UpdraftStack(app, 'Updraft', {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
// The AWS Solutions checks run on every synth; a finding fails it unless acknowledged with a reason.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));

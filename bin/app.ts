import { App } from 'aws-cdk-lib';
import { UpdraftStack } from '../lib/updraft-stack.ts';

const app = new App();
// The CLI sets these from the caller's AWS configuration; unset values keep the stack
// environment-agnostic, so `cdk synth` works without credentials.
new UpdraftStack(app, 'Updraft', {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});

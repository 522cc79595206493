#!/usr/bin/env node
// The `updraft` command (package.json "bin", `npm start`). Plain JavaScript that every Node.js
// since 12 can parse: on a Node too old to run the TypeScript sources it prints one line saying
// which Node is needed and how to get it, before anything else runs. Otherwise it hands over to
// bin/updraft.ts.
import { readFileSync } from 'node:fs';

const { engines } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const needed = engines.node;
const [major, minor] = needed
  .replace(/^[^\d]*/, '')
  .split('.')
  .map(Number);
const [hasMajor, hasMinor] = process.versions.node.split('.').map(Number);
if (hasMajor < major || (hasMajor === major && hasMinor < minor)) {
  process.stderr.write(
    `Error: Updraft needs Node.js ${needed} (package.json "engines"), but ${process.execPath} is Node.js ${process.versions.node}: run it through npm (\`npm ci\` installs Node 24 into node_modules/.bin, which \`npm start\` and \`npx updraft\` use), or install Node.js 24 from https://nodejs.org (or \`nvm install 24\`).\n`,
  );
  process.exit(2);
}
await import('./updraft.ts');

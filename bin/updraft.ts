#!/usr/bin/env node
import { main } from '#cli/main.ts';

const code = await main(process.argv);
// Exit explicitly: fetch keeps idle connections alive for a while, which would delay the prompt.
// Flush both streams first so piped output is not cut short.
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));

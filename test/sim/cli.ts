import { parseArgs } from 'node:util';
import { runSimulation, type SimResult } from './world.ts';

/**
 * `npm run sim -- --seed 1234 [--verbose]` replays one seed; `--seeds N [--from S]` runs N seeds.
 * `--keep-going` lists every invariant a seed breaks instead of stopping at the first. `--wide`
 * adds a wide DAG to every seed's workload (reservations in rounds; see workload.ts).
 */

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    seeds: { type: 'string', default: '20' },
    from: { type: 'string', default: '1' },
    verbose: { type: 'boolean', default: false },
    'keep-going': { type: 'boolean', default: false },
    wide: { type: 'boolean', default: false },
  },
});

const seeds =
  values.seed === undefined
    ? Array.from({ length: Number(values.seeds) }, (_, i) => Number(values.from) + i)
    : [Number(values.seed)];

export function describeFailure(result: SimResult): string {
  return [
    `seed ${result.seed} FAILED after ${result.steps} steps, ${(result.simMs / 1000).toFixed(1)}s sim time:`,
    ...result.failures.map((failure) => `  ${failure.message}`),
    '  trace tail:',
    ...result.trace.slice(-25).map((line) => `    ${line}`),
    `  replay: npm run sim -- --seed ${result.seed}${values.wide ? ' --wide' : ''} --verbose`,
  ].join('\n');
}

let failed = 0;
const byInvariant = new Map<string, number[]>();
for (const seed of seeds) {
  const result = await runSimulation({
    seed,
    verbose: values.verbose,
    keepGoing: values['keep-going'],
    wide: values.wide,
  });
  const timing = `${result.steps} steps, ${(result.simMs / 1000).toFixed(1)}s sim, ${(result.realMs / 1000).toFixed(2)}s real`;
  if (result.failures.length === 0) {
    console.log(`seed ${seed} ok (${timing})`);
  } else {
    failed++;
    for (const failure of result.failures)
      byInvariant.set(failure.invariant, [...(byInvariant.get(failure.invariant) ?? []), seed]);
    console.log(describeFailure(result));
  }
  if (values.verbose || seeds.length === 1) console.log(JSON.stringify(result.stats, null, 2));
}
if (seeds.length > 1) {
  console.log(`\n${seeds.length - failed}/${seeds.length} seeds passed`);
  for (const [invariant, list] of byInvariant) console.log(`  ${invariant}: seeds ${list.join(' ')}`);
}
process.exitCode = failed > 0 ? 1 : 0;

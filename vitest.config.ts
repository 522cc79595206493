import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The bundles test/infra/bundles-end-to-end.test.ts builds are loaded by Node itself, as
    // Lambda loads them: through vitest's module runner a bundle would get a `require` of its own.
    server: { deps: { external: [/updraft-bundles-e2e-/] } },
    reporters: ['default', ['json', { outputFile: '.vitest/results.json' }]],
  },
});

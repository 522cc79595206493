import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type BuildOptions, build, type Metafile, type Plugin } from 'esbuild';
import { bundleAliases, ESM_REQUIRE_BANNER } from '../lib/bundling.ts';
import {
  FUNCTION_ENTRIES,
  functionBuildOptions,
  SERVICE_NAMES,
  TRIGGERER_SERVICE_NAME,
} from '../lib/functions.ts';
import { TRIGGERER_ENTRY } from '../lib/triggerer-image.ts';
import { round } from './aws-cost.ts';

/** What each build shares with `NodejsFunction` (lib/functions.ts) and the triggerer image (lib/triggerer-image.ts). */
const COMMON: BuildOptions = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  minify: true,
  // Function names survive minification in the triggerer, which runs DAG code: a callback is
  // resolved by its name. The Lambda functions keep them as `functionBundling` says.
  keepNames: true,
  sourcemap: true,
  sourcesContent: false,
  banner: { js: ESM_REQUIRE_BANNER },
  alias: bundleAliases({ withoutZodLocales: false }),
  metafile: true,
  logLevel: 'warning',
};
/**
 * Lambda functions bundle the AWS SDK or leave it to the runtime as `functionBundling` says; the
 * triggerer's container bundles everything.
 */
function lambdaOptions(name: keyof typeof FUNCTION_ENTRIES): BuildOptions {
  return { ...COMMON, ...functionBuildOptions(name) };
}

export interface BundleTarget {
  name: string;
  entry: string;
  kind: 'lambda' | 'container';
  service: string;
}

export const BUNDLE_TARGETS: readonly BundleTarget[] = [
  ...(Object.entries(FUNCTION_ENTRIES) as [keyof typeof FUNCTION_ENTRIES, string][]).map(([name, entry]) => ({
    name,
    entry,
    kind: 'lambda' as const,
    service: SERVICE_NAMES[name],
  })),
  { name: 'triggerer', entry: TRIGGERER_ENTRY, kind: 'container', service: TRIGGERER_SERVICE_NAME },
];

export interface BundleSize {
  entry: string;
  kind: BundleTarget['kind'];
  /** The minified JavaScript, source map excluded (for the worker: with `dags/` stubbed out). */
  bytes: number;
  source_map_bytes: number;
  /** Worker only: the bundle with the project's DAGs in it, and their share. */
  with_dags_bytes?: number;
  dags_bytes?: number;
  /** Bytes in the output by package (`src/<module>` for our own code), largest first. */
  largest_inputs: Record<string, number>;
  zod_bytes: number;
  zod_locales_bytes: number;
  /** The AWS SDK packages imported from the runtime when the function loads. */
  sdk_imports: string[];
  /** Those imported from the runtime on first use (a dynamic `import()`), not at load. */
  sdk_lazy_imports: string[];
  under_target: boolean;
}

export const BUNDLE_TARGET_BYTES = 1024 * 1024;
export const COLD_IMPORT_TARGET_MS = 150;

/** Skips the DAG modules the worker's import template pulls in: the worker's own code alone. */
function stubDags(dagsFolder: string): Plugin {
  return {
    name: 'bench-stub-dags',
    setup(builder) {
      builder.onLoad({ filter: /\.ts$/ }, (args) =>
        args.path.startsWith(`${dagsFolder}/`) ? { contents: 'export {};', loader: 'ts' } : undefined,
      );
    },
  };
}

/** Bundles every function into `outdir/<name>/` as the CDK does and measures the output. */
export async function bundleFunctions(root: string, outdir: string): Promise<Record<string, BundleSize>> {
  const sizes: Record<string, BundleSize> = {};
  for (const target of BUNDLE_TARGETS) {
    const outfile = join(outdir, target.name, target.kind === 'lambda' ? 'index.mjs' : 'main.mjs');
    const options: BuildOptions = {
      ...(target.kind === 'lambda' ? lambdaOptions(target.name as keyof typeof FUNCTION_ENTRIES) : COMMON),
      entryPoints: [resolve(root, target.entry)],
      outfile,
      absWorkingDir: root,
    };
    let withDags: number | undefined;
    if (target.name === 'worker') {
      await build(options);
      withDags = statSync(outfile).size;
      options.plugins = [stubDags(resolve(root, 'dags'))];
    }
    const result = await build(options);
    const output = outputOf(result.metafile as Metafile, outfile, root);
    const bytes = statSync(outfile).size;
    const byPackage: Record<string, number> = {};
    let zod = 0;
    let zodLocales = 0;
    for (const [path, input] of Object.entries(output.inputs)) {
      const name = packageOf(path);
      byPackage[name] = (byPackage[name] ?? 0) + input.bytesInOutput;
      if (name === 'zod') zod += input.bytesInOutput;
      if (path.includes('node_modules/zod/') && path.includes('/locales/')) zodLocales += input.bytesInOutput;
    }
    sizes[target.name] = {
      entry: target.entry,
      kind: target.kind,
      bytes,
      source_map_bytes: statSync(`${outfile}.map`).size,
      ...(withDags === undefined ? {} : { with_dags_bytes: withDags, dags_bytes: withDags - bytes }),
      largest_inputs: Object.fromEntries(
        Object.entries(byPackage)
          .sort((a, b) => b[1] - a[1])
          .slice(0, 6),
      ),
      zod_bytes: zod,
      zod_locales_bytes: zodLocales,
      sdk_imports: sdkImports(output, (kind) => kind !== 'dynamic-import'),
      sdk_lazy_imports: sdkImports(output, (kind) => kind === 'dynamic-import'),
      under_target: bytes < BUNDLE_TARGET_BYTES,
    };
  }
  return sizes;
}

function outputOf(metafile: Metafile, outfile: string, root: string): Metafile['outputs'][string] {
  const entry = Object.entries(metafile.outputs).find(([path]) => resolve(root, path) === outfile);
  if (!entry) throw new Error(`bench/aws: esbuild's metafile has no output ${outfile}`);
  return entry[1];
}

function sdkImports(output: Metafile['outputs'][string], kind: (kind: string) => boolean): string[] {
  const paths = output.imports.filter((i) => i.external && i.path.startsWith('@aws-sdk/') && kind(i.kind));
  return [...new Set(paths.map((i) => i.path))].sort();
}

function packageOf(path: string): string {
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path.slice(path.lastIndexOf('node_modules/')));
  if (inModules?.[1]) return inModules[1];
  const parts = path.split('/');
  return parts[0] === 'src' ? `src/${parts[1]}` : (parts.slice(0, 2).join('/') ?? path);
}

/** Printed by the probe before its result, so log lines of the imported module are told apart. */
const PROBE_MARKER = '@@bench-aws-probe@@';

/**
 * Run in a fresh Node process per measurement: imports its argument and prints the time from the
 * process's start (`performance.now()` counts from it) to the import's end, and any network
 * connection attempted meanwhile or within 100 ms after (seen on Node's diagnostics channels).
 * The triggerer's entry waits for SIGTERM at top level: the probe sends it one as soon as it
 * listens, so the import ends when the entry has started and stopped (its `process.exit` then
 * only sets the exit code).
 */
const PROBE = `import dc from 'node:diagnostics_channel';
const network = [];
for (const name of ['net.client.socket', 'udp.socket', 'undici:request:create', 'http.client.request.start']) {
  dc.subscribe(name, (message) => {
    const socket = message?.socket;
    network.push(name + (socket?.remoteAddress ? ' ' + socket.remoteAddress : '') + (message?.request?.origin ? ' ' + message.request.origin : ''));
  });
}
const exit = process.exit.bind(process);
if (process.argv[3] === 'sigterm-on-listen') {
  process.on('newListener', (event) => { if (event === 'SIGTERM') setImmediate(() => process.emit('SIGTERM')); });
  // The entry exits once stopped: its import then ends instead, so the probe can print.
  process.exit = (code) => { if (code) process.exitCode = code; };
}
let error;
try { await import(process.argv[2]); } catch (e) { error = String(e?.stack ?? e).slice(0, 2000); }
const importedMs = performance.now();
let lazyMs;
if (process.env.PROBE_LAZY && !error) {
  try {
    for (const name of process.env.PROBE_LAZY.split(',')) await import(name);
    lazyMs = performance.now() - importedMs;
  } catch (e) { error = String(e?.stack ?? e).slice(0, 2000); }
}
await new Promise((resolve) => setTimeout(resolve, 100));
process.stdout.write('\\n${PROBE_MARKER}' + JSON.stringify({ importedMs, lazyMs, network, error }) + '\\n');
exit(0);
`;

interface ProbeResult {
  importedMs: number;
  /** The time the function's lazy runtime SDK imports then took (PROBE_LAZY). */
  lazyMs?: number;
  network: string[];
  error?: string;
}

export interface ColdImport {
  /** Median ms from process start to import done, over `runs` fresh processes. */
  median_ms: number;
  /** The median minus the empty module's (Node's own start) in the same variant. */
  net_ms: number;
  runs_ms: number[];
  /**
   * Median ms of importing the packages the function loads from the runtime on first use (its
   * `sdk_lazy_imports`), right after the bundle: what the first call that needs them pays.
   */
  lazy_import_ms?: number;
  network_attempts: string[];
  errors: string[];
}

export interface ColdImports {
  runs: number;
  /** `--enable-source-maps`, as the construct's NODE_OPTIONS (and the triggerer image) set it. */
  deployed: { baseline_ms: number; baseline_runs_ms: number[]; functions: Record<string, ColdImport> };
  /** The same bundles without source-map support: what `--enable-source-maps` costs. */
  without_source_maps: { baseline_ms: number; functions: Record<string, ColdImport> };
  /**
   * Only the AWS SDK packages a function imports from the runtime at load (as deployed); an empty
   * module for the functions that import none.
   */
  sdk_only: Record<string, ColdImport>;
}

/**
 * Cold import of each bundle in fresh processes, `runs` times, round-robin over the targets so
 * drift on a shared machine spreads evenly. The processes get a Lambda-like environment without
 * credentials: a region, the function's name and Powertools service, an empty HOME (no
 * ~/.aws), and the bundles resolve `@aws-sdk/*` from the project's node_modules as a function's
 * resolve from the runtime's.
 */
export function measureColdImports(
  outdir: string,
  root: string,
  sizes: Record<string, BundleSize>,
  runs: number,
): ColdImports {
  symlinkSync(join(root, 'node_modules'), join(outdir, 'node_modules'), 'dir');
  const probe = join(outdir, 'probe.mjs');
  writeFileSync(probe, PROBE);
  writeFileSync(join(outdir, 'empty.mjs'), 'export {};\n');
  const home = mkdtempSync(join(tmpdir(), 'updraft-bench-aws-home-'));
  const targets = BUNDLE_TARGETS.map((target) => ({
    ...target,
    file: join(outdir, target.name, target.kind === 'lambda' ? 'index.mjs' : 'main.mjs'),
  }));
  for (const target of targets) {
    const imports = sizes[target.name]?.sdk_imports ?? [];
    writeFileSync(
      join(outdir, `sdk-${target.name}.mjs`),
      imports.map((name) => `import '${name}';\n`).join(''),
    );
  }
  const envOf = (target: BundleTarget | undefined, lazy: boolean): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH,
    ...(lazy && target && (sizes[target.name]?.sdk_lazy_imports.length ?? 0) > 0
      ? { PROBE_LAZY: sizes[target.name]?.sdk_lazy_imports.join(',') }
      : {}),
    HOME: home,
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    ...(target?.kind === 'lambda'
      ? {
          AWS_LAMBDA_FUNCTION_NAME: target.service,
          AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
          POWERTOOLS_SERVICE_NAME: target.service,
          POWERTOOLS_METRICS_NAMESPACE: 'Updraft',
        }
      : {}),
    // The triggerer signs its calls with its task role's credentials and will not start without
    // some: dummy ones, and an API on a closed local port, so nothing leaves the machine.
    ...(target?.kind === 'container'
      ? {
          UPDRAFT_EXECUTION_API_URL: 'http://127.0.0.1:9/',
          AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
          AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
        }
      : {}),
  });
  const once = (
    file: string,
    target: BundleTarget | undefined,
    sourceMaps: boolean,
    lazy: boolean,
  ): ProbeResult => {
    const child = spawnSync(
      process.execPath,
      [
        ...(sourceMaps ? ['--enable-source-maps'] : []),
        probe,
        pathToFileURL(file).href,
        ...(target?.kind === 'container' ? ['sigterm-on-listen'] : []),
      ],
      { env: envOf(target, lazy), encoding: 'utf8', timeout: 60_000, cwd: dirname(file) },
    );
    const line = child.stdout?.split('\n').find((text) => text.startsWith(PROBE_MARKER));
    if (!line) {
      return {
        importedMs: Number.NaN,
        network: [],
        error: `probe of ${file} printed no result (status ${child.status}, signal ${child.signal}): ${child.stderr?.slice(0, 1000)}`,
      };
    }
    return JSON.parse(line.slice(PROBE_MARKER.length)) as ProbeResult;
  };

  type Job = {
    key: string;
    file: string;
    target: BundleTarget | undefined;
    sourceMaps: boolean;
    lazy?: boolean;
  };
  const jobs: Job[] = [
    { key: 'baseline', file: join(outdir, 'empty.mjs'), target: undefined, sourceMaps: true },
    { key: 'baseline/plain', file: join(outdir, 'empty.mjs'), target: undefined, sourceMaps: false },
    ...targets.flatMap((target) => [
      { key: `fn/${target.name}`, file: target.file, target, sourceMaps: true, lazy: true },
      { key: `plain/${target.name}`, file: target.file, target, sourceMaps: false },
      ...(target.kind === 'lambda'
        ? [
            {
              key: `sdk/${target.name}`,
              file: join(outdir, `sdk-${target.name}.mjs`),
              target,
              sourceMaps: true,
            },
          ]
        : []),
    ]),
  ];
  const results = new Map<string, ProbeResult[]>();
  try {
    for (let round = 0; round < runs; round += 1) {
      for (const job of jobs) {
        const list = results.get(job.key) ?? [];
        list.push(once(job.file, job.target, job.sourceMaps, job.lazy === true));
        results.set(job.key, list);
      }
    }
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
  const summarize = (key: string, baselineMs: number): ColdImport => {
    const list = results.get(key) ?? [];
    const times = list.map((result) => result.importedMs);
    const med = median(times);
    const lazy = list.flatMap((result) => (result.lazyMs === undefined ? [] : [result.lazyMs]));
    return {
      median_ms: round(med, 1),
      net_ms: round(med - baselineMs, 1),
      runs_ms: times.map((ms) => round(ms, 1)),
      ...(lazy.length > 0 ? { lazy_import_ms: round(median(lazy), 1) } : {}),
      network_attempts: [...new Set(list.flatMap((result) => result.network))],
      errors: [...new Set(list.flatMap((result) => (result.error ? [result.error] : [])))],
    };
  };
  const baseline = median((results.get('baseline') ?? []).map((result) => result.importedMs));
  const plainBaseline = median((results.get('baseline/plain') ?? []).map((result) => result.importedMs));
  const byTarget = (prefix: string, base: number, kinds: BundleTarget['kind'][]) =>
    Object.fromEntries(
      targets
        .filter((t) => kinds.includes(t.kind))
        .map((t) => [t.name, summarize(`${prefix}/${t.name}`, base)]),
    );
  return {
    runs,
    deployed: {
      baseline_ms: round(baseline, 1),
      baseline_runs_ms: (results.get('baseline') ?? []).map((result) => round(result.importedMs, 1)),
      functions: byTarget('fn', baseline, ['lambda', 'container']),
    },
    without_source_maps: {
      baseline_ms: round(plainBaseline, 1),
      functions: byTarget('plain', plainBaseline, ['lambda', 'container']),
    },
    sdk_only: byTarget('sdk', baseline, ['lambda']),
  };
}

export function median(values: readonly number[]): number {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** A fresh directory for the bundles (the caller removes it). */
export function bundleDirectory(): string {
  return mkdtempSync(join(tmpdir(), 'updraft-bench-aws-'));
}

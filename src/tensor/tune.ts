// Autotuning: time a family's candidates on the shapes a model meets and keep the fastest per
// (family, dtype, format, shape class) in a cache file per adapter and driver.
//
// Ops are synchronous and timing is not, so tuning happens ahead of the work: the caller runs one
// step so the planner sees every shape (plannerSeen()), then tuneSeen() times the candidates of each
// key that the cache lacks, with timestamp queries (each dispatch in its own pass; Dawn's timestamp
// quantisation is off, see device.ts) or the wall clock where the adapter has no timestamps. Tuning is
// bounded: at most `maxCandidates` per key (default first, then the static pick of each other variant,
// then the rest), configurations tagged 'big-gpu' only on real GPUs, a candidate whose warm-up is
// already slower than `slowFactor` times the best is dropped untimed, and a wall-clock budget.
//
// Cache file: $XDG_CACHE_HOME/ticketlab/kernels-<adapterKey>.json (else ~/.cache/ticketlab/), written
// atomically; { version, adapter, entries: { key: { choice, ms: { id: ms }, at } } }.
import * as os from 'node:os';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { writeJsonAtomicSync } from '../io/atomic.js';
import { device, type DeviceInfo } from './device.js';
import {
  adapterKey,
  candidatesOf,
  defaultPlan,
  deviceTraits,
  familySpec,
  plannerSeen,
  setTunedChoices,
  suitableCandidates,
  withKernels,
  type PlanKey,
  type SeenQuery,
} from './plan.js';
import { queue } from './queue.js';
import type { Tensor } from './tensor.js';

export const TUNE_CACHE_VERSION = 1;

/** Tuning order by family: where a step's time goes first (convolutions, then matmuls, ...). */
const FAMILY_ORDER = ['conv', 'matmul', 'norm', 'reduce', 'map'];

export interface TuneEntry {
  choice: string;
  /** Measured ms per run of each timed candidate. */
  ms: Record<string, number>;
  at: string;
}

export interface TuneCacheFile {
  version: number;
  adapter: Pick<DeviceInfo, 'vendor' | 'architecture' | 'device' | 'description' | 'backend'>;
  entries: Record<PlanKey, TuneEntry>;
}

/** $XDG_CACHE_HOME/ticketlab, else ~/.cache/ticketlab. */
export function tuneCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(os.homedir(), '.cache');
  return path.join(base, 'ticketlab');
}

export function tuneCachePath(info: DeviceInfo = device().info, dir = tuneCacheDir()): string {
  return path.join(dir, `kernels-${adapterKey(info)}.json`);
}

function adapterOf(info: DeviceInfo): TuneCacheFile['adapter'] {
  return { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description, backend: info.backend };
}

/** Reads the cache of this adapter (an empty one when absent; a one-line error naming a bad file). */
export function readTuneCache(file = tuneCachePath(), info: DeviceInfo = device().info): TuneCacheFile {
  const empty: TuneCacheFile = { version: TUNE_CACHE_VERSION, adapter: adapterOf(info), entries: {} };
  if (!fs.existsSync(file)) return empty;
  let parsed: TuneCacheFile;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as TuneCacheFile;
  } catch (e) {
    throw new Error(`tuning cache ${file}: not valid JSON (${(e as Error).message.split('\n')[0]}); delete it to re-tune`);
  }
  // Another version's cache is ignored (and replaced on the next write), not an error.
  if (parsed?.version !== TUNE_CACHE_VERSION || typeof parsed.entries !== 'object' || parsed.entries === null) return empty;
  return parsed;
}

export function writeTuneCache(cache: TuneCacheFile, file = tuneCachePath()): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeJsonAtomicSync(file, cache);
}

/** Installs this adapter's cached choices in the planner; returns how many. */
export function useTuneCache(file = tuneCachePath()): number {
  const c = readTuneCache(file);
  setTunedChoices(Object.fromEntries(Object.entries(c.entries).map(([k, e]) => [k, e.choice])));
  return Object.keys(c.entries).length;
}

/** Returns the ms of one `run()`, measured over `reps` repetitions (after the tuner's warm-up). */
export type TuneTimer = (run: () => void, reps: number, what: { family: string; id: string; key: PlanKey }) => Promise<number>;

/**
 * GPU time from timestamp queries (sum of the dispatches' spans), else the wall clock; the minimum over
 * the repetitions, since a preempted run (software adapters share the CPU with everything else) only
 * ever adds time.
 */
export const gpuTimer: TuneTimer = async (run, reps) => {
  await queue.sync();
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    if (device().hasTimestamps) {
      queue.startProfile();
      run();
      const rows = await queue.stopProfileRows();
      best = Math.min(best, rows.reduce((s, r) => s + r.ms, 0));
    } else {
      const t0 = performance.now();
      run();
      await queue.sync();
      best = Math.min(best, performance.now() - t0);
    }
  }
  return best;
};

export interface TuneOptions {
  /** Candidates timed per key (default 2 on software adapters, 8 on GPUs). */
  maxCandidates?: number;
  /** Timed repetitions per candidate after one warm-up (default 3 on software adapters, 5 on GPUs). */
  reps?: number;
  /** Time 'big-gpu' configurations too (default: only on GPUs). */
  includeBig?: boolean;
  /** Drop a candidate whose warm-up wall time exceeds this factor times the best so far (default 3). */
  slowFactor?: number;
  /** Stop starting new keys after this many seconds (default 50). */
  budgetS?: number;
  /** Re-time keys the cache already has. */
  force?: boolean;
  timer?: TuneTimer;
  /** Cache file (default: this adapter's under tuneCacheDir()). */
  file?: string;
  log?: (line: string) => void;
}

export interface TuneReport {
  /** Keys timed now: key -> entry. */
  tuned: Record<PlanKey, TuneEntry>;
  /** Keys the cache already had. */
  cached: number;
  /** Keys left to the static rule (budget spent, no bench hook, one candidate). */
  skipped: PlanKey[];
  seconds: number;
  file: string;
}

/** Which candidates of a key get timed, most promising first. */
export function tuneCandidates(q: SeenQuery, o: TuneOptions = {}): string[] {
  const soft = deviceTraits().isSoftware;
  const includeBig = o.includeBig ?? !soft;
  const max = o.maxCandidates ?? (soft ? 2 : 8);
  const suits = suitableCandidates(q.family, q.geometry, q.query).filter((c) => includeBig || !(c.tags ?? []).includes('big-gpu'));
  const ids = suits.map((c) => c.id);
  const order: string[] = [defaultPlan(q.family, q.geometry, undefined, q.query).id];
  for (const v of new Set(suits.map((c) => c.variant))) {
    try {
      order.push(defaultPlan(q.family, q.geometry, v, q.query).id);
    } catch {
      // the variant's static rule may want an excluded configuration: its other tiles follow below
    }
  }
  order.push(...ids);
  return [...new Set(order.filter((id) => ids.includes(id)))].slice(0, max);
}

/** Times the candidates of every key met so far (or `seen`) that the cache lacks, and saves the winners. */
export async function tuneSeen(seen: SeenQuery[] = plannerSeen(), o: TuneOptions = {}): Promise<TuneReport> {
  const t0 = performance.now();
  const soft = deviceTraits().isSoftware;
  const file = o.file ?? tuneCachePath();
  const cache = readTuneCache(file);
  const timer = o.timer ?? gpuTimer;
  const reps = o.reps ?? (soft ? 3 : 5);
  const slow = o.slowFactor ?? 3;
  const budgetMs = (o.budgetS ?? 50) * 1000;
  const report: TuneReport = { tuned: {}, cached: 0, skipped: [], seconds: 0, file };
  // The costliest families first, so a spent budget leaves the cheap ones to the static rules.
  const rank = (f: string) => {
    const i = FAMILY_ORDER.findIndex((p) => f === p || f.startsWith(`${p}.`));
    return i < 0 ? FAMILY_ORDER.length : i;
  };
  seen = [...seen].sort((a, b) => rank(a.family) - rank(b.family));
  const keyOf = (q: SeenQuery) => `${q.family}|${q.query.dtype ?? 'f32'}|${q.query.format ?? 'dense'}|${q.shapeClass}`;
  for (const q of seen) {
    const key = keyOf(q);
    if (cache.entries[key] && !o.force) {
      report.cached++;
      continue;
    }
    const spec = familySpec(q.family);
    const ids = tuneCandidates(q, o);
    if (!spec?.bench || ids.length < 2 || performance.now() - t0 > budgetMs) {
      report.skipped.push(key);
      continue;
    }
    const bc = spec.bench(q.geometry, defaultPlan(q.family, q.geometry, undefined, q.query));
    const ms: Record<string, number> = {};
    let bestWall = Infinity;
    try {
      for (const id of ids) {
        const run = () => withKernels(`${q.family}:${id}`, () => bc.run());
        // Warm-up: compiles the pipeline; its wall time screens out hopeless candidates cheaply.
        const w0 = performance.now();
        run();
        await queue.sync();
        const wall = performance.now() - w0;
        if (wall > slow * bestWall && Object.keys(ms).length) continue;
        ms[id] = await timer(run, reps, { family: q.family, id, key });
        bestWall = Math.min(bestWall, wall);
      }
    } finally {
      bc.dispose();
    }
    const choice = Object.entries(ms).sort((a, b) => a[1] - b[1])[0][0];
    const entry: TuneEntry = { choice, ms, at: new Date().toISOString() };
    cache.entries[key] = entry;
    report.tuned[key] = entry;
    o.log?.(`${key}: ${choice} (${Object.entries(ms).map(([id, t]) => `${id} ${t.toFixed(3)} ms`).join(', ')})`);
    // Written after every key: an interrupted tune keeps what it measured.
    writeTuneCache(cache, file);
  }
  setTunedChoices(Object.fromEntries(Object.entries(cache.entries).map(([k, e]) => [k, e.choice])));
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

/** Candidate ids of every registered family (for help texts and docs). */
export function describeCandidates(family: string): string {
  return candidatesOf(family)
    .map((c) => c.id + ((c.tags ?? []).includes('big-gpu') ? '*' : ''))
    .join(', ');
}

// ---------------------------------------------------------------------------------------------
// Interleaved timing of whole operations (the pruned layers' candidates under their real masks,
// sparse-plan.ts planLayer; bench/sparsity.ts)

/**
 * What a timing measures. 'wall': elapsed ms. 'cpu': this process's CPU ms (user + system, all
 * threads). A software adapter (lavapipe) runs the kernels on this process's threads, so its CPU time
 * is the work done and stays meaningful when other processes compete for the cores, where wall-clock
 * samples of a few ms swing by several times; on a GPU only wall-clock means anything.
 */
export type TimeMetric = 'wall' | 'cpu';

/** CPU time on software adapters, wall-clock on GPUs (see TimeMetric). */
export function defaultMetric(): TimeMetric {
  return deviceTraits().isSoftware ? 'cpu' : 'wall';
}

/** ms per run of `fn`, run `n` times back to back (work submitted and finished), in `metric`. */
export async function timeRuns(fn: () => Tensor, n = 1, metric: TimeMetric = defaultMetric()): Promise<number> {
  await queue.sync();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn().dispose();
  await queue.sync();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return (metric === 'cpu' ? (c.user + c.system) / 1000 : wall) / n;
}

/** A timed sample lasts at least this long (short kernels are repeated), so timer and submit noise stay small. */
const SAMPLE_MS = 15;

/**
 * ms per run of each entry of `runs`: one untimed run each (pipeline compile, and the repeat count for
 * a sample of >= SAMPLE_MS), then `reps` rounds in which the entries run interleaved (alternating
 * order). Each keeps its fastest sample: on a shared machine other work only ever adds time, so the
 * minimum is the estimate least disturbed by it, and interleaving keeps the ratios fair.
 */
export async function timeInterleaved<K extends string>(runs: ReadonlyMap<K, () => Tensor>, reps = 3, metric: TimeMetric = defaultMetric()): Promise<Map<K, number>> {
  const repeat = new Map<K, number>();
  const best = new Map<K, number>();
  for (const [k, fn] of runs) {
    await timeRuns(fn, 1, metric);
    const ms = await timeRuns(fn, 1, metric);
    repeat.set(k, Math.max(1, Math.min(32, Math.ceil(SAMPLE_MS / Math.max(ms, 0.01)))));
    best.set(k, ms);
  }
  const keys = [...runs.keys()];
  for (let r = 0; r < reps; r++) {
    for (const k of r % 2 ? [...keys].reverse() : keys) best.set(k, Math.min(best.get(k)!, await timeRuns(runs.get(k)!, repeat.get(k)!, metric)));
  }
  return best;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// Aggregation over seeds: runs whose settings differ only in the training seed (a sweep's
// `<model>-<data>-<scope>-s<seed>` folders) form one group; each (group, method, level) becomes one row
// with mean, sample sd and n of the metrics, one line with a +-1 sd band in the plots, and one verdict
// that accounts for the spread:
//
//   matches dense   mean(ticket) >= mean(dense) - max(1 point, sd(dense))
//                   (within the tolerance, or within the dense model's own seed-to-seed spread)
//   beats controls  mean(ticket) - sd(ticket) > mean(control) + sd(control), for every control kind
//                   trained at that level (the +-1 sd intervals do not overlap)
//   winning ticket  matches dense and (no control, or beats every control)
//
// With one seed (sd 0) this is exactly the single-run rule of run-report.ts. The rule is deliberately
// simple and conservative towards controls; with n = 3 a t-test has little power, so the report shows
// mean +- sd and n next to every verdict for readers to judge.
import type { CollectedRun, LevelRow } from './collect.js';
import { methodRank } from './collect.js';

export interface Stat {
  mean: number;
  /** Sample standard deviation (n - 1); 0 for one value. */
  sd: number;
  n: number;
}

export function stat(xs: readonly number[]): Stat | null {
  if (!xs.length) return null;
  const mean = xs.reduce((s, v) => s + v, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((s, v) => s + (v - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd, n: xs.length };
}

export interface SeedGroup {
  /** The runs' common name without the seed suffix. */
  name: string;
  model: string;
  data: string;
  scope: string | null;
  runs: CollectedRun[];
  seeds: number[];
}

export interface SeedRow {
  group: SeedGroup;
  method: string;
  level: number;
  /** Level folders in the group with this method and level (finished or not). */
  folders: number;
  /** Over finished folders only. */
  sparsity: Stat | null;
  testAccuracy: Stat | null;
  testAuc: Stat | null;
  testBalancedAccuracy: Stat | null;
  bestValAccuracy: Stat | null;
  epochsToBest: Stat | null;
}

export interface SeedVerdict {
  group: SeedGroup;
  method: string;
  level: number;
  ticket: Stat;
  dense: Stat;
  /** ticket mean - dense mean, in points. */
  deltaPoints: number;
  /** The tolerance used: max(1 point, dense sd), in points. */
  tolerancePoints: number;
  matchesDense: boolean;
  controls: { kind: string; stat: Stat }[];
  beatsControls: boolean | null;
  winning: boolean;
}

function seedOf(run: CollectedRun): number {
  const t = run.config.train as Record<string, unknown> | undefined;
  return typeof t?.seed === 'number' ? t.seed : 0;
}

/** The run's identity without its seed: what must be equal for runs to be seeds of one cell. */
function identity(run: CollectedRun): string {
  const { train, ...rest } = run.config as Record<string, unknown> & { train?: Record<string, unknown> };
  const t = { ...(train ?? {}) };
  delete t.seed;
  const sorted = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
  return JSON.stringify([sorted(rest), sorted(t)]);
}

/** Groups runs that differ only in the seed, in first-seen order. */
export function seedGroups(runs: readonly CollectedRun[]): SeedGroup[] {
  const m = new Map<string, SeedGroup>();
  for (const r of runs) {
    const key = identity(r);
    let g = m.get(key);
    if (!g) {
      g = { name: r.name.replace(/-s\d+$/, ''), model: r.model, data: r.data, scope: r.scope, runs: [], seeds: [] };
      m.set(key, g);
    }
    g.runs.push(r);
    g.seeds.push(seedOf(r));
  }
  return [...m.values()];
}

/** Whether the runs hold repeated seeds (some group has more than one run): the report then aggregates. */
export function hasSeeds(groups: readonly SeedGroup[]): boolean {
  return groups.some((g) => g.runs.length > 1);
}

const finishedValues = (rows: readonly LevelRow[], key: 'sparsity' | 'testAccuracy' | 'testAuc' | 'testBalancedAccuracy' | 'bestValAccuracy' | 'epochsToBest') =>
  stat(rows.filter((r) => r.finished && r[key] !== null).map((r) => r[key] as number));

/** One row per group, method and level. */
export function seedRows(groups: readonly SeedGroup[]): SeedRow[] {
  return groups.flatMap((g) => {
    const rows = g.runs.flatMap((r) => r.rows);
    const keys = [...new Set(rows.map((r) => `${r.method}\0${r.level}`))];
    return keys
      .map((k) => {
        const [method, level] = [k.split('\0')[0], Number(k.split('\0')[1])];
        const rs = rows.filter((r) => r.method === method && r.level === level);
        return {
          group: g,
          method,
          level,
          folders: rs.length,
          sparsity: finishedValues(rs, 'sparsity'),
          testAccuracy: finishedValues(rs, 'testAccuracy'),
          testAuc: finishedValues(rs, 'testAuc'),
          testBalancedAccuracy: finishedValues(rs, 'testBalancedAccuracy'),
          bestValAccuracy: finishedValues(rs, 'bestValAccuracy'),
          epochsToBest: finishedValues(rs, 'epochsToBest'),
        };
      })
      .sort((a, b) => methodRank(a.method) - methodRank(b.method) || a.method.localeCompare(b.method) || a.level - b.level);
  });
}

const isPruned = (m: string) => m.startsWith('imp-') || m.startsWith('oneshot-');
const isDense = (r: SeedRow) => r.level === 0 && (r.method === 'dense' || r.method.startsWith('imp-'));

/** The verdict of every pruned level (k >= 1) with a finished test accuracy and a finished dense level. */
export function seedVerdicts(rows: readonly SeedRow[], tolerancePoints = 1): SeedVerdict[] {
  const out: SeedVerdict[] = [];
  for (const r of rows) {
    if (!isPruned(r.method) || r.level < 1 || !r.testAccuracy) continue;
    const dense = rows.find((d) => d.group === r.group && isDense(d))?.testAccuracy;
    if (!dense) continue;
    const controls = rows
      .filter((c) => c.group === r.group && c.level === r.level && !isPruned(c.method) && c.method !== 'dense' && c.testAccuracy)
      .map((c) => ({ kind: c.method, stat: c.testAccuracy! }));
    const t = r.testAccuracy;
    const tol = Math.max(tolerancePoints, dense.sd * 100);
    const deltaPoints = (t.mean - dense.mean) * 100;
    const matchesDense = deltaPoints >= -tol - 1e-9;
    const beatsControls = controls.length ? controls.every((c) => t.mean - t.sd > c.stat.mean + c.stat.sd) : null;
    out.push({ group: r.group, method: r.method, level: r.level, ticket: t, dense, deltaPoints, tolerancePoints: tol, matchesDense, controls, beatsControls, winning: matchesDense && beatsControls !== false });
  }
  return out;
}

/** summary.csv's columns in a multi-seed report. */
export const SEED_SUMMARY_COLUMNS = [
  'model',
  'data',
  'group',
  'method',
  'level',
  'n',
  'seeds',
  'sparsity',
  'test_accuracy_mean',
  'test_accuracy_sd',
  'test_auc_mean',
  'test_auc_sd',
  'test_balanced_accuracy_mean',
  'test_balanced_accuracy_sd',
  'best_val_accuracy_mean',
  'best_val_accuracy_sd',
  'epochs_to_best_mean',
  'winning_ticket',
  'status',
] as const;

const r6 = (v: number | undefined | null): number | null => (v === undefined || v === null ? null : Math.round(v * 1e6) / 1e6);

export function seedSummaryRows(rows: readonly SeedRow[], verdicts: readonly SeedVerdict[]): Record<(typeof SEED_SUMMARY_COLUMNS)[number], string | number | null>[] {
  const verdictOf = new Map(verdicts.map((v) => [`${v.group.name}\0${v.method}\0${v.level}`, v]));
  return rows.map((r) => {
    const v = verdictOf.get(`${r.group.name}\0${r.method}\0${r.level}`);
    const n = r.testAccuracy?.n ?? 0;
    return {
      model: r.group.model,
      data: r.group.data,
      group: r.group.name,
      method: r.method,
      level: r.level,
      n,
      seeds: r.group.seeds.join(' '),
      sparsity: r6(r.sparsity?.mean),
      test_accuracy_mean: r6(r.testAccuracy?.mean),
      test_accuracy_sd: r6(r.testAccuracy?.sd),
      test_auc_mean: r6(r.testAuc?.mean),
      test_auc_sd: r6(r.testAuc?.sd),
      test_balanced_accuracy_mean: r6(r.testBalancedAccuracy?.mean),
      test_balanced_accuracy_sd: r6(r.testBalancedAccuracy?.sd),
      best_val_accuracy_mean: r6(r.bestValAccuracy?.mean),
      best_val_accuracy_sd: r6(r.bestValAccuracy?.sd),
      epochs_to_best_mean: r6(r.epochsToBest?.mean),
      winning_ticket: v ? (v.winning ? 'yes' : 'no') : isDense(r) && n > 0 ? 'dense' : null,
      status: `${n}/${r.folders} finished`,
    };
  });
}

export type SeedMetric = 'testAccuracy' | 'testAuc';

/** A method's line over sparsity for one group: mean points and [x, mean - sd, mean + sd] band, from the dense point. */
export function seedSeries(rows: readonly SeedRow[], group: SeedGroup, method: string, metric: SeedMetric, scale: number): { points: [number, number][]; band: [number, number, number][] } {
  const dense = rows.find((d) => d.group === group && isDense(d));
  const own = rows.filter((r) => r.group === group && r.method === method && r.level >= 1 && r[metric] && r.sparsity);
  const pts = [...(dense?.[metric] ? [{ x: 0, s: dense[metric]! }] : []), ...own.map((r) => ({ x: r.sparsity!.mean * 100, s: r[metric]! }))].sort((a, b) => a.x - b.x);
  return {
    points: pts.map((p) => [p.x, p.s.mean * scale]),
    band: pts.map((p) => [p.x, (p.s.mean - p.s.sd) * scale, (p.s.mean + p.s.sd) * scale]),
  };
}

/** "81.2 +- 1.3% (n=3)" */
export function formatStat(s: Stat | null, percent = true): string {
  if (!s) return '';
  return percent ? `${(s.mean * 100).toFixed(2)} +- ${(s.sd * 100).toFixed(2)}% (n=${s.n})` : `${s.mean.toFixed(4)} +- ${s.sd.toFixed(4)} (n=${s.n})`;
}

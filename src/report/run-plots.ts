// The run report's plots: accuracy/AUC vs sparsity per model and dataset (with seed bands), the overview
// over several models, and per-level training curves. report/run-report.ts assembles them.
import { linePlot, PALETTE, type LineSeries, type MarkerShape } from './svg-plot.js';
import { denseRow, isControl, methodRank, type CollectedRun } from './collect.js';
import { seedSeries, type SeedRow } from './seeds.js';

export interface Group {
  key: string;
  model: string;
  data: string;
  runs: CollectedRun[];
}

export function groupsOf(runs: readonly CollectedRun[]): Group[] {
  const m = new Map<string, Group>();
  for (const r of runs) {
    const key = `${r.model}\0${r.data}`;
    if (!m.has(key)) m.set(key, { key, model: r.model, data: r.data, runs: [] });
    m.get(key)!.runs.push(r);
  }
  return [...m.values()];
}

export type Metric = 'testAccuracy' | 'testAuc';

export const METHOD_COLORS: Record<string, string> = {
  'imp-global': PALETTE[0],
  'imp-layer': PALETTE[1],
  'oneshot-global': PALETTE[2],
  'oneshot-layer': PALETTE[3],
  reinit: PALETTE[4],
  random_prune: PALETTE[5],
  dense: PALETTE[6],
};

export interface RawSeries {
  method: string;
  run: CollectedRun;
  points: [number, number][];
}

/** Each method of each run as points (sparsity %, metric x scale), starting at the run's dense point. */
export function methodSeries(run: CollectedRun, metric: Metric, scale: number, only?: (method: string) => boolean): RawSeries[] {
  const dense = denseRow(run);
  const densePt: [number, number] | null = dense && dense[metric] !== null ? [0, (dense[metric] as number) * scale] : null;
  const methods = [...new Set(run.rows.map((r) => r.method))].filter((m) => !only || only(m)).sort((a, b) => methodRank(a) - methodRank(b) || a.localeCompare(b));
  const out: RawSeries[] = [];
  for (const method of methods) {
    const own = run.rows
      .filter((r) => r.method === method && r.level >= 1 && r.finished && r.sparsity !== null && r[metric] !== null)
      .map((r): [number, number] => [(r.sparsity as number) * 100, (r[metric] as number) * scale])
      .sort((a, b) => a[0] - b[0]);
    const isMain = method.startsWith('imp-') || method === 'dense';
    if (!own.length && !(isMain && densePt)) continue;
    out.push({ method, run, points: densePt ? [densePt, ...own] : own });
  }
  return out;
}

/** Series names unique within one plot: the method, then its run's scope, then the run's name. */
export function uniqueNames(items: readonly { base: string; run: CollectedRun }[]): string[] {
  const names = items.map((i) => i.base);
  const dup = (arr: string[]) => arr.map((n) => arr.filter((x) => x === n).length > 1);
  let d = dup(names);
  const withScope = names.map((n, i) => (d[i] && items[i].run.scope && !n.endsWith(items[i].run.scope!) ? `${n} (${items[i].run.scope})` : n));
  d = dup(withScope);
  return withScope.map((n, i) => (d[i] ? `${n} [${items[i].run.name}]` : n));
}

export const MARKER_BY_SCOPE: Record<string, MarkerShape> = { global: 'circle', layer: 'square' };

export function groupPlot(g: Group, metric: Metric): string {
  const scale = metric === 'testAccuracy' ? 100 : 1;
  const raw = g.runs.flatMap((r) => methodSeries(r, metric, scale));
  const names = uniqueNames(raw.map((s) => ({ base: s.method, run: s.run })));
  const series: LineSeries[] = raw.map((s, i) => ({
    name: names[i],
    points: s.points,
    color: METHOD_COLORS[s.method] ?? PALETTE[7],
    dashed: isControl(s.method),
    marker: s.run.scope ? MARKER_BY_SCOPE[s.run.scope] : 'diamond',
  }));
  return sparsityPlot(`${g.model} on ${g.data}: ${metric === 'testAccuracy' ? 'test accuracy' : 'test AUC'} vs sparsity`, metric, series);
}

/** Over seeds: one line per seed group and method (mean), with a +-1 sd band. */
export function seedGroupPlot(g: Group, rows: readonly SeedRow[], metric: Metric, only?: (method: string) => boolean, title?: string, colorOf?: (gi: number, method: string) => string): string {
  const scale = metric === 'testAccuracy' ? 100 : 1;
  const groups = [...new Set(rows.filter((r) => g.runs.some((run) => r.group.runs.includes(run))).map((r) => r.group))];
  const series: LineSeries[] = [];
  groups.forEach((sg, gi) => {
    const methods = [...new Set(rows.filter((r) => r.group === sg).map((r) => r.method))].filter((m) => !only || only(m)).sort((a, b) => methodRank(a) - methodRank(b) || a.localeCompare(b));
    for (const method of methods) {
      const { points, band } = seedSeries(rows, sg, method, metric, scale);
      if (!points.length) continue;
      const n = Math.max(...rows.filter((r) => r.group === sg && r.method === method).map((r) => r.testAccuracy?.n ?? 0));
      series.push({
        name: `${groups.length > 1 || colorOf ? `${sg.name} ` : ''}${method} (n=${n})`,
        points,
        band,
        color: colorOf ? colorOf(gi, method) : (METHOD_COLORS[method] ?? PALETTE[7]),
        dashed: colorOf ? method === 'imp-layer' : isControl(method),
        marker: sg.scope ? MARKER_BY_SCOPE[sg.scope] : 'diamond',
      });
    }
  });
  const what = metric === 'testAccuracy' ? 'test accuracy' : 'test AUC';
  return sparsityPlot(title ?? `${g.model} on ${g.data}: ${what} vs sparsity (mean +-1 sd over seeds)`, metric, series);
}

export function overviewPlot(groups: readonly Group[], metric: Metric): string {
  const scale = metric === 'testAccuracy' ? 100 : 1;
  const series: LineSeries[] = [];
  const markers: MarkerShape[] = ['circle', 'square', 'triangle', 'diamond', 'triangle-down', 'cross'];
  groups.forEach((g, gi) => {
    const raw = g.runs.flatMap((r) => methodSeries(r, metric, scale, (m) => m.startsWith('imp-') || m === 'dense'));
    const names = uniqueNames(raw.map((s) => ({ base: s.method, run: s.run })));
    raw.forEach((s, i) =>
      series.push({
        name: `${g.model} ${g.data} ${names[i]}`,
        points: s.points,
        color: PALETTE[gi % PALETTE.length],
        dashed: s.method === 'imp-layer',
        marker: markers[gi % markers.length],
      }),
    );
  });
  return sparsityPlot(`${metric === 'testAccuracy' ? 'Test accuracy' : 'Test AUC'} vs sparsity (IMP; dashed = per-layer)`, metric, series);
}

export function sparsityPlot(title: string, metric: Metric, series: LineSeries[]): string {
  const maxX = Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[0])));
  return linePlot({
    title,
    xLabel: 'sparsity (% of prunable weights removed)',
    yLabel: metric === 'testAccuracy' ? 'test accuracy (%)' : 'test ROC AUC',
    series,
    xRange: [0, Math.max(10, Math.ceil(maxX / 10) * 10)],
    xTickFormat: (v) => `${v}%`,
    yTickFormat: metric === 'testAccuracy' ? (v) => `${v}%` : undefined,
  });
}

export function curvePlots(run: CollectedRun): { method: string; svg: string }[] {
  const methods = [...new Set(run.rows.map((r) => r.method))].sort((a, b) => methodRank(a) - methodRank(b) || a.localeCompare(b));
  const out: { method: string; svg: string }[] = [];
  for (const method of methods) {
    const levels = run.rows.filter((r) => r.method === method && r.curve.some((p) => p.valAccuracy !== null));
    if (!levels.length) continue;
    const maxEpoch = Math.max(...levels.flatMap((l) => l.curve.map((p) => p.epoch)));
    const svg = linePlot({
      // The run's name keeps titles (and so the charts' ids) distinct across runs on one page.
      title: `${run.name}: ${method}`,
      xLabel: 'epoch',
      yLabel: 'val accuracy (%)',
      width: 520,
      height: 320,
      xTicks: maxEpoch <= 15 ? Array.from({ length: maxEpoch }, (_, i) => i + 1) : undefined,
      yTickFormat: (v) => `${v}%`,
      series: levels.map((l) => ({
        name: `level ${l.level}, ${l.level === 0 && l.sparsity === 0 ? 'dense' : l.sparsity === null ? '?' : `${(l.sparsity * 100).toFixed(1)}%`}${l.finished ? '' : ' (partial)'}`,
        points: l.curve.filter((p) => p.valAccuracy !== null).map((p): [number, number] => [p.epoch, (p.valAccuracy as number) * 100]),
        dashed: !l.finished,
      })),
    });
    out.push({ method, svg });
  }
  return out;
}

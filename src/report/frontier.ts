// The granularity frontier: for runs pruned at different granularities (a sweep's "granularities"),
// test accuracy against density and against measured milliseconds per training step, mean +- sd over
// seeds: the accuracy a user gives up for the time a granularity saves.
//
// Time per step comes from what every level already records: metrics.jsonl's per-epoch `seconds`
// (wall clock of the epoch's training steps, data loading and the end-of-epoch weight readback;
// validation and --bn-reestimate excluded) divided by the epoch's steps, the median over the level's
// epochs. It is not a GPU-only time, and on a shared machine it carries the other processes' load:
// compare granularities within one report (same machine, same hour), and prefer `ticketlab profile
// --run` for per-layer GPU time. The kernels a level ran (`--kernels dense|sparse|auto`) decide
// whether pruned weights cost time at all; with dense kernels every level costs the same.
import * as fs from 'node:fs';
import { readJsonlSync } from '../io/jsonl.js';
import { RUN_FILES, runFile } from '../io/run-paths.js';
import { toCsv, type CsvRow } from '../util/csv.js';
import { htmlTable, type ColumnSpec, type TableRow } from '../util/table.js';
import type { CollectedRun, LevelRow } from './collect.js';
import { figure, figureRow, scrollable, type ReportSection } from './html.js';
import { stat, formatStat, type Stat } from './seeds.js';
import { linePlot, PALETTE, type LineSeries } from './svg-plot.js';

/** ms per training step of one level: median over its epochs of seconds * 1000 / steps; null without epochs. */
export function levelStepMs(levelDir: string): number | null {
  const file = runFile(levelDir, 'metrics');
  if (!fs.existsSync(file)) return null;
  const per: number[] = [];
  let prevStep = 0;
  for (const r of readJsonlSync<{ step?: unknown; seconds?: unknown }>(file).records) {
    if (typeof r.step !== 'number' || typeof r.seconds !== 'number') continue;
    const steps = r.step - prevStep;
    prevStep = r.step;
    if (steps > 0 && r.seconds > 0) per.push((r.seconds * 1000) / steps);
  }
  if (!per.length) return null;
  per.sort((a, b) => a - b);
  const mid = per.length >> 1;
  return per.length % 2 ? per[mid] : (per[mid - 1] + per[mid]) / 2;
}

/** One point of the frontier: a granularity's level over seeds. */
export interface FrontierRow {
  model: string;
  data: string;
  granularity: string;
  method: string;
  level: number;
  /** Kept fraction of the prunable weights (1 - sparsity), as achieved. */
  density: Stat;
  testAccuracy: Stat;
  msPerStep: Stat | null;
}

function granularityOfRun(run: CollectedRun): string {
  return typeof run.config.granularity === 'string' ? run.config.granularity : 'weight';
}

/** Whether the runs hold a granularity other than 'weight' (the section is shown then). */
export function hasGranularities(runs: readonly CollectedRun[]): boolean {
  return runs.some((r) => granularityOfRun(r) !== 'weight');
}

/**
 * Frontier rows: IMP levels (and the dense level 0, shared by every granularity) of each model, data
 * and granularity, over the runs' seeds; finished levels only.
 */
export function frontierRows(runs: readonly CollectedRun[]): FrontierRow[] {
  const cells = new Map<string, { model: string; data: string; granularity: string; method: string; level: number; rows: LevelRow[] }>();
  for (const run of runs) {
    const g = granularityOfRun(run);
    for (const r of run.rows) {
      if (!r.finished || r.testAccuracy === null || r.sparsity === null) continue;
      if (!(r.method === 'dense' || r.method.startsWith('imp-'))) continue;
      const method = r.level === 0 ? 'dense' : r.method;
      const key = [run.model, run.data, g, method, r.level].join('\0');
      let c = cells.get(key);
      if (!c) cells.set(key, (c = { model: run.model, data: run.data, granularity: g, method, level: r.level, rows: [] }));
      c.rows.push(r);
    }
  }
  return [...cells.values()]
    .map((c) => {
      const ms = c.rows.map((r) => levelStepMs(r.dir)).filter((v): v is number => v !== null);
      return {
        model: c.model,
        data: c.data,
        granularity: c.granularity,
        method: c.method,
        level: c.level,
        density: stat(c.rows.map((r) => 1 - r.sparsity!))!,
        testAccuracy: stat(c.rows.map((r) => r.testAccuracy!))!,
        msPerStep: stat(ms),
      };
    })
    .sort((a, b) => a.model.localeCompare(b.model) || a.data.localeCompare(b.data) || a.granularity.localeCompare(b.granularity) || a.method.localeCompare(b.method) || a.level - b.level);
}

const GRANULARITY_ORDER = ['weight', 'block:4', 'block:8', 'block:16', 'channel', 'filter'];
const rank = (g: string) => (GRANULARITY_ORDER.indexOf(g) + 1 || 99);

/** One line per granularity (and IMP scope), dense level 0 first, with +-1 sd bands on accuracy. */
function frontierSeries(rows: readonly FrontierRow[], x: (r: FrontierRow) => number | null): LineSeries[] {
  const gs = [...new Set(rows.map((r) => r.granularity))].sort((a, b) => rank(a) - rank(b));
  const methods = [...new Set(rows.filter((r) => r.method !== 'dense').map((r) => r.method))].sort();
  const series: LineSeries[] = [];
  gs.forEach((g, gi) => {
    for (const method of methods) {
      const pts = rows.filter((r) => r.granularity === g && (r.method === method || r.method === 'dense')).sort((a, b) => a.level - b.level);
      const usable = pts.filter((r) => x(r) !== null);
      if (usable.filter((r) => r.method !== 'dense').length === 0) continue;
      const n = Math.max(...usable.map((r) => r.testAccuracy.n));
      series.push({
        name: `${g}${methods.length > 1 ? ` ${method}` : ''} (n=${n})`,
        points: usable.map((r) => [x(r)!, r.testAccuracy.mean * 100] as const),
        band: usable.map((r) => [x(r)!, (r.testAccuracy.mean - r.testAccuracy.sd) * 100, (r.testAccuracy.mean + r.testAccuracy.sd) * 100] as const),
        color: PALETTE[gi % PALETTE.length],
        dashed: method.endsWith('-layer') && methods.length > 1,
      });
    }
  });
  return series;
}

/** Rows for the table and the CSV: mean +- sd (n), and the step-time ratio to the dense level. */
function tableRows(rows: readonly FrontierRow[]): TableRow[] {
  const dense = (r: FrontierRow) => rows.find((d) => d.model === r.model && d.data === r.data && d.granularity === r.granularity && d.method === 'dense');
  return rows.map((r) => {
    const d = dense(r)?.msPerStep;
    return {
      cell: `${r.model} ${r.data}`,
      granularity: r.granularity,
      method: r.method,
      level: r.level,
      density: `${(r.density.mean * 100).toFixed(1)}%`,
      test: formatStat(r.testAccuracy),
      ms: r.msPerStep ? `${r.msPerStep.mean.toFixed(1)} +- ${r.msPerStep.sd.toFixed(1)}` : '-',
      speedup: r.msPerStep && d ? `${(d.mean / r.msPerStep.mean).toFixed(2)}x` : '-',
    };
  });
}

const COLUMNS: ColumnSpec[] = ['cell', 'granularity', 'method', { key: 'level', align: 'right' }, { key: 'density', align: 'right' }, { key: 'test', header: 'test accuracy', align: 'right' }, { key: 'ms', header: 'ms / step', align: 'right' }, { key: 'speedup', header: 'dense ms / ms', align: 'right' }];

/** The CSV: one row per frontier point, plain numbers (fractions, ms). */
export function frontierCsv(rows: readonly FrontierRow[]): string {
  const r6 = (v: number) => Math.round(v * 1e6) / 1e6;
  return toCsv(
    rows.map((r) => ({
      model: r.model,
      data: r.data,
      granularity: r.granularity,
      method: r.method,
      level: r.level,
      density_mean: r6(r.density.mean),
      test_accuracy_mean: r6(r.testAccuracy.mean),
      test_accuracy_sd: r6(r.testAccuracy.sd),
      n: r.testAccuracy.n,
      ms_per_step_mean: r.msPerStep ? r6(r.msPerStep.mean) : null,
      ms_per_step_sd: r.msPerStep ? r6(r.msPerStep.sd) : null,
    })) as unknown as CsvRow[],
  );
}

/** The report section, with its two plots and CSV written through `write`; null when no run has a granularity. */
export async function frontierSection(runs: readonly CollectedRun[], write: (name: string, content: string) => Promise<string>, link: (file: string, text: string) => string): Promise<ReportSection | null> {
  if (!hasGranularities(runs)) return null;
  const rows = frontierRows(runs);
  if (!rows.length) return null;
  const csv = await write(RUN_FILES.granularityFrontier, frontierCsv(rows));
  const figs: string[] = [];
  for (const file of [RUN_FILES.granularityDensityPlot, RUN_FILES.granularityTimePlot]) {
    const byDensity = file === RUN_FILES.granularityDensityPlot;
    const svg = linePlot({
      title: byDensity ? 'Test accuracy vs density, per granularity (mean +-1 sd over seeds)' : 'Test accuracy vs measured ms per training step (the frontier)',
      xLabel: byDensity ? 'density (% of prunable weights kept)' : 'ms per training step (median over epochs, wall clock)',
      yLabel: 'test accuracy (%)',
      series: frontierSeries(rows, byDensity ? (r) => r.density.mean * 100 : (r) => r.msPerStep?.mean ?? null),
    });
    await write(file, svg);
    figs.push(figure(svg, file));
  }
  return {
    id: 'granularity-frontier',
    heading: 'Granularity: accuracy vs density and vs time',
    html:
      '<p>Each granularity prunes whole units (weights, blocks of output channels at one tap, filters, input channels) to the same weight counts. ' +
      'ms per training step: the median over a level\'s epochs of the epoch\'s wall-clock training time (steps, data loading, the end-of-epoch readback; ' +
      'validation excluded) per step, from metrics.jsonl, mean +- sd over seeds. It includes whatever else the machine was running; ratios within one ' +
      'report are the meaningful part, and they reflect the kernels the levels ran (--kernels).</p>\n' +
      figureRow(figs) +
      '\n' +
      scrollable(htmlTable(tableRows(rows), COLUMNS)) +
      `\n<p>All points: ${link(csv, RUN_FILES.granularityFrontier)}.</p>`,
  };
}

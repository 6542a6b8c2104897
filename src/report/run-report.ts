// The report over one or more run folders (see collect.ts for what is read), written into one folder:
//
//   summary.csv                      one row per level folder (IMP, one-shot, controls), unfinished included
//   accuracy_vs_sparsity.svg         test accuracy (%) vs sparsity (%): every method of one model/dataset,
//   auc_vs_sparsity.svg              or, over several models/datasets, the IMP lines of each (colour = model
//                                    and dataset, dashed = per-layer scope) plus one file per model/dataset
//                                    with every method: accuracy_vs_sparsity-<model>-<data>.svg, auc_...
//   layer_sparsity.csv               per run, level and prunable layer: total, kept, sparsity
//   layer_density-<run>.svg          per run: grouped bars of each layer's density at a few IMP levels
//   report.html                      all of the above plus run settings, the winning-ticket verdicts,
//                                    per-level training curves and the run's gradcam/ outputs if any
//                                    (a link to gradcam.html, grid.png, the attention-change table)
//
// Every method's line starts at the run's dense point (level 0, sparsity 0). A level "is a winning
// ticket" when its test accuracy is within 1 point of the dense model's (or above it) and, where
// controls were trained at that level, above every finished control (Frankle & Carbin 2019).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { parseCsv, toCsv, type CsvRow } from '../util/csv.js';
import { formatTable, htmlTable, type ColumnSpec, type TableCell, type TableRow } from '../util/table.js';
import { barChart, PALETTE } from './svg-plot.js';
import { figure, figureRow, htmlReport, imageTag, relativeUrl, scrollable, type MetaValue, type ReportSection } from './html.js';
import { escapeHtml } from '../util/escape.js';
import { collectRuns, denseRow, isControl, isPruned, type CollectedRun, type LevelRow } from './collect.js';
import { maskAnatomySection, writeMaskAnatomy } from './mask-report.js';
import { formatStat, hasSeeds, SEED_SUMMARY_COLUMNS, seedGroups, seedRows, seedSummaryRows, seedVerdicts, type SeedVerdict } from './seeds.js';
import { listLevelFolders, runFile, RUN_FILES, slugged } from '../io/run-paths.js';
import { profileSection } from './profile-report.js';
import { sparseKernelSection } from './sparse-report.js';
import { type Group, groupsOf, type Metric, groupPlot, seedGroupPlot, overviewPlot, curvePlots } from './run-plots.js';

/** summary.csv's columns, in order; images_per_second, winning_ticket, status and run follow them. */
export const SUMMARY_COLUMNS = [
  'model',
  'data',
  'method',
  'level',
  'sparsity',
  'parameters_left',
  'best_val_accuracy',
  'test_accuracy',
  'test_auc',
  'test_balanced_accuracy',
  'epochs_to_best',
  'epochs',
] as const;
export const EXTRA_COLUMNS = ['images_per_second', 'winning_ticket', 'status', 'run'] as const;

export type SummaryRow = Record<(typeof SUMMARY_COLUMNS)[number] | (typeof EXTRA_COLUMNS)[number], string | number | null>;

/** Test accuracy may fall this many percentage points below dense and still "match" it. */
export const MATCH_TOLERANCE_POINTS = 1;

export interface Verdict {
  run: string;
  runName: string;
  model: string;
  data: string;
  method: string;
  level: number;
  sparsity: number | null;
  testAccuracy: number;
  denseAccuracy: number;
  /** testAccuracy - denseAccuracy, in percentage points. */
  deltaPoints: number;
  matchesDense: boolean;
  /** Finished controls at the same level of the same run. */
  controls: { kind: string; testAccuracy: number }[];
  /** null when no control was trained (and finished) at this level. */
  beatsControls: boolean | null;
  winning: boolean;
}


/** The winning-ticket verdict of every finished IMP and one-shot level (k >= 1) with a test accuracy. */
export function ticketVerdicts(runs: readonly CollectedRun[], tolerancePoints = MATCH_TOLERANCE_POINTS): Verdict[] {
  const out: Verdict[] = [];
  for (const run of runs) {
    const dense = denseRow(run);
    if (!dense || dense.testAccuracy === null) continue;
    for (const r of run.rows) {
      if (!isPruned(r.method) || r.level < 1 || r.testAccuracy === null) continue;
      const controls = run.rows
        .filter((c) => isControl(c.method) && c.level === r.level && c.testAccuracy !== null)
        .map((c) => ({ kind: c.method, testAccuracy: c.testAccuracy as number }));
      const deltaPoints = (r.testAccuracy - dense.testAccuracy) * 100;
      // The small epsilon keeps "exactly 1 point below" a match despite float rounding.
      const matchesDense = deltaPoints >= -tolerancePoints - 1e-9;
      const beatsControls = controls.length ? controls.every((c) => r.testAccuracy! > c.testAccuracy) : null;
      out.push({
        run: run.dir,
        runName: run.name,
        model: run.model,
        data: run.data,
        method: r.method,
        level: r.level,
        sparsity: r.sparsity,
        testAccuracy: r.testAccuracy,
        denseAccuracy: dense.testAccuracy,
        deltaPoints,
        matchesDense,
        controls,
        beatsControls,
        winning: matchesDense && beatsControls !== false,
      });
    }
  }
  return out;
}

const round6 = (v: number | null): number | null => (v === null ? null : Math.round(v * 1e6) / 1e6);

/** summary.csv's rows (fractions, not percentages), in run order, then method, then level. */
export function summaryRows(runs: readonly CollectedRun[], verdicts: readonly Verdict[] = ticketVerdicts(runs)): SummaryRow[] {
  const verdictOf = new Map(verdicts.map((v) => [`${v.run}\0${v.method}\0${v.level}`, v]));
  return runs.flatMap((run) =>
    run.rows.map((r): SummaryRow => {
      const v = verdictOf.get(`${run.dir}\0${r.method}\0${r.level}`);
      return {
        model: r.model,
        data: r.data,
        method: r.method,
        level: r.level,
        sparsity: round6(r.sparsity),
        parameters_left: r.parametersLeft,
        best_val_accuracy: r.bestValAccuracy,
        test_accuracy: r.testAccuracy,
        test_auc: r.testAuc,
        test_balanced_accuracy: r.testBalancedAccuracy,
        epochs_to_best: r.epochsToBest,
        epochs: r.epochs,
        images_per_second: r.imagesPerSecond,
        winning_ticket: v ? (v.winning ? 'yes' : 'no') : r.level === 0 && !isControl(r.method) && r.finished ? 'dense' : null,
        status: r.finished ? 'finished' : 'unfinished',
        run: run.dir,
      };
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// formatting

const pct = (digits: number) => (v: TableCell): string => (typeof v === 'number' && Number.isFinite(v) ? `${(v * 100).toFixed(digits)}%` : '');
const fixed = (digits: number) => (v: TableCell): string => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '');
const int = (v: TableCell): string => (typeof v === 'number' && Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '');

function summaryColumns(multiRun: boolean): ColumnSpec[] {
  return [
    ...(multiRun ? [{ key: 'run_name', header: 'run' }] : []),
    'model',
    'data',
    'method',
    { key: 'level', align: 'right' as const },
    { key: 'sparsity', header: 'sparsity', format: pct(1), align: 'right' as const },
    { key: 'parameters_left', header: 'params left', format: int, align: 'right' as const },
    { key: 'best_val_accuracy', header: 'val acc', format: pct(2), align: 'right' as const },
    { key: 'test_accuracy', header: 'test acc', format: pct(2), align: 'right' as const },
    { key: 'test_auc', header: 'test AUC', format: fixed(4), align: 'right' as const },
    { key: 'test_balanced_accuracy', header: 'bal. acc', format: pct(2), align: 'right' as const },
    { key: 'epochs_to_best', header: 'best ep', align: 'right' as const },
    { key: 'epochs', header: 'epochs', align: 'right' as const },
    { key: 'images_per_second', header: 'img/s', format: fixed(1), align: 'right' as const },
    { key: 'winning_ticket', header: 'ticket' },
    { key: 'status', header: 'status' },
  ];
}

function displayRows(rows: readonly SummaryRow[], runs: readonly CollectedRun[]): TableRow[] {
  const nameOf = new Map(runs.map((r) => [r.dir, r.name]));
  return rows.map((r) => ({ ...r, run_name: nameOf.get(String(r.run)) ?? r.run }));
}

/** The summary as an aligned plain-text table (what `ticketlab report` prints). */
export function formatSummaryTable(runs: readonly CollectedRun[], rows: readonly SummaryRow[] = summaryRows(runs)): string {
  return formatTable(displayRows(rows, runs), summaryColumns(runs.length > 1));
}

function verdictRows(verdicts: readonly Verdict[]): TableRow[] {
  return verdicts.map((v) => ({
    run: v.runName,
    model: v.model,
    data: v.data,
    method: v.method,
    level: v.level,
    sparsity: v.sparsity,
    test: v.testAccuracy,
    dense: v.denseAccuracy,
    delta: `${v.deltaPoints >= 0 ? '+' : ''}${v.deltaPoints.toFixed(2)} pt`,
    controls: v.controls.length ? v.controls.map((c) => `${c.kind} ${(c.testAccuracy * 100).toFixed(2)}%`).join(', ') : '(none)',
    verdict: v.winning ? 'winning ticket' : !v.matchesDense ? 'no: below dense' : 'no: a control does as well or better',
  }));
}

function verdictColumns(multiRun: boolean): ColumnSpec[] {
  return [
    ...(multiRun ? ['run'] : []),
    'method',
    { key: 'level', align: 'right' as const },
    { key: 'sparsity', format: pct(1), align: 'right' as const },
    { key: 'test', header: 'test acc', format: pct(2), align: 'right' as const },
    { key: 'dense', header: 'dense acc', format: pct(2), align: 'right' as const },
    { key: 'delta', header: 'vs dense', align: 'right' as const },
    'controls',
    'verdict',
  ];
}

export function formatVerdicts(verdicts: readonly Verdict[], multiRun = new Set(verdicts.map((v) => v.run)).size > 1): string {
  if (!verdicts.length) return 'winning tickets: no finished pruned level with a finished dense level to compare with';
  return formatTable(verdictRows(verdicts), verdictColumns(multiRun));
}

const shortLayer = (key: string): string => key.replace(/\.weight$/, '');

function impRows(run: CollectedRun): LevelRow[] {
  return run.rows.filter((r) => (r.method.startsWith('imp-') || r.method === 'dense') && r.layers.length > 0).sort((a, b) => a.level - b.level);
}

/** Per-layer sparsity over IMP levels: rows = prunable layers (+ all prunable), columns = levels. */
export function layerSparsityTable(run: CollectedRun): { rows: TableRow[]; columns: ColumnSpec[] } | null {
  const levels = impRows(run);
  if (!levels.length) return null;
  const keys: string[] = [];
  const totals = new Map<string, number>();
  for (const l of levels) {
    for (const ly of l.layers) {
      if (!totals.has(ly.key)) {
        keys.push(ly.key);
        totals.set(ly.key, ly.total);
      }
    }
  }
  const rows: TableRow[] = keys.map((k) => {
    const row: Record<string, TableCell> = { layer: shortLayer(k), weights: totals.get(k) };
    for (const l of levels) row[`L${l.level}`] = l.layers.find((x) => x.key === k)?.sparsity ?? null;
    return row;
  });
  const all: Record<string, TableCell> = { layer: 'all prunable', weights: [...totals.values()].reduce((s, v) => s + v, 0) };
  for (const l of levels) all[`L${l.level}`] = l.sparsity;
  rows.push(all);
  const columns: ColumnSpec[] = ['layer', { key: 'weights', format: int, align: 'right' }, ...levels.map((l) => ({ key: `L${l.level}`, format: pct(1), align: 'right' as const }))];
  return { rows, columns };
}

export function formatLayerTables(runs: readonly CollectedRun[]): string {
  const parts: string[] = [];
  for (const run of runs) {
    const t = layerSparsityTable(run);
    if (t) parts.push(`${run.name}: per-layer sparsity (% of each layer's weights pruned) by IMP level\n${formatTable(t.rows, t.columns)}`);
  }
  return parts.join('\n\n');
}

/** Up to `n` IMP levels >= 1 spread from the first to the last (e.g. 1, 3, 6, 8 of 8). */
export function spreadLevels(levels: readonly number[], n = 4): number[] {
  const ls = [...new Set(levels.filter((l) => l >= 1))].sort((a, b) => a - b);
  if (ls.length <= n) return ls;
  const out = new Set<number>();
  for (let i = 0; i < n; i++) out.add(ls[Math.round((i * (ls.length - 1)) / (n - 1))]);
  return [...out];
}

function layerDensityChart(run: CollectedRun): string | null {
  const levels = impRows(run);
  const chosen = spreadLevels(levels.map((l) => l.level));
  if (!chosen.length) return null;
  const keys = [...new Set(levels.flatMap((l) => l.layers.map((x) => x.key)))];
  return barChart({
    title: `${run.name}: weights left per layer`,
    xLabel: 'prunable layer',
    yLabel: 'weights left (%)',
    categories: keys.map(shortLayer),
    yRange: [0, 100],
    yTickFormat: (v) => `${v}%`,
    series: chosen.map((k) => {
      const l = levels.find((x) => x.level === k)!;
      return {
        name: `L${k} (${l.sparsity === null ? '?' : (l.sparsity * 100).toFixed(1)}% pruned)`,
        values: keys.map((key) => {
          const ly = l.layers.find((x) => x.key === key);
          return ly && ly.total > 0 ? (ly.kept / ly.total) * 100 : null;
        }),
      };
    }),
  });
}

function seedVerdictRows(vs: readonly SeedVerdict[]): TableRow[] {
  return vs.map((v) => ({
    cell: v.group.name,
    method: v.method,
    level: v.level,
    test: formatStat(v.ticket),
    dense: formatStat(v.dense),
    delta: `${v.deltaPoints >= 0 ? '+' : ''}${v.deltaPoints.toFixed(2)} pt (tol ${v.tolerancePoints.toFixed(2)})`,
    controls: v.controls.length ? v.controls.map((c) => `${c.kind} ${formatStat(c.stat)}`).join(', ') : '(none)',
    verdict: v.winning ? 'winning ticket' : !v.matchesDense ? 'no: below dense' : 'no: a control is within the spread',
  }));
}

const seedVerdictColumns: ColumnSpec[] = ['cell', 'method', { key: 'level', align: 'right' }, { key: 'test', align: 'right' }, { key: 'dense', align: 'right' }, { key: 'delta', header: 'vs dense', align: 'right' }, 'controls', 'verdict'];

export function formatSeedVerdicts(vs: readonly SeedVerdict[]): string {
  return vs.length ? formatTable(seedVerdictRows(vs), seedVerdictColumns) : 'no finished pruned level with a finished dense level to compare with';
}

// ---------------------------------------------------------------------------------------------
// files

export interface RunReport {
  outDir: string;
  /** Verdicts over seeds (runs that differ only in the seed), or null when no cell has several seeds. */
  seedVerdicts: SeedVerdict[] | null;
  /** Every file written, absolute or as joined from outDir. */
  files: string[];
  runs: CollectedRun[];
  rows: SummaryRow[];
  verdicts: Verdict[];
  /** Plain-text tables, for printing. */
  summaryText: string;
  verdictText: string;
  layerText: string;
  /** Level folders without result.json. */
  unfinished: string[];
}

export function fileSlug(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'run';
}

function uniqueSlugs(names: readonly string[]): string[] {
  const used = new Map<string, number>();
  return names.map((n) => {
    const base = fileSlug(n);
    const c = (used.get(base) ?? 0) + 1;
    used.set(base, c);
    return c === 1 ? base : `${base}-${c}`;
  });
}

function flatten(o: Record<string, unknown>, prefix = '', out: Record<string, MetaValue> = {}): Record<string, MetaValue> {
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) flatten(v as Record<string, unknown>, key, out);
    else out[key] = Array.isArray(v) ? v.join(', ') : (v as MetaValue);
  }
  return out;
}

function link(outDir: string, file: string, text = path.relative(outDir, file)): string {
  const rel = path.relative(outDir, file).split(path.sep).join('/');
  return `<a href="${escapeHtml(relativeUrl(rel))}">${escapeHtml(text)}</a>`;
}

function relImage(outDir: string, file: string, alt: string): string {
  return imageTag(path.relative(outDir, file).split(path.sep).join('/'), alt);
}

/** gradcam/summary.csv (attention change per level) as a table; a link only if it does not parse. */
function gradcamSummary(outDir: string, file: string): string {
  let rows: string[][] = [];
  try {
    rows = parseCsv(fs.readFileSync(file, 'utf8'));
  } catch {
    rows = [];
  }
  const caption = `Attention change with sparsity (${path.basename(file)})`;
  if (rows.length < 2) return `<p>${link(outDir, file, caption)}</p>`;
  const [head, ...body] = rows;
  const num = (v: string) => (v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v);
  const table = body.map((r) => Object.fromEntries(head.map((h, i) => [h, num(r[i] ?? '')])));
  return `<p>${link(outDir, file, caption)}</p>\n` + scrollable(htmlTable(table, head));
}

/** Reads the runs and writes summary.csv, the plots, layer_sparsity.csv and report.html into outDir. */
export async function writeRunReport(runDirs: readonly string[], outDir: string): Promise<RunReport> {
  const runs = collectRuns(runDirs);
  const verdicts = ticketVerdicts(runs);
  const rows = summaryRows(runs, verdicts);
  const sGroups = seedGroups(runs);
  const sRows = hasSeeds(sGroups) ? seedRows(sGroups) : null;
  const sVerdicts = sRows ? seedVerdicts(sRows, MATCH_TOLERANCE_POINTS) : null;
  const multiRun = runs.length > 1;
  const files: string[] = [];
  const write = async (name: string, content: string): Promise<string> => {
    const file = path.join(outDir, name);
    await writeFileAtomic(file, content);
    files.push(file);
    return file;
  };

  // summary.csv; over seeds it holds mean +- sd per cell, and the per-folder rows go to summary_runs.csv
  const runsCsv = toCsv(rows as unknown as CsvRow[], [...SUMMARY_COLUMNS, ...EXTRA_COLUMNS]);
  const csvFile = sRows
    ? await write(RUN_FILES.summary, toCsv(seedSummaryRows(sRows, sVerdicts!) as unknown as CsvRow[], [...SEED_SUMMARY_COLUMNS]))
    : await write(RUN_FILES.summary, runsCsv);
  const runsCsvFile = sRows ? await write(RUN_FILES.summaryRuns, runsCsv) : null;

  // accuracy / AUC vs sparsity
  const groups = groupsOf(runs);
  const groupSlugs = uniqueSlugs(groups.map((g) => `${g.model}-${g.data}`));
  const plotFigures: { acc: string[]; auc: string[] } = { acc: [], auc: [] };
  const perGroup = (g: Group, metric: Metric) => (sRows ? seedGroupPlot(g, sRows, metric) : groupPlot(g, metric));
  const overview = (metric: Metric) =>
    sRows
      ? seedGroupPlot({ key: '', model: '', data: '', runs }, sRows, metric, (m) => m.startsWith('imp-') || m === 'dense', `${metric === 'testAccuracy' ? 'Test accuracy' : 'Test AUC'} vs sparsity (IMP, mean +-1 sd over seeds; dashed = per-layer)`, (gi) => PALETTE[gi % PALETTE.length])
      : overviewPlot(groups, metric);
  const accMain = groups.length === 1 ? perGroup(groups[0], 'testAccuracy') : overview('testAccuracy');
  const aucMain = groups.length === 1 ? perGroup(groups[0], 'testAuc') : overview('testAuc');
  await write(RUN_FILES.accuracyPlot, accMain);
  await write(RUN_FILES.aucPlot, aucMain);
  plotFigures.acc.push(figure(accMain, groups.length === 1 ? RUN_FILES.accuracyPlot : `${RUN_FILES.accuracyPlot}: IMP of every model and dataset`));
  plotFigures.auc.push(figure(aucMain, RUN_FILES.aucPlot));
  if (groups.length > 1) {
    for (let i = 0; i < groups.length; i++) {
      const acc = perGroup(groups[i], 'testAccuracy');
      const auc = perGroup(groups[i], 'testAuc');
      const accName = slugged('accuracyPlot', groupSlugs[i]);
      const aucName = slugged('aucPlot', groupSlugs[i]);
      await write(accName, acc);
      await write(aucName, auc);
      plotFigures.acc.push(figure(acc, accName));
      plotFigures.auc.push(figure(auc, aucName));
    }
  }

  // per-layer sparsity
  const layerCsv: CsvRow[] = runs.flatMap((run) =>
    run.rows.flatMap((r) =>
      r.layers.map((l) => ({ run: run.dir, model: run.model, data: run.data, method: r.method, level: r.level, layer: l.key, total: l.total, kept: l.kept, sparsity: round6(l.sparsity) })),
    ),
  );
  if (layerCsv.length) await write(RUN_FILES.layerSparsity, toCsv(layerCsv, ['run', 'model', 'data', 'method', 'level', 'layer', 'total', 'kept', 'sparsity']));
  const runSlugs = uniqueSlugs(runs.map((r) => r.name));
  const layerHtml: string[] = [];
  for (let i = 0; i < runs.length; i++) {
    const t = layerSparsityTable(runs[i]);
    if (!t) continue;
    const chart = layerDensityChart(runs[i]);
    const parts = [`<h3>${escapeHtml(runs[i].name)}</h3>`, scrollable(htmlTable(t.rows, t.columns, { caption: '% of each layer\'s weights pruned, by IMP level' }))];
    if (chart) {
      const name = slugged('layerDensityPlot', runSlugs[i]);
      await write(name, chart);
      parts.push(figure(chart, name));
    }
    layerHtml.push(parts.join('\n'));
  }

  // report.html
  const unfinished = runs.flatMap((r) => r.rows.filter((x) => !x.finished).map((x) => x.dir));
  const sections: ReportSection[] = [];
  sections.push({
    heading: 'Summary',
    html:
      scrollable(htmlTable(displayRows(rows, runs), summaryColumns(multiRun))) +
      `\n<p>All values: ${link(outDir, csvFile, RUN_FILES.summary)} (fractions, not percentages).` +
      (unfinished.length ? ` ${unfinished.length} level${unfinished.length > 1 ? 's are' : ' is'} unfinished (no result.json yet).` : '') +
      (runsCsvFile ? ` summary.csv holds mean, sd and n over seeds per cell; every level folder's own row: ${link(outDir, runsCsvFile, RUN_FILES.summaryRuns)}.` : '') +
      '</p>',
  });
  if (sVerdicts) {
    sections.push({
      id: 'winning-tickets-over-seeds',
      heading: 'Winning tickets over seeds',
      html:
        `<p>Over the seeds of each cell, a pruned level is a winning ticket when its mean test accuracy is at most max(${MATCH_TOLERANCE_POINTS} point, the dense model's sd) ` +
        'below the dense mean, and, where controls were trained at that level, its mean - sd is above mean + sd of every control (the +-1 sd intervals do not overlap). Sample sd (n - 1).</p>\n' +
        (sVerdicts.length ? scrollable(htmlTable(seedVerdictRows(sVerdicts), seedVerdictColumns)) : '<p>No finished pruned level with a finished dense level to compare with yet.</p>'),
    });
  }
  sections.push({
    id: 'winning-tickets',
    heading: 'Winning tickets',
    html:
      `<p>A pruned level is a winning ticket when its test accuracy is at most ${MATCH_TOLERANCE_POINTS} point below the dense model's (level 0 of the same run) ` +
      'and, where controls (random re-initialisation, random pruning) were trained at that level, higher than every one of them.</p>\n' +
      (verdicts.length ? scrollable(htmlTable(verdictRows(verdicts), verdictColumns(multiRun))) : '<p>No finished pruned level with a finished dense level to compare with yet.</p>'),
  });
  sections.push({ heading: 'Accuracy vs sparsity', html: plotFigures.acc.join('\n') });
  sections.push({ heading: 'AUC vs sparsity', html: plotFigures.auc.join('\n') });
  if (layerHtml.length) {
    sections.push({
      heading: 'Per-layer sparsity',
      html: (layerCsv.length ? `<p>Every level's per-layer counts: ${link(outDir, runFile(outDir, 'layerSparsity'), RUN_FILES.layerSparsity)}.</p>\n` : '') + layerHtml.join('\n'),
    });
  }
  for (const run of runs) {
    const prof = profileSection(run);
    if (prof) sections.push(prof);
    const sparse = sparseKernelSection(run);
    if (sparse) sections.push(sparse);
  }
  const curveHtml = runs
    .map((run) => {
      const plots = curvePlots(run);
      return plots.length ? `<h3>${escapeHtml(run.name)}</h3>\n${figureRow(plots.map((p) => figure(p.svg)))}` : '';
    })
    .filter(Boolean);
  if (curveHtml.length) sections.push({ heading: 'Training curves', html: '<p>Validation accuracy after each epoch, one line per level (from metrics.jsonl); dashed: still training or stopped.</p>\n' + curveHtml.join('\n') });
  // Mask anatomy of up to four IMP levels per run (pictures in masks[-<run>]/ beside the report).
  for (let i = 0; i < runs.length; i++) {
    const levels = spreadLevels(listLevelFolders(runs[i].dir).filter((l) => l.family === 'imp' && fs.existsSync(runFile(l.dir, 'mask'))).map((l) => l.level));
    if (!levels.length) continue;
    const anatomy = await writeMaskAnatomy({ run: runs[i].dir, levels, outDir: path.join(outDir, multiRun ? `masks-${runSlugs[i]}` : 'masks') });
    files.push(...anatomy.files);
    sections.push(maskAnatomySection(anatomy, outDir, multiRun ? `Mask anatomy: ${runs[i].name}` : 'Mask anatomy'));
  }
  const gradcam = runs.filter((r) => r.gradcam);
  if (gradcam.length) {
    sections.push({
      heading: 'Grad-CAM',
      html: gradcam
        .map((run) => {
          const g = run.gradcam!;
          const parts = [`<h3>${escapeHtml(run.name)}</h3>`];
          if (g.html) parts.push(`<p>Grad-CAM page: ${link(outDir, g.html)}</p>`);
          if (g.images.length) parts.push(figureRow(g.images.map((img) => figure(relImage(outDir, img, `Grad-CAM ${path.basename(img)}`), path.relative(run.dir, img)))));
          if (g.summaryCsv) parts.push(gradcamSummary(outDir, g.summaryCsv));
          if (!g.html && !g.images.length) parts.push(`<p>${escapeHtml(path.relative(outDir, g.dir) || '.')} holds no gradcam.html or PNG yet.</p>`);
          return parts.join('\n');
        })
        .join('\n'),
    });
  }
  sections.push({
    heading: 'Runs',
    html: runs
      .map(
        (run) =>
          `<h3>${escapeHtml(run.name)}</h3>\n<p>${escapeHtml(run.dir)}: ${escapeHtml(run.command)}, ${run.rows.length} level folder${run.rows.length === 1 ? '' : 's'}` +
          `${run.done ? ', done' : ', not marked done'}; ${link(outDir, runFile(run.dir, 'config'), RUN_FILES.config)}</p>\n` +
          `<details><summary>settings</summary>\n<pre>${escapeHtml(JSON.stringify(run.config, null, 2))}</pre>\n</details>`,
      )
      .join('\n'),
  });
  const reportFile = runFile(outDir, 'report');
  sections.push({
    heading: 'Files',
    html: `<ul>\n${[...files, reportFile].map((f) => `<li>${link(outDir, f)}</li>`).join('\n')}\n</ul>`,
  });

  const meta: Record<string, MetaValue> = multiRun
    ? { runs: runs.length, models: [...new Set(runs.map((r) => r.model))].join(', '), datasets: [...new Set(runs.map((r) => r.data))].join(', ') }
    : { run: runs[0].name, ...flatten(runs[0].config) };
  const html = htmlReport({
    title: multiRun ? `ticketlab: ${runs.length} runs` : `ticketlab: ${runs[0].name}`,
    subtitle: `${rows.length} level folders, ${verdicts.filter((v) => v.winning).length} winning tickets` + (unfinished.length ? `, ${unfinished.length} unfinished` : ''),
    meta,
    sections,
  });
  await write(RUN_FILES.report, html);

  return {
    outDir,
    seedVerdicts: sVerdicts,
    files,
    runs,
    rows,
    verdicts,
    summaryText: formatSummaryTable(runs, rows),
    verdictText: formatVerdicts(verdicts, multiRun) + (sVerdicts ? `\n\nover seeds (mean +- sd):\n${formatSeedVerdicts(sVerdicts)}` : ''),
    layerText: formatLayerTables(runs),
    unfinished,
  };
}

// `ticketlab masks` and the report's "Mask anatomy" section: the numbers of prune/anatomy.ts as CSV,
// terminal tables, PNG filter-by-channel grids, SVG histograms and kernel-tap heatmaps, and HTML.
//
// Masks come from a ticketlab run (level_<k>/mask.safetensors, with one-shot and random-prune levels as
// comparisons), or a folder of PyTorch torch.nn.utils.prune files, or a single mask file.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { controlDir, levelDir, levelName, listLevelFolders, oneshotDir, runFile } from '../io/run-paths.js';
import { encodePng, svgToPng, type RgbImage } from '../data/image.js';
import { toCsv, type CsvRow } from '../util/csv.js';
import { formatTable, htmlTable, type ColumnSpec, type TableRow } from '../util/table.js';
import { escapeHtml } from '../util/escape.js';
import {
  compactionSummary,
  DENSITY_BINS,
  densityBinEdges,
  densityBinLabel,
  maskAnatomy,
  maskOverlap,
  readMaskSet,
  type CompactionSummary,
  type LayerAnatomy,
  type MaskSet,
  type Overlap,
} from '../prune/anatomy.js';
import { naturalOrder } from '../prune/invariants.js';
import { barChart } from './svg-plot.js';
import { heatmapSvg, pictureGridSvg, shade } from './svg-grid.js';
import { figure, figureRow, imageTag, scrollable, type ReportSection } from './html.js';
import { ArgumentError } from '../util/errors.js';

/** One mask file and how to call it in tables and file names. */
export interface MaskSource {
  label: string;
  file: string;
  /** IMP level number, when the source is a level of a run. */
  level: number | null;
}

export interface MaskComparison {
  a: MaskSource;
  b: MaskSource;
  /** What the pair compares: 'levels', 'IMP vs one-shot', 'IMP vs random pruning', 'compare'. */
  kind: string;
}

export interface MaskAnatomyOptions {
  /** A run folder, a folder of PyTorch prune files, or one mask file. */
  run: string;
  /** IMP levels to show (default: every pruned level of the run). */
  levels?: readonly number[];
  /** Another run (matched level by level), a level folder or a mask file to overlap with. */
  compare?: string;
  outDir: string;
}

export interface SourceAnatomy {
  source: MaskSource;
  layers: LayerAnatomy[];
  compaction: CompactionSummary;
  /** Picture files (a PNG and the same figure as SVG), relative to outDir. */
  grids: { layer: string; file: string; svg: string }[];
  histogramSvg: string;
  taps: { layer: string; svg: string }[];
}

export interface MaskAnatomyResult {
  outDir: string;
  files: string[];
  sources: SourceAnatomy[];
  overlaps: (MaskComparison & { rows: Overlap[] })[];
}

const slug = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'mask';

function isRun(dir: string): boolean {
  return fs.existsSync(runFile(dir, 'config')) || listLevelFolders(dir).length > 0;
}

function hasMask(dir: string): boolean {
  return fs.existsSync(runFile(dir, 'mask'));
}

/** The mask sources of `run` (see MaskAnatomyOptions.run). */
export function maskSources(run: string, levels?: readonly number[]): MaskSource[] {
  if (!fs.existsSync(run)) throw new Error(`${run}: no such run folder or mask file`);
  if (fs.statSync(run).isFile()) return [{ label: path.basename(run, '.safetensors'), file: run, level: null }];
  if (hasMask(run) && !isRun(run)) return [{ label: path.basename(run), file: runFile(run, 'mask'), level: null }];
  if (isRun(run)) {
    const imp = listLevelFolders(run).filter((l) => l.family === 'imp' && hasMask(l.dir));
    const have = imp.map((l) => l.level);
    for (const k of levels ?? []) if (!have.includes(k)) throw new ArgumentError('writeMaskAnatomy', 'options.levels', `${k}: ${run} has no level_${k}/mask.safetensors (levels with masks: ${have.join(', ') || 'none'})`);
    const chosen = levels ? imp.filter((l) => levels.includes(l.level)) : imp.filter((l) => l.level > 0);
    return chosen.map((l) => ({ label: levelName(l.level), file: runFile(l.dir, 'mask'), level: l.level }));
  }
  const files = fs
    .readdirSync(run)
    .filter((f) => f.endsWith('.safetensors'))
    .sort(naturalOrder);
  if (!files.length) throw new Error(`${run}: no level_<k>/mask.safetensors and no .safetensors files`);
  return files.map((f) => ({ label: path.basename(f, '.safetensors'), file: path.join(run, f), level: null }));
}

/** The pairs to overlap: consecutive sources, IMP vs one-shot / random pruning at the same level, and --compare. */
export function maskComparisons(run: string, sources: readonly MaskSource[], compare?: string): MaskComparison[] {
  const out: MaskComparison[] = [];
  for (let i = 1; i < sources.length; i++) out.push({ a: sources[i - 1], b: sources[i], kind: 'levels' });
  if (fs.existsSync(run) && fs.statSync(run).isDirectory() && isRun(run)) {
    for (const s of sources) {
      if (s.level === null) continue;
      for (const scope of ['global', 'layer']) {
        const d = oneshotDir(run, scope, s.level);
        if (hasMask(d)) out.push({ a: s, b: { label: `oneshot_${scope}/level_${s.level}`, file: runFile(d, 'mask'), level: s.level }, kind: 'IMP vs one-shot' });
      }
      const r = controlDir(run, 'random_prune', s.level);
      if (hasMask(r)) out.push({ a: s, b: { label: `random_prune/level_${s.level}`, file: runFile(r, 'mask'), level: s.level }, kind: 'IMP vs random pruning' });
    }
  }
  if (compare) {
    if (!fs.existsSync(compare)) throw new ArgumentError('writeMaskAnatomy', 'options.compare', `${compare}: no such run folder or mask file`);
    const name = path.basename(path.resolve(compare));
    if (fs.statSync(compare).isDirectory() && isRun(compare)) {
      for (const s of sources) {
        if (s.level === null) continue;
        const d = levelDir(compare, s.level);
        if (hasMask(d)) out.push({ a: s, b: { label: `${name}/level_${s.level}`, file: runFile(d, 'mask'), level: s.level }, kind: 'compare' });
      }
      if (!out.some((c) => c.kind === 'compare')) throw new ArgumentError('writeMaskAnatomy', 'options.compare', `${compare}: none of the levels ${sources.map((s) => s.level).join(', ')} has a mask there`);
    } else {
      const file = fs.statSync(compare).isDirectory() ? runFile(compare, 'mask') : compare;
      if (!fs.existsSync(file)) throw new ArgumentError('writeMaskAnatomy', 'options.compare', `${compare}: not a run folder, a level folder with mask.safetensors, or a mask file`);
      for (const s of sources) out.push({ a: s, b: { label: name, file, level: null }, kind: 'compare' });
    }
  }
  return out;
}

/** The filter-by-channel picture: one cell per (filter, channel) kernel slice, shaded by its kept fraction. */
export function gridImage(l: LayerAnatomy): RgbImage {
  const cell = Math.max(1, Math.min(24, Math.floor(240 / Math.max(l.filters, l.channels))));
  const width = l.channels * cell;
  const height = l.filters * cell;
  const data = new Uint8Array(width * height * 3);
  for (let o = 0; o < l.filters; o++) {
    for (let i = 0; i < l.channels; i++) {
      const [r, g, b] = shade(l.grid[o * l.channels + i]);
      for (let y = o * cell; y < (o + 1) * cell; y++) {
        for (let x = i * cell; x < (i + 1) * cell; x++) {
          const p = (y * width + x) * 3;
          data[p] = r;
          data[p + 1] = g;
          data[p + 2] = b;
        }
      }
    }
  }
  return { width, height, channels: 3, data };
}

/** What a layer's grid rows and columns are: a linear layer's columns are inputs, not channels. */
function axes(l: LayerAnatomy): { rows: string; cols: string } {
  return l.kind === 'linear' ? { rows: 'output units', cols: 'inputs' } : { rows: 'filters (output channels)', cols: 'input channels' };
}

function gridFigure(label: string, l: LayerAnatomy, png: Uint8Array): string {
  const img = gridImage(l);
  const a = axes(l);
  return pictureGridSvg({
    title: `${label}, ${l.key} [${l.shape.join('x')}]: kept weights per ${l.kind === 'linear' ? 'weight' : 'kernel slice'}`,
    rowsLabel: a.rows,
    colsLabel: a.cols,
    rows: l.filters,
    cols: l.channels,
    png,
    width: img.width,
    height: img.height,
    legend: l.kind === 'linear' ? 'white: pruned, blue: kept' : `kept share of the ${l.kh}x${l.kw} slice`,
  });
}

function histogramSvg(label: string, layers: readonly LayerAnatomy[]): string {
  return barChart({
    title: `${label}: filters by kept fraction`,
    xLabel: 'kept fraction of the filter (bin edges; dead = nothing kept)',
    yLabel: 'filters',
    categories: Array.from({ length: DENSITY_BINS }, (_, b) => densityBinLabel(b)),
    series: layers.map((l) => ({ name: l.key, values: l.filterHistogram })),
  });
}

// One number format in tables: every fraction (density, sparsity, Jaccard, chance) as a percentage
// with one decimal; counts as integers. The CSV files keep fractions to 4 decimals for analysis.
const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

/** Bar glyphs by eighths, for the text histogram. */
const BARS = ' ▁▂▃▄▅▆▇█';


/** Reads every source and comparison, writes CSVs and pictures into outDir. */
export async function writeMaskAnatomy(o: MaskAnatomyOptions): Promise<MaskAnatomyResult> {
  const sources = maskSources(o.run, o.levels);
  if (!sources.length) throw new Error(`${o.run}: no pruned level with a mask yet`);
  const comparisons = maskComparisons(o.run, sources, o.compare);
  const cache = new Map<string, Promise<MaskSet>>();
  const read = (f: string) => {
    let p = cache.get(f);
    if (!p) cache.set(f, (p = readMaskSet(f)));
    return p;
  };
  const files: string[] = [];
  const write = async (name: string, content: string | Uint8Array) => {
    const file = path.join(o.outDir, name);
    await writeFileAtomic(file, content);
    files.push(file);
  };
  // Every mask is read (and refused if it is not 0/1) before the output folder is made: bad input
  // leaves nothing behind.
  for (const f of new Set([...sources.map((s) => s.file), ...comparisons.flatMap((c) => [c.a.file, c.b.file])])) await read(f);
  fs.mkdirSync(o.outDir, { recursive: true });

  const out: SourceAnatomy[] = [];
  for (const s of sources) {
    const layers = maskAnatomy(await read(s.file));
    const grids: SourceAnatomy['grids'] = [];
    for (const l of layers) {
      const base = `grid-${slug(s.label)}-${slug(l.key)}`;
      const svg = gridFigure(s.label, l, await encodePng(gridImage(l)));
      await write(`${base}.svg`, svg);
      await write(`${base}.png`, await svgToPng(svg));
      grids.push({ layer: l.key, file: `${base}.png`, svg: `${base}.svg` });
    }
    const histogram = histogramSvg(s.label, layers);
    await write(`filter_density-${slug(s.label)}.svg`, histogram);
    const taps = layers
      .filter((l) => l.kh * l.kw > 1)
      .map((l) => ({ layer: l.key, svg: heatmapSvg({ title: `${l.key}: taps kept`, rows: l.kh, cols: l.kw, values: l.taps }) }));
    for (const t of taps) await write(`taps-${slug(s.label)}-${slug(t.layer)}.svg`, t.svg);
    out.push({ source: s, layers, compaction: compactionSummary(layers), grids, histogramSvg: histogram, taps });
  }
  const overlaps: MaskAnatomyResult['overlaps'] = [];
  for (const c of comparisons) {
    const [a, b] = [await read(c.a.file), await read(c.b.file)];
    try {
      overlaps.push({ ...c, rows: maskOverlap(a.masks, b.masks) });
    } catch (e) {
      throw new Error(`${c.a.file} vs ${c.b.file}: ${(e as Error).message}`);
    }
  }

  await write('anatomy.csv', toCsv(anatomyRows(out) as CsvRow[]));
  await write('compaction.csv', toCsv(compactionRows(out) as CsvRow[]));
  await write(
    'filter_density.csv',
    toCsv(out.flatMap((s) => s.layers.flatMap((l) => l.filterHistogram.map((n, b) => ({ source: s.source.label, layer: l.key, bin: densityBinLabel(b), low: densityBinEdges(b)[0], high: densityBinEdges(b)[1], filters: n }))))),
  );
  await write(
    'taps.csv',
    toCsv(out.flatMap((s) => s.layers.flatMap((l) => l.taps.map((v, t) => ({ source: s.source.label, layer: l.key, row: Math.floor(t / l.kw), col: t % l.kw, kept_fraction: round4(v) }))))),
  );
  if (overlaps.length) {
    await write(
      'overlap.csv',
      toCsv(
        overlaps.flatMap((c) =>
          c.rows.map((r) => ({ a: c.a.label, b: c.b.label, kind: c.kind, layer: r.key, kept_a: r.keptA, kept_b: r.keptB, both: r.both, either: r.either, jaccard: round4(r.jaccard), nested: round4(r.nested), chance: round4(r.chance) })),
        ),
      ),
    );
  }
  return { outDir: o.outDir, files, sources: out, overlaps };
}

const round4 = (v: number) => Math.round(v * 1e4) / 1e4;

function anatomyRows(sources: readonly SourceAnatomy[]): TableRow[] {
  return sources.flatMap((s) =>
    s.layers.map((l) => ({
      source: s.source.label,
      layer: l.key,
      shape: l.shape.join('x'),
      total: l.total,
      kept: l.kept,
      density: round4(l.kept / l.total),
      kind: l.kind,
      filters: l.filters,
      dead_filters: l.deadFilters,
      // A linear layer's columns are inputs: counted apart from convolution channels.
      channels: l.kind === 'conv' ? l.channels : '',
      dead_channels: l.kind === 'conv' ? l.deadChannels : '',
      inputs: l.kind === 'linear' ? l.channels : '',
      dead_inputs: l.kind === 'linear' ? l.deadChannels : '',
      compactable: l.compactable,
    })),
  );
}

function compactionRows(sources: readonly SourceAnatomy[]): TableRow[] {
  return sources.map((s) => {
    const c = s.compaction;
    return {
      source: s.source.label,
      prunable: c.total,
      pruned: c.pruned,
      sparsity: round4(c.pruned / c.total),
      dead_filters: `${c.deadFilters}/${c.filters}`,
      dead_channels: `${c.deadChannels}/${c.channels}`,
      dead_inputs: c.inputs ? `${c.deadInputs}/${c.inputs}` : '',
      compactable: c.compactable,
      compactable_of_pruned: c.pruned ? round4(c.compactable / c.pruned) : 0,
    };
  });
}

const COMPACTION_COLUMNS: ColumnSpec[] = [
  'source',
  'prunable',
  'pruned',
  { key: 'sparsity', format: (v) => pct(Number(v)) },
  { key: 'dead_filters', header: 'dead filters', align: 'right' },
  { key: 'dead_channels', header: 'dead conv channels', align: 'right' },
  { key: 'dead_inputs', header: 'dead linear inputs', align: 'right' },
  { key: 'compactable', header: 'removed by compaction' },
  { key: 'compactable_of_pruned', header: 'of the pruned', format: (v) => pct(Number(v)) },
];

function layerRows(s: SourceAnatomy): TableRow[] {
  return s.layers.map((l) => ({
    layer: l.key,
    shape: l.shape.join('x'),
    kept: pct(l.kept / l.total),
    'dead filters / units': `${l.deadFilters}/${l.filters}`,
    'dead inputs': `${l.deadChannels}/${l.channels} ${l.kind === 'linear' ? 'inputs' : 'channels'}`,
    'removed by compaction': l.compactable,
    'taps kept (rows)': l.kh * l.kw > 1 ? tapRows(l) : '',
  }));
}

function tapRows(l: LayerAnatomy): string {
  const rows: string[] = [];
  for (let r = 0; r < l.kh; r++) rows.push(l.taps.slice(r * l.kw, (r + 1) * l.kw).map((v) => pct(v)).join(' '));
  return rows.join(' / ');
}

/**
 * The per-filter histogram of every layer as a small text chart: a column per bin, headed by the bin's
 * upper edge (dead = nothing kept, then (0, 10%], ..., (90, 100%]); each cell a bar scaled to the
 * layer's largest bin, then the count.
 */
function histogramChart(s: SourceAnatomy): string {
  const w = Math.max(...s.layers.map((l) => l.key.length), 5);
  const cellW = 6;
  const heads = Array.from({ length: DENSITY_BINS }, (_, b) => (b === 0 ? 'dead' : `<=${b * 10}`));
  const head = `${'layer'.padEnd(w)} ${heads.map((h) => h.padStart(cellW)).join('')}  (% kept of the filter)`;
  const lines = s.layers.map((l) => {
    const max = Math.max(...l.filterHistogram);
    const cells = l.filterHistogram.map((c) => `${c === 0 ? ' ' : BARS[Math.max(1, Math.round((c / max) * 8))]}${String(c).padStart(cellW - 2)}`.padStart(cellW));
    return `${l.key.padEnd(w)} ${cells.join('')}  ${l.filters} ${l.kind === 'linear' ? 'units' : 'filters'}`;
  });
  return [head, ...lines].join('\n');
}

function overlapRows(r: MaskAnatomyResult): TableRow[] {
  return r.overlaps.map((c) => {
    const all = c.rows[c.rows.length - 1];
    const layers = c.rows.slice(0, -1);
    const low = layers.reduce((m, x) => (x.jaccard < m.jaccard ? x : m), layers[0]);
    return {
      a: c.a.label,
      b: c.b.label,
      kind: c.kind,
      jaccard: pct(all.jaccard),
      // The Jaccard index nested masks of these sizes have: kept(smaller)/kept(larger).
      'if nested': pct(all.nested),
      'of nested': pct(all.nested ? all.jaccard / all.nested : 1),
      chance: pct(all.chance),
      'lowest layer (of nested)': `${low.key} ${pct(low.nested ? low.jaccard / low.nested : 1)}`,
    };
  });
}

const OVERLAP_NOTE =
  'Overlap of kept weights: Jaccard |A and B| / |A or B|; "if nested" = kept(smaller) / kept(larger), the Jaccard index when one mask holds the other ' +
  '(consecutive IMP levels must reach it: "of nested" 100%); chance = two independent random masks of these densities.';

/** Plain-text tables for the terminal. */
export function formatMaskAnatomy(r: MaskAnatomyResult): string {
  const parts = [
    'Structured compaction (dropping filters and input channels with no kept weight) per mask:',
    formatTable(compactionRows(r.sources), COMPACTION_COLUMNS),
  ];
  for (const s of r.sources) {
    parts.push('', `${s.source.label} (${s.source.file}): per layer; taps = share of kernel slices keeping each kernel position`, formatTable(layerRows(s)));
    parts.push('', `${s.source.label}: filters by kept fraction`, histogramChart(s));
  }
  if (r.overlaps.length) parts.push('', OVERLAP_NOTE, formatTable(overlapRows(r)));
  return parts.join('\n');
}

/** The report.html section; picture paths are made relative to `htmlDir` (where report.html lives). */
export function maskAnatomySection(r: MaskAnatomyResult, htmlDir: string, heading = 'Mask anatomy'): ReportSection {
  const rel = (f: string) => path.relative(htmlDir, path.join(r.outDir, f)).split(path.sep).join('/');
  const parts = [
    '<p>Where the pruning went inside each layer. A <em>dead filter</em> has no kept weight (its output is the bias alone), a <em>dead channel</em> is read by no filter; ' +
      'a structured compaction drops both and removes the weights counted below without any sparse arithmetic. ' +
      `CSV files: ${['anatomy.csv', 'compaction.csv', 'filter_density.csv', 'taps.csv', ...(r.overlaps.length ? ['overlap.csv'] : [])].map((f) => `<a href="${escapeHtml(rel(f))}">${f}</a>`).join(', ')}.</p>`,
    scrollable(htmlTable(compactionRows(r.sources), COMPACTION_COLUMNS, { caption: 'Weights removed by structured compaction' })),
  ];
  if (r.overlaps.length) parts.push(scrollable(htmlTable(overlapRows(r), undefined, { caption: OVERLAP_NOTE })));
  for (const s of r.sources) {
    parts.push(`<h3>${escapeHtml(s.source.label)}</h3>`);
    parts.push(scrollable(htmlTable(layerRows(s), undefined, { caption: 'Per layer; taps kept: % of kernel slices keeping each kernel position, row by row' })));
    parts.push(figureRow(s.grids.map((g) => figure(imageTag(rel(g.file), `${s.source.label} ${g.layer}: kept weights grid`), `${g.layer} (<a href="${escapeHtml(rel(g.svg))}">SVG</a>)`))));
    parts.push(figureRow([figure(s.histogramSvg), ...s.taps.map((t) => figure(t.svg))]));
  }
  return { heading, html: parts.join('\n') };
}

// Grad-CAM over a run folder: the same faces through every chosen level's trained (and masked) model,
// as pictures (overlays, one grid) and numbers (per image and per level), plus a small HTML page.
//
//   <out>/input/NN_<label>.png          the faces as the model sees them (NN = row in the grid)
//   <out>/level_<k>/NN_<label>.png      JET overlays at 50% over the face
//   <out>/grid.png                      columns: input, then the levels; rows: reals, then fakes
//   <out>/summary.csv                   per level: sparsity, n, mean/std of each measure
//   <out>/per_image.csv                 per level and image: logit, the measures, the source
//   <out>/gradcam.html                  the grid, the tables, every overlay with its label
// Levels are sorted; the reference for the distance measures is the first (level 0, the dense model,
// when it is among them).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createModel, MODEL_NAMES, type Detector } from '../nn/models/index.js';
import { loadModel } from '../nn/checkpoint.js';
import { attachMasks, detachMasks, loadMasks, prunableWeights, sparsityReport } from '../prune/masks.js';
import { levelDir, levelName, parseLevelName, runFile, RUN_FILES } from '../io/run-paths.js';
import { levelKernels } from '../nn/sparse.js';
import type { KernelMode } from '../tensor/sparse-plan.js';
import { fromArray } from '../tensor/tensor.js';
import { toCsv } from '../util/csv.js';
import { htmlTable, formatTable, type TableRow } from '../util/table.js';
import { figure, htmlReport, imageTag, scrollable, type ReportSection } from '../report/html.js';
import { escapeHtml } from '../util/escape.js';
import { readJsonSync, writeFileAtomic } from '../io/atomic.js';
import { gradCam, type CamMethod, type CamTarget } from './gradcam.js';
import { compareLevel, confidenceChange, mapOf, summarizeLevel, type ConfidenceChange, type ImageComparison, type LevelSummary } from './compare.js';
import { imageGrid, inputImage, overlayCam, savePng, scaleImage } from './overlay.js';
import { pickImages, type CamImage } from './images.js';

export interface RunInfo {
  dir: string;
  /** The command that made the run (train, imp, ...). */
  command: string;
  model: string;
  data: string;
  size: number;
  seed: number;
  pruneLast: boolean;
}

/** The run's identity from its config.json; errors are one line and name the folder. */
export function readRunInfo(run: string): RunInfo {
  const file = runFile(run, 'config');
  if (!fs.existsSync(file)) throw new Error(`${run}: not a run folder (no config.json)`);
  let cfg: { command?: string; model?: unknown; data?: unknown; size?: unknown; train?: { seed?: unknown }; pruneLast?: unknown };
  try {
    cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  if (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg)) throw new Error(`${file}: not a run config (expected a JSON object)`);
  if (typeof cfg.model !== 'string' || !(MODEL_NAMES as readonly string[]).includes(cfg.model)) {
    throw new Error(`${file}: model '${String(cfg.model)}' is not one of ${MODEL_NAMES.join(', ')}`);
  }
  if (typeof cfg.size !== 'number' || !Number.isInteger(cfg.size)) throw new Error(`${file}: no integer 'size'`);
  return {
    dir: run,
    command: cfg.command ?? '?',
    model: cfg.model,
    data: typeof cfg.data === 'string' ? cfg.data : 'synthetic',
    size: cfg.size,
    seed: typeof cfg.train?.seed === 'number' ? cfg.train.seed : 0,
    pruneLast: cfg.pruneLast === true,
  };
}

/** Level numbers that have a folder in the run, ascending. */
export function runLevels(run: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync(run, { withFileTypes: true })) {
    const k = parseLevelName(e.name);
    if (k !== null && e.isDirectory()) out.push(k);
  }
  return out.sort((a, b) => a - b);
}

/** Levels whose training finished (final.safetensors present). */
export function finishedLevels(run: string): number[] {
  return runLevels(run).filter((k) => fs.existsSync(runFile(levelDir(run, k), 'final')));
}

/** Throws a one-line error naming the first level the run lacks or has not finished. */
export function checkLevels(run: string, levels: readonly number[]): void {
  const have = runLevels(run);
  for (const k of levels) {
    if (!have.includes(k)) throw new Error(`${run} has no level ${k} (levels: ${have.length ? have.join(', ') : 'none'})`);
    if (!fs.existsSync(runFile(levelDir(run, k), 'final'))) {
      throw new Error(`level ${k} of ${run} is not finished (no ${levelName(k)}/final.safetensors)`);
    }
  }
}

/** The `sparsity` of a sparsity.json; a file that does not parse is an error naming it. */
function sparsityIn(file: string): number | undefined {
  const sp = readJsonSync<unknown>(file);
  const v = sp !== null && typeof sp === 'object' ? (sp as { sparsity?: unknown }).sparsity : undefined;
  return typeof v === 'number' ? v : undefined;
}

/** Pruned fraction of a level: sparsity.json, else its mask, else 0 (a dense run without masks). */
export async function levelSparsityOf(run: string, level: number, model?: Detector, pruneLast = false): Promise<number> {
  const dir = levelDir(run, level);
  const spFile = runFile(dir, 'sparsity');
  if (fs.existsSync(spFile)) {
    const sp = sparsityIn(spFile);
    if (sp !== undefined) return sp;
  }
  const maskFile = runFile(dir, 'mask');
  if (model && fs.existsSync(maskFile)) {
    return sparsityReport(await loadMasks(maskFile, prunableWeights(model, pruneLast)), model.parameterCount()).sparsity;
  }
  return 0;
}

/** Default levels: 0 plus the finished levels nearest 60% and 80% sparsity (the study's figure). */
export function defaultLevels(run: string): number[] {
  const done = finishedLevels(run);
  if (!done.length) throw new Error(`${run} has no finished level (no level_<k>/final.safetensors)`);
  const sp = new Map<number, number>();
  for (const k of done) {
    const f = runFile(levelDir(run, k), 'sparsity');
    const s = fs.existsSync(f) ? sparsityIn(f) : undefined;
    sp.set(k, typeof s === 'number' ? s : k === 0 ? 0 : NaN);
  }
  const nearest = (t: number) =>
    done.filter((k) => Number.isFinite(sp.get(k)!)).reduce<number | null>((best, k) => (best === null || Math.abs(sp.get(k)! - t) < Math.abs(sp.get(best)! - t) ? k : best), null);
  const pick = new Set<number>([done[0]]);
  for (const t of [0.6, 0.8]) {
    const k = nearest(t);
    if (k !== null) pick.add(k);
  }
  return [...pick].sort((a, b) => a - b);
}

export interface ExplainOptions {
  run: string;
  /** Levels to compare (sorted and de-duplicated here). */
  levels: readonly number[];
  /** 'synthetic' or a folder (see images.ts). */
  images: string;
  n: number;
  out: string;
  layer?: string;
  target?: CamTarget;
  method?: CamMethod;
  /** Images per forward/backward (default 16). */
  batch?: number;
  /** Kernels of the pruned layers (--kernels; default dense). */
  kernels?: KernelMode;
  log?: (m: string) => void;
}

export interface LevelMaps {
  level: number;
  sparsity: number;
  logits: Float32Array;
  /** [N, H, W] normalised maps at the input size. */
  cams: Float32Array;
  /** [N, h, w] raw maps. */
  raw: Float32Array;
  mapSize: [number, number];
  confidence: ConfidenceChange;
}

export interface ExplainResult {
  info: RunInfo;
  layer: string;
  method: CamMethod;
  target: CamTarget;
  referenceLevel: number;
  images: CamImage[];
  levels: LevelMaps[];
  perImage: ImageComparison[];
  summary: LevelSummary[];
  out: string;
  /** Paths relative to `out`. */
  files: { grid: string; summary: string; perImage: string; html: string; inputs: string[]; overlays: string[][] };
}

const labelName = (l: 0 | 1 | null) => (l === 1 ? 'fake' : l === 0 ? 'real' : 'unlabelled');

/** Runs Grad-CAM over the run's levels and writes everything into `out`. The GPU device must be open. */
export async function explainRun(o: ExplainOptions): Promise<ExplainResult> {
  const log = o.log ?? (() => {});
  const info = readRunInfo(o.run);
  const levels = [...new Set(o.levels)].sort((a, b) => a - b);
  if (!levels.length) throw new Error('no levels to explain');
  checkLevels(o.run, levels);
  const target = o.target ?? 'fake';
  const method = o.method ?? 'gradcam';
  const batch = o.batch ?? 16;
  const size = info.size;
  const images = await pickImages(o.images, { runData: info.data, size, seed: info.seed, n: o.n });
  if (!images.length) throw new Error(`--images ${o.images}: no images picked`);
  const nReal = images.filter((im) => im.label === 0).length;
  const nFake = images.filter((im) => im.label === 1).length;
  log(`images: ${images.length} (${nReal} real, ${nFake} fake${images.length - nReal - nFake ? `, ${images.length - nReal - nFake} unlabelled` : ''}) at ${size}x${size}`);

  const model = createModel(info.model, { size });
  const ws = prunableWeights(model, info.pruneLast);
  const maps: LevelMaps[] = [];
  let layer = o.layer ?? '';
  try {
    for (const k of levels) {
      const dir = levelDir(o.run, k);
      await loadModel(runFile(dir, 'final'), model);
      const maskFile = runFile(dir, 'mask');
      if (fs.existsSync(maskFile)) {
        attachMasks(ws, await loadMasks(maskFile, ws), o.kernels ?? 'dense');
        await levelKernels(model, { mode: o.kernels ?? 'dense', input: [Math.min(batch, images.length), 3, size, size], label: `level ${k}`, log });
      } else detachMasks(ws);
      const sparsity = await levelSparsityOf(o.run, k, model, info.pruneLast);
      const n = images.length;
      const hw = size * size;
      const lm: LevelMaps = {
        level: k,
        sparsity,
        logits: new Float32Array(n),
        cams: new Float32Array(n * hw),
        raw: new Float32Array(0),
        mapSize: [0, 0],
        confidence: { before: new Float32Array(n), after: new Float32Array(n), change: new Float32Array(n) },
      };
      const raws: Float32Array[] = [];
      for (let s = 0; s < n; s += batch) {
        const chunk = images.slice(s, s + batch);
        const xs = new Float32Array(chunk.length * 3 * hw);
        chunk.forEach((im, j) => xs.set(im.image, j * 3 * hw));
        const x = fromArray(xs, [chunk.length, 3, size, size]);
        try {
          const r = await gradCam(model, x, { layer: o.layer, target, method });
          layer = r.layer;
          lm.mapSize = r.mapSize;
          lm.logits.set(r.logits, s);
          lm.cams.set(r.cam, s * hw);
          raws.push(r.raw);
          const c = await confidenceChange(model, x, r.cam, target);
          lm.confidence.before.set(c.before, s);
          lm.confidence.after.set(c.after, s);
          lm.confidence.change.set(c.change, s);
        } finally {
          x.dispose();
        }
      }
      lm.raw = concatF32(raws);
      maps.push(lm);
      log(`level ${k} (${(sparsity * 100).toFixed(1)}% pruned): Grad-CAM${method === 'gradcam++' ? '++' : ''} of ${n} images at ${layer} (${lm.mapSize.join('x')})`);
    }
  } finally {
    detachMasks(ws);
    model.dispose();
  }

  const ref = maps[0];
  const perImage: ImageComparison[] = [];
  const summary: LevelSummary[] = [];
  for (const lm of maps) {
    const rows = compareLevel({
      level: lm.level,
      sparsity: lm.sparsity,
      cams: lm.cams,
      reference: ref.cams,
      logits: lm.logits,
      confidence: lm.confidence,
      sources: images.map((im) => im.source),
      labels: images.map((im) => im.label),
      masks: images.map((im) => im.mask),
    });
    perImage.push(...rows);
    summary.push(summarizeLevel(rows));
  }

  const files = await writeOutputs(o.out, info, images, maps);
  const result: ExplainResult = { info, layer, method, target, referenceLevel: ref.level, images, levels: maps, perImage, summary, out: o.out, files };
  await writeFileAtomic(path.join(o.out, files.summary), toCsv(summary.map(summaryCsvRow)));
  await writeFileAtomic(path.join(o.out, files.perImage), toCsv(perImage.map(perImageCsvRow)));
  await writeFileAtomic(path.join(o.out, files.html), gradcamPage(result, o.images));
  return result;
}

function concatF32(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const csvNum = (v: number) => (Number.isFinite(v) ? Number(v.toPrecision(7)) : null);

function summaryCsvRow(s: LevelSummary): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const [k, v] of Object.entries(s)) out[k] = csvNum(v as number);
  return out;
}

function perImageCsvRow(r: ImageComparison): Record<string, string | number | null> {
  return {
    level: r.level,
    sparsity: csvNum(r.sparsity),
    image: r.image,
    label: r.label,
    logit: csvNum(r.logit),
    frobenius: csvNum(r.frobenius),
    pearson: csvNum(r.pearson),
    confidence_before: csvNum(r.confidenceBefore),
    confidence_after: csvNum(r.confidenceAfter),
    confidence_change: csvNum(r.confidenceChange),
    mask_ratio: csvNum(r.maskRatio),
    source: r.source,
  };
}

/** Grid cells are enlarged (nearest neighbour) to at least 128 px so small inputs stay readable. */
function cellScale(size: number): number {
  return Math.max(1, Math.ceil(128 / size));
}

async function writeOutputs(out: string, info: RunInfo, images: CamImage[], maps: LevelMaps[]): Promise<ExplainResult['files']> {
  const size = info.size;
  const n = images.length;
  const pad = String(n - 1).length;
  const name = (i: number) => `${String(i).padStart(Math.max(2, pad), '0')}_${labelName(images[i].label)}.png`;
  const inputs: string[] = [];
  const overlays: string[][] = maps.map(() => []);
  const faces = images.map((im) => inputImage(im.image, size, size));
  const grid: ReturnType<typeof inputImage>[][] = images.map(() => []);
  const sc = cellScale(size);
  for (let i = 0; i < n; i++) {
    const rel = path.join('input', name(i));
    await savePng(path.join(out, rel), faces[i]);
    inputs.push(rel);
    grid[i].push(scaleImage(faces[i], sc));
  }
  for (let l = 0; l < maps.length; l++) {
    for (let i = 0; i < n; i++) {
      const img = overlayCam(images[i].image, mapOf(maps[l].cams, n, i), size, size);
      const rel = path.join(levelName(maps[l].level), name(i));
      await savePng(path.join(out, rel), img);
      overlays[l].push(rel);
      grid[i].push(scaleImage(img, sc));
    }
  }
  // A wider gap after the last real face and after the input column: the groups read at a glance.
  const lastReal = images.reduce((a, im, i) => (im.label === 0 ? i : a), -1);
  const breaks = lastReal >= 0 && lastReal < n - 1 ? [lastReal] : [];
  await savePng(runFile(out, 'gradcamGrid'), imageGrid(grid, { gap: 4, firstColumnGap: 8, rowBreaks: breaks }));
  return { grid: RUN_FILES.gradcamGrid, summary: RUN_FILES.summary, perImage: RUN_FILES.perImage, html: RUN_FILES.gradcamHtml, inputs, overlays };
}

// ---------------------------------------------------------------------------------------------
// HTML

const pct = (v: number) => (Number.isFinite(v) ? `${(v * 100).toFixed(1)}%` : '–');
const fmt = (v: number, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : '–');
const pm = (m: number, s: number, d = 3) => (Number.isFinite(m) ? `${m.toFixed(d)}${Number.isFinite(s) ? ` ± ${s.toFixed(d)}` : ''}` : '–');

/** The summary as display rows (mean ± sample std). */
export function summaryTableRows(summary: readonly LevelSummary[]): TableRow[] {
  return summary.map((s) => ({
    level: s.level,
    sparsity: pct(s.sparsity),
    n: s.n,
    'accuracy (these images)': pct(s.accuracy),
    '‖L_ref − L‖_F': pm(s.frobenius_mean, s.frobenius_std, 2),
    'Pearson r': pm(s.pearson_mean, s.pearson_std),
    'confidence change': pm(s.confidence_change_mean, s.confidence_change_std),
    ...(s.mask_ratio_n ? { 'mass ratio in blend mask': pm(s.mask_ratio_mean, s.mask_ratio_std, 2) } : {}),
  }));
}

/** The summary for the terminal. */
export function summaryText(r: ExplainResult): string {
  return formatTable(summaryTableRows(r.summary));
}

/**
 * Report sections (grid, summary, per-image overlays) for embedding in a larger page; `prefix` is the
 * path from that page to the Grad-CAM folder ('' when the page sits in it).
 */
export function gradcamSections(r: ExplainResult, prefix = ''): ReportSection[] {
  const at = (rel: string) => (prefix ? path.posix.join(prefix.split(path.sep).join('/'), rel.split(path.sep).join('/')) : rel.split(path.sep).join('/'));
  const nReal = r.images.filter((im) => im.label === 0).length;
  const nFake = r.images.filter((im) => im.label === 1).length;
  const cols = ['input', ...r.levels.map((l) => `level ${l.level} (${pct(l.sparsity)} pruned)`)].join(' | ');
  const rows =
    nReal + nFake === r.images.length
      ? `${nReal} real face${nReal === 1 ? '' : 's'}, then ${nFake} fake${nFake === 1 ? '' : 's'}`
      : `${r.images.length} images (${nReal} real, ${nFake} fake, the rest unlabelled)`;
  const methodName = r.method === 'gradcam++' ? 'Grad-CAM++' : 'Grad-CAM';
  const caption = `${methodName} for the ${r.target} score (${r.target === 'fake' ? '+' : '−'}logit) at ${r.layer}. Columns: ${cols}. Rows: ${rows}, in the order of the table below.`;
  const grid = figure(imageTag(at(r.files.grid), `${methodName} grid`), caption);

  const notes =
    `<p>Distances are to level ${r.referenceLevel}'s maps of the same image (normalised maps at ${r.info.size}×${r.info.size}). ` +
    `Confidence change: sigmoid(score) on the image multiplied by its own map minus on the image (pytorch-grad-cam's CamMultImageConfidenceChange). ` +
    (r.summary.some((s) => s.mask_ratio_n)
      ? 'Mass ratio: map mass per pixel inside the fake\u2019s blend mask (&gt; 0.5) over that outside; above 1 = looks at the swapped face. '
      : '') +
    'Values are mean ± sample standard deviation over the images.</p>';
  const summary = notes + scrollable(htmlTable(summaryTableRows(r.summary)));

  const head = ['#', 'source', 'label', ...r.levels.map((l) => `level ${l.level} (${pct(l.sparsity)})`)];
  const body = r.images.map((im, i) => {
    const cells = r.levels.map((l, j) => {
      const p = 1 / (1 + Math.exp(-l.logits[i]));
      return `<td>${imageTag(at(r.files.overlays[j][i]), `level ${l.level}, image ${i}`, { width: Math.max(96, r.info.size) })}<br><small>p(fake) ${fmt(p, 2)}</small></td>`;
    });
    return `<tr><td class="num">${i}</td><td><code>${escapeHtml(im.source)}</code><br>${imageTag(at(r.files.inputs[i]), `input ${i}`, { width: Math.max(96, r.info.size) })}</td><td>${labelName(im.label)}</td>${cells.join('')}</tr>`;
  });
  const perImage = scrollable(
    `<table>\n<thead><tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead>\n<tbody>\n${body.join('\n')}\n</tbody>\n</table>`,
  );
  return [
    { heading: 'Where the detectors look', html: grid, id: 'gradcam-grid' },
    { heading: 'Attention change with sparsity', html: summary, id: 'gradcam-summary' },
    { heading: 'Every image', html: perImage, id: 'gradcam-images' },
  ];
}

/** The standalone page written as gradcam.html. */
export function gradcamPage(r: ExplainResult, imagesSpec: string): string {
  return htmlReport({
    title: `Grad-CAM: ${path.basename(path.resolve(r.info.dir))}`,
    subtitle: 'Where dense and pruned detectors look, as pictures and as numbers.',
    meta: {
      run: r.info.dir,
      model: r.info.model,
      input: `${r.info.size}×${r.info.size}`,
      layer: r.layer,
      method: r.method,
      target: r.target,
      images: imagesSpec === 'synthetic' ? `synthetic test split of ${r.info.data}` : imagesSpec,
      levels: r.levels.map((l) => l.level).join(', '),
      reference: `level ${r.referenceLevel}`,
    },
    sections: gradcamSections(r),
  });
}

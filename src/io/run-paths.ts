// Every file and folder name of the run layout, named once (open_lth's paths.py idea). Code that reads or
// writes a run folder takes its names from here, never from string literals, so the layout is changed
// (or documented, docs/architecture.md) in one place.
//
//   runs/<name>/
//     config.json  done.json  .lock
//     level_<k>/                    init/rewind/start/final/best/checkpoint .safetensors, mask, sparsity, metrics
//     oneshot_<scope>/level_<k>/
//     controls/<kind>/level_<k>/
//     transfer-<data>/              dense/, <method>_level_<k>/ (transferDir), transfer.json, transfer.csv
//     gradcam/                      gradcam.html, grid.png, summary.csv, per_image.csv, images
//     summary.csv  report.html  accuracy_vs_sparsity.svg  auc_vs_sparsity.svg  layer_sparsity.csv
//                                   (and per group or run: <name>-<slug>.svg, see slugged())
//   <sweep out>/                    sweep root: the runs above, plus sweep-events.jsonl, summary_runs.csv,
//                                   sweep.sbatch, sweep-job.yaml; a level folder of a sweep may hold .lock
//                                   (a worker's claim) and failed.json
import * as fs from 'node:fs';
import * as path from 'node:path';

/** File names inside a run folder or a level folder. */
export const RUN_FILES = {
  /** Every resolved setting: the run's identity. */
  config: 'config.json',
  /** Marks a whole run finished. */
  done: 'done.json',
  /** One writer per folder (io/lock.ts): a run for `train`/`imp`, a level folder for a sweep worker's unit. */
  lock: '.lock',
  /** theta_0, captured at step 0 of the dense level. */
  init: 'init.safetensors',
  /** theta_k for late rewinding. */
  rewind: 'rewind.safetensors',
  /** The weights a level starts from (the rewind point under its mask). */
  start: 'start.safetensors',
  final: 'final.safetensors',
  best: 'best.safetensors',
  /** Weights, optimizer state, loop position; rewritten every epoch and on Ctrl-C. */
  checkpoint: 'checkpoint.safetensors',
  mask: 'mask.safetensors',
  /** Fresh weights of a random re-initialisation control. */
  reinit: 'reinit.safetensors',
  sparsity: 'sparsity.json',
  /** The kernels the pruned layers ran (--kernels sparse|auto): per layer and phase, with auto's timings. */
  sparseKernels: 'sparse-kernels.json',
  metrics: 'metrics.jsonl',
  /** Marks a level finished; holds its test metrics. */
  result: 'result.json',
  /** Transfer: a source model evaluated on the target data. */
  evaluated: 'evaluated.json',
  summary: 'summary.csv',
  report: 'report.html',
  /** A sweep unit (level folder) that failed: the one-line error, where and when; workers skip it. */
  failed: 'failed.json',
  /** Sweep root: one line per claim, finish, failure and takeover of a unit, from every worker. */
  sweepEvents: 'sweep-events.jsonl',
  /** Sweep root, multi-seed reports: summary.csv's per-folder rows (summary.csv then holds mean +- sd). */
  summaryRuns: 'summary_runs.csv',
  /** Sweep root: scheduler files written by `ticketlab sweep --emit`. */
  slurmScript: 'sweep.sbatch',
  k8sJob: 'sweep-job.yaml',
  /** Per-layer kernel profile of a level's training step (ticketlab profile --run). */
  profile: 'profile.json',
  /** The kernels (planner choices) a level trained with, pinned again on --resume. */
  kernels: 'kernels.json',
  /** Report (next to summary.csv and report.html): accuracy and AUC against sparsity, per-layer counts. */
  accuracyPlot: 'accuracy_vs_sparsity.svg',
  aucPlot: 'auc_vs_sparsity.svg',
  layerSparsity: 'layer_sparsity.csv',
  /** Per run (slugged): each layer's density across the levels. */
  layerDensityPlot: 'layer_density.svg',
  /** Transfer folder: every method's row, as JSON and CSV. */
  transferJson: 'transfer.json',
  transferCsv: 'transfer.csv',
  /** Grad-CAM folder (explain/run.ts; summary.csv as above): the page, the image grid, per-image scores. */
  gradcamHtml: 'gradcam.html',
  gradcamGrid: 'grid.png',
  perImage: 'per_image.csv',
} as const;

export type RunFile = keyof typeof RUN_FILES;

export function runFile(dir: string, file: RunFile): string {
  return path.join(dir, RUN_FILES[file]);
}

export function levelName(level: number): string {
  return `level_${level}`;
}

/** runs/<name>/level_<k>: one IMP round (level 0 is dense training). */
export function levelDir(run: string, level: number): string {
  return path.join(run, levelName(level));
}

/** runs/<name>/oneshot_<scope>/level_<k>. */
export function oneshotDir(run: string, scope: string, level: number): string {
  return path.join(run, `oneshot_${scope}`, levelName(level));
}

/** The folder holding a run's controls, one subfolder per kind. */
export const CONTROLS_DIR = 'controls';

/** A run's Grad-CAM comparison (ticketlab gradcam's default --out). */
export const GRADCAM_DIR = 'gradcam';

/** A per-group or per-run variant of a report file: `accuracy_vs_sparsity-<slug>.svg`. */
export function slugged(file: RunFile, slug: string): string {
  const name = RUN_FILES[file];
  const dot = name.lastIndexOf('.');
  return `${name.slice(0, dot)}-${slug}${name.slice(dot)}`;
}

/** A transfer run's folders: the dense model retrained on the target, and each method's ticket. */
export function transferDir(out: string, method: string, level: number): string {
  return path.join(out, method === 'dense' ? 'dense' : `${method}_${levelName(level)}`);
}

/** runs/<name>/controls/<kind>/level_<k>. */
export function controlDir(run: string, kind: string, level: number): string {
  return path.join(run, CONTROLS_DIR, kind, levelName(level));
}

/** The level number of a `level_<k>` folder name, or null. */
export function parseLevelName(name: string): number | null {
  const m = /^level_(\d+)$/.exec(name);
  return m ? Number(m[1]) : null;
}

/** Where a level folder sits in a run: the IMP chain, a one-shot family or a control family. */
export type LevelFamily = { family: 'imp' } | { family: 'oneshot'; scope: string } | { family: 'control'; kind: string };

export type LevelFolder = LevelFamily & { level: number; dir: string };

function levelsUnder(parent: string, family: LevelFamily): LevelFolder[] {
  if (!fs.existsSync(parent) || !fs.statSync(parent).isDirectory()) return [];
  const out: LevelFolder[] = [];
  for (const e of fs.readdirSync(parent, { withFileTypes: true })) {
    const level = parseLevelName(e.name);
    if (level !== null && e.isDirectory()) out.push({ ...family, level, dir: path.join(parent, e.name) });
  }
  return out.sort((a, b) => a.level - b.level);
}

/**
 * Every level folder of a run: level_<k>/ (IMP, level 0 dense), then oneshot_<scope>/level_<k>/, then
 * controls/<kind>/level_<k>/; each family sorted by level, families in folder-name order.
 */
export function listLevelFolders(run: string): LevelFolder[] {
  const out = levelsUnder(run, { family: 'imp' });
  const entries = fs.existsSync(run) ? fs.readdirSync(run, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name)) : [];
  for (const e of entries) {
    const m = /^oneshot_(global|layer)$/.exec(e.name);
    if (m && e.isDirectory()) out.push(...levelsUnder(path.join(run, e.name), { family: 'oneshot', scope: m[1] }));
  }
  const controls = path.join(run, CONTROLS_DIR);
  if (fs.existsSync(controls) && fs.statSync(controls).isDirectory()) {
    for (const e of fs.readdirSync(controls, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.isDirectory() && /^[A-Za-z0-9_-]+$/.test(e.name)) out.push(...levelsUnder(path.join(controls, e.name), { family: 'control', kind: e.name }));
    }
  }
  return out;
}

// Every file and folder name of the run layout, named once (open_lth's paths.py idea). Code that reads or
// writes a run folder takes its names from here, never from string literals, so the layout is changed
// (or documented, docs/architecture.md) in one place.
//
//   runs/<name>/
//     config.json  done.json  .lock
//     level_<k>/                    init/rewind/start/final/best/checkpoint .safetensors, mask, sparsity, metrics
//     oneshot_<scope>/level_<k>/
//     controls/<kind>/level_<k>/
//     transfer-<data>/              dense/, <method>_level_<k>/, transfer.csv
//     gradcam/
//     summary.csv  report.html
import * as path from 'node:path';

/** File names inside a run folder or a level folder. */
export const RUN_FILES = {
  /** Every resolved setting: the run's identity. */
  config: 'config.json',
  /** Marks a whole run finished. */
  done: 'done.json',
  /** One writer per folder (io/run-lock.ts). */
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
  /** Per-layer kernel profile of a level's training step (ticketlab profile --run). */
  profile: 'profile.json',
  /** The kernels (planner choices) a level trained with, pinned again on --resume. */
  kernels: 'kernels.json',
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

/** runs/<name>/controls/<kind>/level_<k>. */
export function controlDir(run: string, kind: string, level: number): string {
  return path.join(run, 'controls', kind, levelName(level));
}

/** The level number of a `level_<k>` folder name, or null. */
export function parseLevelName(name: string): number | null {
  const m = /^level_(\d+)$/.exec(name);
  return m ? Number(m[1]) : null;
}

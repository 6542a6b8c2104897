// One "level" of a lottery-ticket experiment: a folder in which a model starts from given weights,
// under given masks, and trains. IMP levels, one-shot points, controls and transfer retraining are all
// levels; they differ only in where the mask and the start weights come from.
//
//   <level>/mask.safetensors    the 0/1 masks (`<layer>.weight_mask`)
//   <level>/sparsity.json       per-layer and total kept/pruned counts
//   <level>/start.safetensors   the weights training started from (after rewinding), unmasked
//   + what fit() writes: checkpoint/best/final.safetensors, metrics.jsonl, result.json
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Detector } from '../nn/models/index.js';
import type { DatasetSplits } from '../data/datasets.js';
import { fit, type FitResult, type RewindPoint, type TrainSettings } from '../train/trainer.js';
import { loadModel, saveModelOnce } from '../nn/checkpoint.js';
import { runFile } from '../io/run-paths.js';
import { formatJson, readJson, writeFileOnce, writeJsonAtomic } from '../io/atomic.js';
import { familyOfKey, pinKernels } from '../tensor/plan.js';
import { compactionChoice } from '../tensor/ops/compact.js';
import { attachMasks, detachMasks, loadMasks, saveMasks, sparsityReport, type HostMasks, type PrunableWeight, type SparsityReport } from './masks.js';
import { Dropout } from '../nn/layers.js';
import { companionRecords, filterCompanions, filterCompanionTensors } from './filter-companions.js';
import { compactLevel } from './compaction.js';
import type { Compaction } from '../nn/compact.js';
import type { Granularity } from './granularity.js';
import { reestimateBatchNorm, reestimationBatches } from '../train/bn-reestimate.js';
import { detachSparse, levelKernels } from '../nn/sparse.js';
import type { KernelMode } from '../tensor/sparse-plan.js';

export interface LevelRun {
  dir: string;
  model: Detector;
  weights: readonly PrunableWeight[];
  masks: HostMasks;
  /** State-dict file to start from (rewind point); null = the model's current weights. */
  startFrom: string | null;
  data: DatasetSplits;
  settings: TrainSettings;
  resume: boolean;
  progress: boolean;
  signal?: { stop: boolean };
  log: (m: string) => void;
  captures?: readonly RewindPoint[];
  /** Names the level in log lines. */
  label: string;
  /** Kernels of the pruned layers (--kernels; default dense). */
  kernels?: KernelMode;
  /** 'filter' also masks each dead filter's bias and batch-norm channel (filter-companions.ts); default 'weight'. */
  granularity?: Granularity;
  /** Batch-norm running statistics re-estimated over this many training batches before each validation of a pruned level (0: off). */
  bnReestimate?: number;
}

export interface LevelResult extends FitResult {
  sparsity: SparsityReport;
}

export async function loadWeightsFile(model: Detector, file: string): Promise<void> {
  await loadModel(file, model);
}

function sameMasks(file: string, have: HostMasks, want: HostMasks): void {
  for (const [key, w] of want) {
    const h = have.get(key)!; // loadMasks refuses a file that lacks one
    const i = w.findIndex((v, j) => v !== h[j]);
    if (i >= 0) {
      throw new Error(`${file}: mask '${key}_mask' holds ${h[i]} at ${i} where this level's pruning gives ${w[i]}; move the level folder away to redo the level`);
    }
  }
}

/** A checkpointed level whose planner record has no 'compaction' choice (made by code before compaction). */
async function startedWithoutCompaction(dir: string): Promise<boolean> {
  const rec = runFile(dir, 'kernels');
  if (!fs.existsSync(runFile(dir, 'checkpoint')) || !fs.existsSync(rec)) return false;
  return !Object.keys(await readJson<Record<string, string>>(rec)).some((k) => familyOfKey(k) === 'compaction');
}

export async function runLevel(l: LevelRun): Promise<LevelResult> {
  fs.mkdirSync(l.dir, { recursive: true });
  const sp = sparsityReport(l.masks, l.model.parameterCount());
  if (l.granularity === 'filter') sp.companions = companionRecords(l.model, l.weights, l.masks);
  const maskFile = runFile(l.dir, 'mask');
  const finished = fs.existsSync(runFile(l.dir, 'result'));
  // An unfinished level holds the files it has to what its inputs give: the masks (recomputed by the
  // caller from the previous level, the dense weights or a seed) and the counts that follow from them.
  // A flipped mask bit or a damaged sparsity.json was once kept silently beside a level that trained
  // on. A finished level's files are `ticketlab check`'s to judge.
  if (!fs.existsSync(maskFile)) await saveMasks(maskFile, l.weights, l.masks, { sparsity: sp.sparsity.toFixed(6) });
  else if (!finished) sameMasks(maskFile, await loadMasks(maskFile, l.weights), l.masks);
  const spFile = runFile(l.dir, 'sparsity');
  if (!finished || !fs.existsSync(spFile)) {
    await writeFileOnce(spFile, formatJson(sp), `it must hold the counts of ${path.basename(maskFile)}; move the level folder away to redo the level`);
  }
  const startFile = runFile(l.dir, 'start');
  if (finished) {
    // Finished: fit() loads its final weights and returns the stored result.
  } else if (l.startFrom) {
    await loadWeightsFile(l.model, l.startFrom);
  }
  // Written once, never replaced; `from` is relative to the level folder so the file's bytes do not
  // depend on where the run lives (two identical runs in different folders give identical files). An
  // unfinished level checks the one it has (same bytes kept, other bytes refused naming the file): a
  // damaged start.safetensors was once kept silently beside a level that trained on.
  if (!finished) {
    await saveModelOnce(startFile, l.model, { ticketlab: 'start', from: l.startFrom ? path.relative(l.dir, l.startFrom).split(path.sep).join('/') : 'current' });
  }
  // Each level draws the same dropout stream from its start: levels differ only by mask and weights.
  for (const [, m] of l.model.namedModules()) if (m instanceof Dropout) m.drawn = 0;
  const kernels = l.kernels ?? 'dense';
  const gpuMasks = attachMasks(l.weights, l.masks, kernels);
  const companions = l.granularity === 'filter' ? filterCompanionTensors(l.model, l.weights, l.masks) : new Map<string, never>();
  let compaction: Compaction | null = null;
  l.log(`${l.label}: ${(sp.sparsity * 100).toFixed(1)}% pruned, ${sp.kept.toLocaleString('en-US')} of ${sp.total.toLocaleString('en-US')} prunable weights left`);
  try {
    // Removable channels leave the network (nn/compact.ts) unless the planner's 'compaction' choice,
    // recorded in kernels.json (pinned here as fit() will pin it), is 'masked'. Decided before the
    // kernel plan: a layer that runs compacted runs the dense kernels on its smaller problem, so it
    // drops its sparse layout and neither sparse-kernels.json nor kernels.json lists sparse kernels for it.
    const c = compactLevel(l.model, l.weights, l.masks, l.granularity === 'filter' ? filterCompanions(l.model, l.weights, l.masks) : new Map());
    compaction = c.compaction;
    // A level checkpointed before compaction existed resumes as it started: masked.
    if (compaction && (await startedWithoutCompaction(l.dir))) {
      compaction.dispose();
      compaction = null;
    }
    if (compaction) {
      const rec = runFile(l.dir, 'kernels');
      if (fs.existsSync(rec)) pinKernels(await readJson<Record<string, string>>(rec));
      if (compactionChoice(compaction.sites) === 'compacted') for (const layer of compaction.layers) detachSparse(layer);
      l.log(`${l.label}: compaction removes ${c.cuts.removed} of ${c.cuts.channels} channels (${compaction.sites})${c.cuts.carried ? `, ${c.cuts.carried} dead filters' constant outputs carried into the next layer` : ''}`);
    }
    if (c.cuts.declined) l.log(`${l.label}: ${c.cuts.declined} dead filters stay: their channel is a constant the next layer reads, at a site without a carry`);
    await levelKernels(l.model, { mode: kernels, input: [l.settings.batch, 3, l.data.train.size, l.data.train.size], dir: l.dir, label: l.label, log: l.log });
    const res = await fit({
      model: l.model,
      train: l.data.train,
      val: l.data.val,
      test: l.data.test,
      settings: l.settings,
      dir: l.dir,
      resume: l.resume,
      masks: new Map([...gpuMasks, ...companions]),
      captures: l.captures,
      progress: l.progress,
      signal: l.signal,
      log: l.log,
      // Dense levels keep their running statistics: nothing was pruned under them.
      beforeEval: l.bnReestimate && sp.pruned > 0 ? async () => void (await reestimateBatchNorm(l.model, reestimationBatches(l.data.train, l.settings.batch, l.settings.seed), l.bnReestimate!)) : undefined,
    });
    return { ...res, sparsity: sp };
  } finally {
    compaction?.dispose();
    detachMasks(l.weights);
    for (const t of companions.values()) t.dispose();
  }
}

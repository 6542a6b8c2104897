// Ticket transfer (the study's Table I): a ticket found on dataset A, (a) evaluated on dataset B as
// trained on A, (b) retrained on B from the ticket's rewind point; next to a dense model trained on B
// from the same initial weights.
//   <out>/dense/                 dense on B
//   <out>/<method>_level_<k>/    ticket retrained on B; evaluated.json holds (a)
//   <out>/transfer.json, transfer.csv
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DatasetSplits } from '../data/datasets.js';
import { createModel } from '../nn/models/index.js';
import { levelDir, oneshotDir, runFile, transferDir } from '../io/run-paths.js';
import { evaluate } from '../train/trainer.js';
import type { BinaryMetrics } from '../train/metrics.js';
import { metricsFrom, roundMetrics } from '../train/metrics.js';
import { readJson, writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { toCsv } from '../util/csv.js';
import { attachMasks, detachMasks, loadMasks, onesMasks, prunableWeights, sparsityReport } from './masks.js';
import { loadWeightsFile, runLevel } from './level.js';
import { parseRewind, rewindFile, type ImpConfig } from './imp.js';
import type { KernelMode } from '../tensor/sparse-plan.js';

export interface TransferOptions {
  source: string;
  out: string;
  data: DatasetSplits;
  levels: number[];
  oneshot: boolean;
  resume: boolean;
  progress: boolean;
  signal?: { stop: boolean };
  log: (m: string) => void;
  /** Kernels of the pruned layers (--kernels; default dense). */
  kernels?: KernelMode;
}

export interface TransferRow {
  method: string;
  level: number;
  sparsity: number;
  /** The A-trained sparse model on B's test split. */
  evaluated: BinaryMetrics | null;
  /** The ticket retrained on B, on B's test split. */
  retrained: BinaryMetrics | null;
}

export async function runTransfer(cfg: ImpConfig, o: TransferOptions): Promise<TransferRow[]> {
  const model = createModel(cfg.model, { size: cfg.size, seed: cfg.train.seed });
  const ws = prunableWeights(model, cfg.pruneLast);
  const rw = parseRewind(cfg.rewind);
  const rows: TransferRow[] = [];
  const common = { model, weights: ws, data: o.data, settings: cfg.train, resume: o.resume, progress: o.progress, signal: o.signal, log: o.log, kernels: o.kernels ?? 'dense' };
  try {
    const dense = await runLevel({
      ...common,
      dir: transferDir(o.out, 'dense', 0),
      masks: onesMasks(ws),
      startFrom: runFile(levelDir(o.source, 0), 'init'),
      label: 'transfer: dense on target',
    });
    const denseOnTarget = await evaluateOnTarget(o, levelDir(o.source, 0), transferDir(o.out, 'dense', 0), model, ws, onesMasks(ws), cfg.train.batch);
    rows.push({ method: 'dense', level: 0, sparsity: 0, evaluated: denseOnTarget, retrained: dense.test });
    const sources: { method: string; level: number; dir: string }[] = [];
    for (const k of o.levels) {
      sources.push({ method: `imp-${cfg.scope}`, level: k, dir: levelDir(o.source, k) });
      if (o.oneshot) {
        const d = oneshotDir(o.source, cfg.scope, k);
        if (fs.existsSync(runFile(d, 'result'))) sources.push({ method: `oneshot-${cfg.scope}`, level: k, dir: d });
      }
    }
    for (const s of sources) {
      const masks = await loadMasks(runFile(s.dir, 'mask'), ws);
      const dir = transferDir(o.out, s.method, s.level);
      const evaluated = await evaluateOnTarget(o, s.dir, dir, model, ws, masks, cfg.train.batch);
      const start = rw.kind === 'none' ? runFile(s.dir, 'final') : rewindFile(o.source, rw, 0);
      const res = await runLevel({ ...common, dir, masks, startFrom: start, label: `transfer: ${s.method} level ${s.level} retrained on target` });
      rows.push({ method: s.method, level: s.level, sparsity: sparsityReport(masks, model.parameterCount()).sparsity, evaluated, retrained: res.test });
    }
  } finally {
    model.dispose();
  }
  // Paths relative to the output folder: file contents must not depend on where the run lives.
  const rel = (p: string) => path.relative(o.out, p).split(path.sep).join('/') || '.';
  const target = o.data.root ? `${o.data.layout}:${rel(o.data.root)}` : o.data.name;
  await writeJsonAtomic(runFile(o.out, 'transferJson'), { source: rel(o.source), target, rows });
  await writeFileAtomic(
    runFile(o.out, 'transferCsv'),
    toCsv(
      rows.map((r) => ({
        method: r.method,
        level: r.level,
        sparsity: round(r.sparsity),
        source_trained_accuracy_on_target: r.evaluated ? round(r.evaluated.accuracy) : null,
        retrained_accuracy_on_target: r.retrained ? round(r.retrained.accuracy) : null,
        retrained_auc_on_target: r.retrained ? round(r.retrained.auc) : null,
      })),
    ),
  );
  return rows;
}

function round(v: number): number {
  return Math.round(v * 1e6) / 1e6;
}

/** The A-trained model of `sourceDir`, under its masks, evaluated on B's test split (cached in outDir). */
async function evaluateOnTarget(
  o: TransferOptions,
  sourceDir: string,
  outDir: string,
  model: ReturnType<typeof createModel>,
  ws: ReturnType<typeof prunableWeights>,
  masks: Awaited<ReturnType<typeof loadMasks>>,
  batch: number,
): Promise<BinaryMetrics> {
  const file = runFile(outDir, 'evaluated');
  if (fs.existsSync(file)) return metricsFrom(await readJson<unknown>(file), file);
  await loadWeightsFile(model, runFile(sourceDir, 'final'));
  attachMasks(ws, masks, o.kernels ?? 'dense');
  try {
    const res = roundMetrics(await evaluate(model, o.data.test, batch, 'evaluate source ticket', o.progress));
    await writeJsonAtomic(file, res);
    return res;
  } finally {
    detachMasks(ws);
  }
}

// The epoch runner: one epoch of training steps from a (possibly resumed) batch, then validation, the
// best weights, the epoch's log line and its checkpoint. fit() (trainer.ts) sets the run up and calls it
// once per epoch; an interrupt saves a mid-epoch checkpoint and throws Interrupted.
import type { Detector } from '../nn/models/index.js';
import type { Optimizer } from '../nn/optim/optimizer.js';
import { lrAt, type ScheduleConfig } from '../nn/optim/schedule.js';
import type { Dropout } from '../nn/layers.js';
import { fromArray, keep, tidy, type Tensor } from '../tensor/tensor.js';
import { queue } from '../tensor/queue.js';
import { scatterSlice } from '../tensor/ops/layout.js';
import { fill } from '../tensor/ops/map.js';
import { writeTensor } from '../tensor/io.js';
import { backward, noGrad } from '../autograd/tape.js';
import * as F from '../autograd/functional.js';
import type { Batch, DataLoader } from '../data/loader.js';
import type { Dataset } from '../data/datasets.js';
import { saveSafetensors, type HostTensor } from '../io/safetensors.js';
import { appendJsonl } from '../io/jsonl.js';
import { firstNonFinite } from '../nn/checkpoint.js';
import { Progress } from '../util/progress.js';
import { binaryMetrics, roundMetrics, type BinaryMetrics } from './metrics.js';
import { checkpointTensors, saveCheckpoint, withPartialEpoch, type LoopState, type PartialEpoch } from './checkpointing.js';
import { evaluate, NonFiniteError } from './evaluate.js';
import { DivergedError, Interrupted, type EpochRecord, type TrainSettings } from './types.js';

/** What an epoch needs of the run fit() has set up. */
export interface EpochRun {
  model: Detector;
  opt: Optimizer;
  loader: DataLoader;
  settings: TrainSettings;
  schedule: ScheduleConfig;
  train: Dataset;
  val: Dataset;
  drops: readonly Dropout[];
  dir: string;
  files: { checkpoint: string; best: string; metrics: string };
  /** The epoch log so far; each finished epoch appends its record. */
  history: EpochRecord[];
  capture: (kind: 'step' | 'epoch', at: number) => Promise<void>;
  /** Writes the kernels the level trains with beside the checkpoint (checkpointing.ts saveKernels). */
  saveKernels: () => Promise<void>;
  progress?: boolean;
  signal?: { stop: boolean };
  log: (msg: string) => void;
  /** Whether a checkpoint exists on disk (for the divergence message's "last good checkpoint"). */
  hasCheckpoint: () => boolean;
}

/**
 * Runs epoch `st.epoch` from batch `st.batch` (`partial`: the logits an interrupted epoch had done) to
 * its checkpoint, updating `st` in place. Returns true when early stopping ends the run.
 */
export async function runEpoch(r: EpochRun, st: LoopState, partial: PartialEpoch | null): Promise<boolean> {
  const s = r.settings;
  const nTrain = r.train.length();
  r.model.train();
  const epochStart = performance.now();
  const logits = keep(fill([nTrain], 0));
  const losses = keep(fill([Math.max(1, r.loader.numBatches())], 0));
  const firstBatch = st.batch;
  const labels = new Float32Array(nTrain);
  const rows = new Uint8Array(nTrain);
  if (partial) {
    writeTensor(logits, partial.logits);
    labels.set(partial.labels);
    rows.set(partial.rows);
  }
  let at = st.batch * s.batch;
  const bar = r.progress ? new Progress({ total: nTrain, label: `epoch ${st.epoch + 1}/${s.epochs}`, unit: 'img' }) : null;
  bar?.tick(at);
  let images = 0;
  try {
    for await (const b of r.loader.epoch(st.epoch, st.batch)) {
      r.opt.lr = lrAt(s.lr, st.step, r.schedule);
      trainStep(r.model, r.opt, b, logits, at, losses);
      // At most a couple of steps ahead of the device: progress, ETA and Ctrl-C follow real work.
      await queue.endStep();
      labels.set(b.y, at);
      rows.fill(1, at, at + b.n);
      at += b.n;
      images += b.n;
      // The loader's batch number, not a count: a batch whose images were all unreadable is not
      // yielded, and a resume must still continue after the right one.
      st.batch = b.batch + 1;
      st.step++;
      bar?.tick(b.n);
      await r.capture('step', st.step);
      if (r.signal?.stop) {
        bar?.done();
        await queue.sync();
        st.dropoutDrawn = r.drops.map((d) => d.drawn);
        const tensors = await checkpointTensors(r.model, r.opt);
        await checkDiverged(r, st, losses, firstBatch, st.batch, tensors);
        await r.saveKernels();
        withPartialEpoch(tensors, { logits: (await logits.toArray()) as Float32Array, labels, rows });
        await saveCheckpoint(r.files.checkpoint, tensors, r.opt, st);
        throw new Interrupted(r.dir);
      }
    }
    await queue.sync();
    bar?.done();
    const host = (await logits.toArray()) as Float32Array;
    // Rows trained before an interrupt come back from the checkpoint; only an old checkpoint without
    // them leaves the first rows of a resumed epoch out.
    const keepIdx = [...rows.keys()].filter((i) => rows[i]);
    if (keepIdx.length === 0 && firstBatch === 0) throw new Error(`${r.train.name}: no readable image in the training split (all ${nTrain} skipped)`);
    // One readback of weights and optimizer state per epoch serves the divergence check, best.safetensors
    // and the checkpoint (nothing changes them in between).
    const tensors = await checkpointTensors(r.model, r.opt);
    await checkDiverged(r, st, losses, firstBatch, Math.max(firstBatch, st.batch), tensors);
    const trainM = binaryMetrics(
      keepIdx.map((i) => host[i]),
      keepIdx.map((i) => labels[i]),
    );
    const seconds = (performance.now() - epochStart) / 1000;
    return await finishEpoch(r, st, tensors, trainM, seconds, images);
  } finally {
    logits.dispose();
    losses.dispose();
  }
}

/** Validation, the best weights, the epoch's log line and its checkpoint. */
async function finishEpoch(r: EpochRun, st: LoopState, tensors: Record<string, HostTensor>, trainM: BinaryMetrics, seconds: number, images: number): Promise<boolean> {
  const s = r.settings;
  let valM: BinaryMetrics;
  try {
    valM = await evaluate(r.model, r.val, s.batch, 'validate', r.progress, { checkWeights: false });
  } catch (e) {
    if (e instanceof NonFiniteError) throw new DivergedError(r.dir, st.step, `validation logits are NaN/Inf after epoch ${st.epoch + 1}`, lastGood(r, st));
    throw e;
  }
  const better = valM.loss < st.bestValLoss;
  if (better) {
    st.bestValLoss = valM.loss;
    st.bestEpoch = st.epoch;
    st.badEpochs = 0;
    const weights = Object.fromEntries([...r.model.stateDict().keys()].map((k) => [k, tensors[k]]));
    await saveSafetensors(r.files.best, weights, { ticketlab: 'weights', epoch: String(st.epoch + 1) });
  } else st.badEpochs++;
  const rec: EpochRecord = {
    epoch: st.epoch,
    step: st.step,
    lr: r.opt.lr,
    seconds: Math.round(seconds * 1000) / 1000,
    imagesPerSecond: Math.round((images / seconds) * 10) / 10,
    train: roundMetrics(trainM),
    val: roundMetrics(valM),
    best: better,
  };
  await appendJsonl(r.files.metrics, rec);
  r.history.push(rec);
  st.seconds += seconds;
  st.images += images;
  r.log(
    `epoch ${st.epoch + 1}/${s.epochs}: train loss ${trainM.loss.toFixed(4)} acc ${(trainM.accuracy * 100).toFixed(1)}% | ` +
      `val loss ${valM.loss.toFixed(4)} acc ${(valM.accuracy * 100).toFixed(1)}% auc ${valM.auc.toFixed(3)}${better ? ' *' : ''} | ${rec.imagesPerSecond} img/s`,
  );
  st.epoch++;
  st.batch = 0;
  await r.capture('epoch', st.epoch);
  st.dropoutDrawn = r.drops.map((d) => d.drawn);
  await r.saveKernels();
  await saveCheckpoint(r.files.checkpoint, tensors, r.opt, st);
  if (s.patience > 0 && st.badEpochs >= s.patience) {
    r.log(`early stop: no better validation loss for ${s.patience} epochs (best: epoch ${st.bestEpoch + 1})`);
    return true;
  }
  return false;
}

function lastGood(r: EpochRun, st: LoopState): string {
  return r.hasCheckpoint() ? `the last good checkpoint (epoch ${st.epoch}, batch ${st.batch}) stays in ${r.files.checkpoint}` : 'no checkpoint was written before it';
}

/**
 * Checks the epoch's per-step losses (one readback per epoch, not per step) and, when one is NaN/Inf,
 * the weights, to name the first step and the first tensor that went bad.
 */
async function checkDiverged(r: EpochRun, st: LoopState, losses: Tensor, fromBatch: number, toBatch: number, weights: Record<string, HostTensor>): Promise<void> {
  const l = (await losses.toArray()) as Float32Array;
  const firstBad = l.subarray(fromBatch, toBatch).findIndex((v) => !Number.isFinite(v));
  const badW = firstNonFinite(Object.entries(weights).filter(([k]) => !k.startsWith('optimizer.')).map(([k, t]) => [k, { data: t.data as ArrayLike<number> }]));
  if (firstBad < 0 && !badW) return;
  const batchNo = firstBad >= 0 ? fromBatch + firstBad : toBatch - 1;
  const stepNo = st.step - (toBatch - batchNo) + 1;
  const lossText = firstBad >= 0 ? `loss ${l[batchNo]} at epoch ${st.epoch + 1}, batch ${batchNo + 1}` : `weights non-finite by the end of epoch ${st.epoch + 1}`;
  const wText = badW ? `tensor '${badW.key}' has ${badW.count} of ${badW.total} values NaN/Inf` : 'every weight is still finite (the logits overflowed)';
  throw new DivergedError(r.dir, stepNo, `${lossText}; ${wText}`, lastGood(r, st));
}

/**
 * Forward, BCE loss, backward, optimizer step; the logits land in `logits[at:at+n]` and the loss in
 * `losses[b.batch]` on the GPU, read back once per epoch (divergence check).
 */
function trainStep(model: Detector, opt: Optimizer, b: Batch, logits: Tensor, at: number, losses: Tensor): void {
  tidy(() => {
    const x = fromArray(b.x, b.shape);
    const y = fromArray(b.y, [b.n, 1]);
    const out = model.forward(x);
    const loss = F.bceWithLogits(out, y);
    backward(loss);
    opt.step();
    opt.zeroGrad();
    noGrad(() => {
      scatterSlice(logits, out.reshape([b.n]), 0, at);
      scatterSlice(losses, loss.reshape([1]), 0, b.batch);
    });
  });
}

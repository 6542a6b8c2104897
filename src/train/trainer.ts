// The training loop of one model on one dataset: epochs of Adam (or SGD/AdamW) steps, validation after
// each epoch, early stopping on validation loss, and crash-safe state in a folder:
//
//   checkpoint.safetensors  weights + optimizer state + loop position, after every epoch and on Ctrl-C
//   best.safetensors        weights at the best validation loss so far
//   final.safetensors       the weights the run ends with (the best ones: early stopping restores them)
//   metrics.jsonl           one line per epoch, then one with the test metrics
//   result.json             written last; its presence means "finished" (re-running is a no-op)
//
// Resuming loads checkpoint.safetensors and continues at the saved epoch and batch: the shuffle order
// is a pure function of (seed, epoch), so the run continues exactly where it stopped.
import * as fs from 'node:fs';
import type { Detector } from '../nn/models/index.js';
import { Optimizer, type OptimizerConfig } from '../nn/optim/optimizer.js';
import { lrAt, parseSchedule } from '../nn/optim/schedule.js';
import { fromArray, keep, tidy, type Tensor } from '../tensor/tensor.js';
import { queue } from '../tensor/queue.js';
import { scatterSlice } from '../tensor/ops/layout.js';
import { fill } from '../tensor/ops/map.js';
import { backward, noGrad } from '../autograd/tape.js';
import * as F from '../autograd/functional.js';
import { DataLoader, type Batch } from '../data/loader.js';
import type { Dataset } from '../data/datasets.js';
import { saveSafetensors } from '../io/safetensors.js';
import { readJson, writeJsonAtomic } from '../io/atomic.js';
import { appendJsonl, readJsonl } from '../io/jsonl.js';
import { readF32Tensors, toHostTensors } from '../nn/checkpoint.js';
import { Progress } from '../util/progress.js';
import { binaryMetrics, roundMetrics, type BinaryMetrics } from './metrics.js';
import { Dropout } from '../nn/layers.js';
import { writeTensor } from '../tensor/io.js';
import { runFile } from '../io/run-paths.js';
import { clearPins, pinKernels, plannerRecord, resetPlannerRecord } from '../tensor/plan.js';

export interface TrainSettings {
  epochs: number;
  batch: number;
  lr: number;
  optimizer: 'adam' | 'adamw' | 'sgd';
  momentum: number;
  weightDecay: number;
  /** constant | cosine | step:<steps>:<gamma> */
  schedule: string;
  warmupSteps: number;
  /** Early stopping: epochs without a better validation loss before stopping (0 = never stop early). */
  patience: number;
  seed: number;
  /** Horizontal-flip augmentation of training images. */
  flip: boolean;
}

export const DEFAULT_TRAIN: TrainSettings = {
  epochs: 10,
  batch: 32,
  lr: 1e-4,
  optimizer: 'adam',
  momentum: 0.9,
  weightDecay: 0,
  schedule: 'constant',
  warmupSteps: 0,
  patience: 10,
  seed: 0,
  flip: true,
};

export interface EpochRecord {
  epoch: number;
  step: number;
  lr: number;
  seconds: number;
  imagesPerSecond: number;
  train: BinaryMetrics;
  val: BinaryMetrics;
  best: boolean;
}

export interface FitResult {
  epochs: number;
  steps: number;
  bestEpoch: number;
  bestVal: BinaryMetrics | null;
  test: BinaryMetrics | null;
  stoppedEarly: boolean;
  seconds: number;
  imagesPerSecond: number;
}

/** Snapshot of the weights at a point in training (theta_0, and theta_k for late rewinding). */
export interface RewindPoint {
  kind: 'step' | 'epoch';
  /** Capture after this many steps/epochs (0 = before the first step). */
  at: number;
  capture: (model: Detector) => Promise<void>;
}

export interface FitOptions {
  model: Detector;
  train: Dataset;
  val: Dataset;
  test?: Dataset;
  settings: TrainSettings;
  dir: string;
  /** Resume from dir/checkpoint.safetensors if present (otherwise a present checkpoint is an error). */
  resume?: boolean;
  /** 0/1 masks by parameter key: the optimizer keeps masked weights and their state at exactly zero. */
  masks?: ReadonlyMap<string, Tensor>;
  /** Weight snapshots to take during training; each runs when its step/epoch is reached. */
  captures?: readonly RewindPoint[];
  /** Show a progress bar on stderr. */
  progress?: boolean;
  /** Set .stop = true (e.g. on SIGINT) to finish the current step, save and return. */
  signal?: { stop: boolean };
  log?: (msg: string) => void;
}

interface LoopState {
  epoch: number;
  batch: number;
  step: number;
  bestValLoss: number;
  bestEpoch: number;
  badEpochs: number;
  dropoutDrawn: number[];
  seconds: number;
  images: number;
}

export class Interrupted extends Error {
  constructor(readonly dir: string) {
    super(`interrupted; state saved in ${dir} (resume with --resume)`);
  }
}

function optimizerConfig(s: TrainSettings): OptimizerConfig {
  if (!(s.lr > 0)) throw new Error(`--lr ${s.lr} must be positive`);
  if (s.optimizer === 'sgd') return { kind: 'sgd', lr: s.lr, momentum: s.momentum, weightDecay: s.weightDecay };
  return { kind: s.optimizer, lr: s.lr, weightDecay: s.weightDecay };
}

function dropouts(model: Detector): Dropout[] {
  return [...model.namedModules()].map(([, m]) => m).filter((m): m is Dropout => m instanceof Dropout);
}

async function saveCheckpoint(file: string, model: Detector, opt: Optimizer, st: LoopState): Promise<void> {
  const tensors = await toHostTensors([
    ...model.stateDict(),
    ...opt.namedState().map(([k, t]): [string, Tensor] => [`optimizer.${k}`, t]),
  ]);
  await saveSafetensors(file, tensors, { ticketlab: 'checkpoint', state: JSON.stringify({ ...st, optimizerStep: opt.stepCount }) });
}

async function loadCheckpoint(file: string, model: Detector, opt: Optimizer): Promise<LoopState> {
  const { tensors, metadata } = await readF32Tensors(file);
  if (metadata.ticketlab !== 'checkpoint' || !metadata.state) throw new Error(`${file} is not a ticketlab training checkpoint`);
  const modelKeys = new Map([...tensors].filter(([k]) => !k.startsWith('optimizer.')));
  try {
    model.loadStateDict(modelKeys);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  for (const [k, t] of opt.namedState()) {
    const src = tensors.get(`optimizer.${k}`);
    if (!src) throw new Error(`${file}: optimizer state 'optimizer.${k}' is missing`);
    writeTensor(t, src.data);
  }
  const st = JSON.parse(metadata.state) as LoopState & { optimizerStep: number };
  opt.stepCount = st.optimizerStep;
  return st;
}

/** Evaluates a model on a dataset (eval mode, no grad): logits -> metrics. */
export async function evaluate(model: Detector, ds: Dataset, batch: number, label = 'eval', progress = false): Promise<BinaryMetrics> {
  const wasTraining = model.training;
  model.eval();
  const loader = new DataLoader(ds, { batchSize: batch, shuffle: false });
  const n = ds.length();
  const logits = keep(fill([n], 0));
  const labels = new Float32Array(n);
  const bar = progress ? new Progress({ total: n, label, unit: 'img' }) : null;
  let at = 0;
  try {
    for await (const b of loader.epoch(0)) {
      noGrad(() =>
        tidy(() => {
          const x = fromArray(b.x, b.shape);
          const y = model.forward(x);
          scatterSlice(logits, y.reshape([b.n]), 0, at);
        }),
      );
      await queue.endStep();
      labels.set(b.y, at);
      at += b.n;
      bar?.tick(b.n);
    }
    const host = (await logits.toArray()) as Float32Array;
    bar?.done();
    return binaryMetrics(host.subarray(0, at), labels.subarray(0, at));
  } finally {
    logits.dispose();
    if (wasTraining) model.train();
  }
}

/**
 * The kernels a level trains with (planner choices, src/tensor/plan.ts), written beside its checkpoint:
 * a resumed level pins them again, so a tuning cache that changed in between cannot change its bits.
 */
async function saveKernels(file: string, pinned: Record<string, string>): Promise<void> {
  await writeJsonAtomic(file, { ...pinned, ...plannerRecord() });
}

/** Trains `model` in place; see the file comment for what lands in `dir`. */
export async function fit(o: FitOptions): Promise<FitResult> {
  const s = o.settings;
  const log = o.log ?? ((m: string) => process.stderr.write(m + '\n'));
  const dir = o.dir;
  const resultFile = runFile(dir, 'result');
  const ckptFile = runFile(dir, 'checkpoint');
  const bestFile = runFile(dir, 'best');
  const metricsFile = runFile(dir, 'metrics');
  fs.mkdirSync(dir, { recursive: true });
  if (fs.existsSync(resultFile)) {
    // Finished before: load its final weights so callers continue from the same model.
    const { tensors } = await readF32Tensors(runFile(dir, 'final'));
    o.model.loadStateDict(tensors);
    return readJson<FitResult>(resultFile);
  }
  if (!Number.isInteger(s.epochs) || s.epochs < 1) throw new Error(`--epochs ${s.epochs} must be a positive integer`);
  if (!Number.isInteger(s.batch) || s.batch < 1) throw new Error(`--batch ${s.batch} must be a positive integer`);

  const named = [...o.model.namedParameters()];
  const opt = new Optimizer(
    named.map(([, t]) => t),
    optimizerConfig(s),
    named.map(([k]) => k),
  );
  for (const [k, t] of named) {
    const m = o.masks?.get(k);
    if (m) opt.setMask(t, m);
  }
  const loader = new DataLoader(o.train, { batchSize: s.batch, shuffle: true, seed: s.seed, flip: s.flip });
  const stepsPerEpoch = loader.numBatches();
  const schedule = { schedule: parseSchedule(s.schedule, stepsPerEpoch * s.epochs), warmupSteps: s.warmupSteps };
  const drops = dropouts(o.model);

  const kernelsFile = runFile(dir, 'kernels');
  clearPins();
  resetPlannerRecord();
  const pinned = fs.existsSync(kernelsFile) ? await readJson<Record<string, string>>(kernelsFile) : {};
  pinKernels(pinned);

  let st: LoopState = { epoch: 0, batch: 0, step: 0, bestValLoss: Infinity, bestEpoch: -1, badEpochs: 0, dropoutDrawn: [], seconds: 0, images: 0 };
  if (fs.existsSync(ckptFile)) {
    if (!o.resume) throw new Error(`${dir} holds an unfinished run; pass --resume to continue it or choose another --out`);
    st = await loadCheckpoint(ckptFile, o.model, opt);
    drops.forEach((d, i) => (d.drawn = st.dropoutDrawn[i] ?? 0));
    log(`resuming ${dir} at epoch ${st.epoch + 1}, batch ${st.batch}`);
  } else if (fs.existsSync(metricsFile)) {
    // A run killed before its first checkpoint: its partial log has nothing to keep.
    fs.rmSync(metricsFile);
  }
  const done = await readJsonl<EpochRecord>(metricsFile).catch(() => ({ records: [] as EpochRecord[] }));
  const history = (done.records as EpochRecord[]).filter((r) => r.epoch < st.epoch || (r.epoch === st.epoch && st.batch === 0));

  const capture = async (kind: 'step' | 'epoch', at: number) => {
    for (const c of o.captures ?? []) if ((c.at === 0 ? at === 0 : c.kind === kind && c.at === at)) await c.capture(o.model);
  };
  if (st.step === 0 && st.epoch === 0 && st.batch === 0) await capture('step', 0);

  const nTrain = o.train.length();
  let stoppedEarly = false;
  try {
    while (st.epoch < s.epochs) {
      o.model.train();
      const epochStart = performance.now();
      const logits = keep(fill([nTrain], 0));
      const labels = new Float32Array(nTrain);
      const rows = new Uint8Array(nTrain);
      let at = st.batch * s.batch;
      const bar = o.progress ? new Progress({ total: nTrain, label: `epoch ${st.epoch + 1}/${s.epochs}`, unit: 'img' }) : null;
      bar?.tick(at);
      let images = 0;
      try {
        for await (const b of loader.epoch(st.epoch, st.batch)) {
          opt.lr = lrAt(s.lr, st.step, schedule);
          trainStep(o.model, opt, b, logits, at);
          // At most a couple of steps ahead of the device: progress, ETA and Ctrl-C follow real work.
          await queue.endStep();
          labels.set(b.y, at);
          rows.fill(1, at, at + b.n);
          at += b.n;
          images += b.n;
          st.batch++;
          st.step++;
          bar?.tick(b.n);
          await capture('step', st.step);
          if (o.signal?.stop) {
            bar?.done();
            await queue.sync();
            st.dropoutDrawn = drops.map((d) => d.drawn);
            await saveKernels(kernelsFile, pinned);
            await saveCheckpoint(ckptFile, o.model, opt, st);
            throw new Interrupted(dir);
          }
        }
        await queue.sync();
        bar?.done();
        const host = (await logits.toArray()) as Float32Array;
        // Only rows trained in this process count (after a mid-epoch resume the first ones are missing).
        const keepIdx = [...rows.keys()].filter((i) => rows[i]);
        const trainM = binaryMetrics(
          keepIdx.map((i) => host[i]),
          keepIdx.map((i) => labels[i]),
        );
        const seconds = (performance.now() - epochStart) / 1000;
        const valM = await evaluate(o.model, o.val, s.batch, 'validate', o.progress);
        const better = valM.loss < st.bestValLoss;
        if (better) {
          st.bestValLoss = valM.loss;
          st.bestEpoch = st.epoch;
          st.badEpochs = 0;
          await saveSafetensors(bestFile, await toHostTensors(o.model.stateDict()), { ticketlab: 'weights', epoch: String(st.epoch + 1) });
        } else st.badEpochs++;
        const rec: EpochRecord = {
          epoch: st.epoch,
          step: st.step,
          lr: opt.lr,
          seconds: Math.round(seconds * 1000) / 1000,
          imagesPerSecond: Math.round((images / seconds) * 10) / 10,
          train: roundMetrics(trainM),
          val: roundMetrics(valM),
          best: better,
        };
        await appendJsonl(metricsFile, rec);
        history.push(rec);
        st.seconds += seconds;
        st.images += images;
        log(
          `epoch ${st.epoch + 1}/${s.epochs}: train loss ${trainM.loss.toFixed(4)} acc ${(trainM.accuracy * 100).toFixed(1)}% | ` +
            `val loss ${valM.loss.toFixed(4)} acc ${(valM.accuracy * 100).toFixed(1)}% auc ${valM.auc.toFixed(3)}${better ? ' *' : ''} | ${rec.imagesPerSecond} img/s`,
        );
        st.epoch++;
        st.batch = 0;
        await capture('epoch', st.epoch);
        st.dropoutDrawn = drops.map((d) => d.drawn);
        await saveKernels(kernelsFile, pinned);
        await saveCheckpoint(ckptFile, o.model, opt, st);
        if (s.patience > 0 && st.badEpochs >= s.patience) {
          stoppedEarly = true;
          log(`early stop: no better validation loss for ${s.patience} epochs (best: epoch ${st.bestEpoch + 1})`);
          break;
        }
      } finally {
        logits.dispose();
      }
    }
  } finally {
    opt.dispose();
    clearPins();
  }
  // Early stopping restores the best weights (Keras restore_best_weights semantics, as the study).
  if (fs.existsSync(bestFile)) {
    const { tensors } = await readF32Tensors(bestFile);
    o.model.loadStateDict(tensors);
  }
  await saveSafetensors(runFile(dir, 'final'), await toHostTensors(o.model.stateDict()), {
    ticketlab: 'weights',
    epoch: String(st.bestEpoch + 1),
  });
  const test = o.test ? await evaluate(o.model, o.test, s.batch, 'test', o.progress) : null;
  const bestRec = history.find((r) => r.epoch === st.bestEpoch);
  const result: FitResult = {
    epochs: st.epoch,
    steps: st.step,
    bestEpoch: st.bestEpoch + 1,
    bestVal: bestRec ? bestRec.val : null,
    test: test ? roundMetrics(test) : null,
    stoppedEarly,
    seconds: Math.round(st.seconds * 1000) / 1000,
    imagesPerSecond: st.seconds > 0 ? Math.round((st.images / st.seconds) * 10) / 10 : 0,
  };
  if (test) await appendJsonl(metricsFile, { final: true, bestEpoch: result.bestEpoch, test: result.test });
  await writeJsonAtomic(resultFile, result);
  fs.rmSync(ckptFile, { force: true });
  return result;
}

/** Forward, BCE loss, backward, optimizer step; the logits land in `logits[at:at+n]` on the GPU. */
function trainStep(model: Detector, opt: Optimizer, b: Batch, logits: Tensor, at: number): void {
  tidy(() => {
    const x = fromArray(b.x, b.shape);
    const y = fromArray(b.y, [b.n, 1]);
    const out = model.forward(x);
    const loss = F.bceWithLogits(out, y);
    backward(loss);
    opt.step();
    opt.zeroGrad();
    noGrad(() => scatterSlice(logits, out.reshape([b.n]), 0, at));
  });
}

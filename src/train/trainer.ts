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
import { readSafetensorsHeader, saveSafetensors } from '../io/safetensors.js';
import { readJson, writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { appendJsonl, readJsonl } from '../io/jsonl.js';
import { firstNonFinite, loadModel, readF32Tensors, toHostTensors } from '../nn/checkpoint.js';
import type { HostTensor } from '../io/safetensors.js';
import { runFile } from '../io/run-paths.js';
import { parseExact, stringifyExact } from '../util/exact-json.js';
import { Progress } from '../util/progress.js';
import { binaryMetrics, metricsFrom, roundMetrics, type BinaryMetrics } from './metrics.js';
import { Dropout } from '../nn/layers.js';
import { writeTensor } from '../tensor/io.js';
import { clearPins, pinKernels, plannerRecord, resetPlannerRecord } from '../tensor/plan.js';
import { resultFieldProblem } from './result-fields.js';

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

/**
 * Training produced a NaN/Inf loss or weight. The run stops without writing a checkpoint, best or final
 * weights from the diverged model, so the last good checkpoint (previous epoch) stays on disk.
 */
export class DivergedError extends Error {
  constructor(
    readonly dir: string,
    readonly step: number,
    detail: string,
    lastGood: string,
  ) {
    super(`training in ${dir} diverged at step ${step}: ${detail}; ${lastGood}; try a lower --lr`);
    this.name = 'DivergedError';
  }
}

/** Logits (or weights being evaluated) that are NaN/Inf: metrics from them would be meaningless. */
export class NonFiniteError extends Error {
  constructor(what: string, count: number, total: number) {
    super(`${what}: ${count} of ${total} logits are NaN or infinite (the weights hold NaN/Inf, or overflow); no metrics from them`);
    this.name = 'NonFiniteError';
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

/** Host copies of the weights and optimizer state; null-free so they can be checked before saving. */
async function checkpointTensors(model: Detector, opt: Optimizer): Promise<Record<string, HostTensor>> {
  return toHostTensors([...model.stateDict(), ...opt.namedState().map(([k, t]): [string, Tensor] => [`optimizer.${k}`, t])]);
}

async function saveCheckpoint(file: string, tensors: Record<string, HostTensor>, opt: Optimizer, st: LoopState): Promise<void> {
  // stringifyExact: bestValLoss is Infinity until the first validation, and must come back as Infinity.
  await saveSafetensors(file, tensors, { ticketlab: 'checkpoint', state: stringifyExact({ ...st, optimizerStep: opt.stepCount }) });
}

/** What a checkpoint's loop position may be for this run's settings and data. */
export interface LoopLimits {
  epochs: number;
  stepsPerEpoch: number;
  dropouts: number;
}

/**
 * The loop state stored in a checkpoint, checked against the run's settings: a damaged or doctored
 * state (an epoch of -5 once made a resumed run re-capture theta_0 over init.safetensors) is a one-line
 * error naming the file and the field, never trusted.
 */
export function parseLoopState(text: string, file: string, lim: LoopLimits): LoopState & { optimizerStep: number } {
  let raw: unknown;
  try {
    raw = parseExact(text);
  } catch (e) {
    throw new Error(`${file}: the checkpoint's loop state is not valid JSON (${(e as Error).message.split('\n')[0]}); the file is damaged`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${file}: the checkpoint's loop state is not an object; the file is damaged`);
  const o = raw as Record<string, unknown>;
  // Checkpoints written before exact JSON stored the initial Infinity as null; that is the only way null
  // could get there (no validation done yet), so it is read as Infinity.
  if (o.bestValLoss === null && o.bestEpoch === -1) o.bestValLoss = Infinity;
  const bad = (field: string, want: string): never => {
    throw new Error(`${file}: checkpoint field '${field}' is ${JSON.stringify(o[field]) ?? 'missing'}; expected ${want} (the file is damaged or from other settings)`);
  };
  const int = (field: string, lo: number, hi: number): number => {
    const v = o[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) bad(field, `an integer in [${lo}, ${hi}]`);
    return v as number;
  };
  const nonNeg = (field: string): number => {
    const v = o[field];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) bad(field, 'a finite number >= 0');
    return v as number;
  };
  const epoch = int('epoch', 0, lim.epochs);
  const batch = int('batch', 0, epoch === lim.epochs ? 0 : lim.stepsPerEpoch);
  const step = int('step', 0, epoch * lim.stepsPerEpoch + batch);
  const bestEpoch = int('bestEpoch', -1, epoch - 1);
  const badEpochs = int('badEpochs', 0, epoch);
  const optimizerStep = int('optimizerStep', step, step);
  if (typeof o.bestValLoss !== 'number' || Number.isNaN(o.bestValLoss) || (bestEpoch >= 0 && !Number.isFinite(o.bestValLoss))) {
    bad('bestValLoss', bestEpoch >= 0 ? 'a finite number' : 'a number');
  }
  const drawn = o.dropoutDrawn;
  if (!Array.isArray(drawn) || drawn.length !== lim.dropouts || drawn.some((d) => !Number.isSafeInteger(d) || (d as number) < 0)) {
    bad('dropoutDrawn', `a list of ${lim.dropouts} non-negative integers`);
  }
  return {
    epoch,
    batch,
    step,
    bestValLoss: o.bestValLoss as number,
    bestEpoch,
    badEpochs,
    dropoutDrawn: drawn as number[],
    seconds: nonNeg('seconds'),
    images: nonNeg('images'),
    optimizerStep,
  };
}

/**
 * The training logits and labels of the batches an interrupted epoch had done (`loop.*` tensors of a
 * mid-epoch checkpoint), so the resumed epoch's train metrics cover the whole epoch, as without the
 * interrupt. `rows` marks the positions trained (1) among the epoch's nTrain.
 */
interface PartialEpoch {
  logits: Float32Array;
  labels: Float32Array;
  rows: Float32Array;
}
const PARTIAL_KEYS = ['loop.logits', 'loop.labels', 'loop.rows'] as const;

async function loadCheckpoint(file: string, model: Detector, opt: Optimizer, lim: LoopLimits & { nTrain: number }): Promise<LoopState & { partial: PartialEpoch | null }> {
  const { tensors, metadata } = await readF32Tensors(file);
  if (metadata.ticketlab !== 'checkpoint' || metadata.state === undefined) throw new Error(`${file} is not a ticketlab training checkpoint`);
  const st = parseLoopState(metadata.state, file, lim);
  const modelKeys = new Map([...tensors].filter(([k]) => !k.startsWith('optimizer.') && !k.startsWith('loop.')));
  // Weights and optimizer state (the loop's logits are checked by the epoch's divergence check).
  const bad = firstNonFinite([...tensors].filter(([k]) => !k.startsWith('loop.')));
  if (bad) throw new Error(`${file}: tensor '${bad.key}' has ${bad.count} NaN/Inf values; the checkpoint is damaged`);
  try {
    model.loadStateDict(modelKeys);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  for (const [k, t] of opt.namedState()) {
    const src = tensors.get(`optimizer.${k}`);
    if (!src) throw new Error(`${file}: optimizer state 'optimizer.${k}' is missing`);
    if (src.data.length !== t.size) throw new Error(`${file}: optimizer state 'optimizer.${k}' has ${src.data.length} values, expected ${t.size}`);
    writeTensor(t, src.data);
  }
  opt.stepCount = st.optimizerStep;
  // Checkpoints written before these tensors existed have none: the resumed epoch's train metrics then
  // cover only the batches trained after the resume.
  let partial: PartialEpoch | null = null;
  if (st.batch > 0 && PARTIAL_KEYS.every((k) => tensors.has(k))) {
    const [logits, labels, rows] = PARTIAL_KEYS.map((k) => {
      const d = tensors.get(k)!.data;
      if (d.length !== lim.nTrain) throw new Error(`${file}: '${k}' has ${d.length} values, expected one per training image (${lim.nTrain})`);
      return d;
    });
    for (const [k, d] of [['loop.labels', labels], ['loop.rows', rows]] as const) {
      if (d.some((v) => v !== 0 && v !== 1)) throw new Error(`${file}: '${k}' holds values other than 0 and 1; the checkpoint is damaged`);
    }
    partial = { logits, labels, rows };
  }
  const { optimizerStep: _drop, ...loop } = st;
  return { ...loop, partial };
}

/**
 * Evaluates a model on a dataset (eval mode, no grad): logits -> metrics. Weights holding NaN/Inf are an
 * error first (ReLU's max() turns NaN activations into 0, so such a model still prints a plausible
 * accuracy of 50%); `checkWeights: false` skips that readback where the caller has just checked them.
 */
export async function evaluate(model: Detector, ds: Dataset, batch: number, label = 'eval', progress = false, o: { checkWeights?: boolean } = {}): Promise<BinaryMetrics> {
  if (o.checkWeights !== false) {
    const bad = firstNonFinite(Object.entries(await toHostTensors(model.stateDict())).map(([k, t]) => [k, { data: t.data as ArrayLike<number> }]));
    if (bad) throw new Error(`${label}: the model's '${bad.key}' has ${bad.count} of ${bad.total} values NaN/Inf (diverged weights); no metrics from them`);
  }
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
    if (at === 0) throw new Error(`${ds.name}: no readable image (${n} listed, all skipped or none)`);
    const scores = host.subarray(0, at);
    const bad = countNonFinite(scores);
    if (bad) throw new NonFiniteError(`${label} on ${ds.name}`, bad, at);
    return binaryMetrics(scores, labels.subarray(0, at));
  } finally {
    logits.dispose();
    if (wasTraining) model.train();
  }
}

function validMetricsOrNull(v: unknown): BinaryMetrics | null {
  try {
    return metricsFrom(v, 'metrics');
  } catch {
    return null;
  }
}

/** A finished level's result.json, checked (it is read back to skip the level and print its metrics). */
function readFitResult(v: unknown, file: string): FitResult {
  const hint = `${file} is damaged; delete it (and final.safetensors) to train the level again`;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${hint}: not an object`);
  const o = v as Record<string, unknown>;
  for (const k of ['epochs', 'steps', 'bestEpoch', 'seconds', 'imagesPerSecond'] as const) {
    if (typeof o[k] !== 'number') throw new Error(`${hint}: '${k}' is ${JSON.stringify(o[k]) ?? 'missing'}`);
  }
  const problem = resultFieldProblem(o);
  if (problem) throw new Error(`${hint}: ${problem}`);
  const m = (k: 'bestVal' | 'test') => (o[k] === null || o[k] === undefined ? null : metricsFrom(o[k], `${file}: '${k}'`));
  return {
    epochs: o.epochs as number,
    steps: o.steps as number,
    bestEpoch: o.bestEpoch as number,
    bestVal: m('bestVal'),
    test: m('test'),
    stoppedEarly: o.stoppedEarly === true,
    seconds: o.seconds as number,
    imagesPerSecond: o.imagesPerSecond as number,
  };
}

function countNonFinite(a: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) n++;
  return n;
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
  const finalFile = runFile(dir, 'final');
  const metricsFile = runFile(dir, 'metrics');
  // A file where the level folder should be: mkdir's own EEXIST does not say what is wrong.
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw new Error(`${dir} is a file, not a folder; the run folder is damaged`);
  fs.mkdirSync(dir, { recursive: true });
  // Every file the level reads or writes must be a file: one replaced by a folder would otherwise fail
  // only after an epoch of training had already rewritten the checkpoint.
  for (const f of [ckptFile, bestFile, finalFile, metricsFile, resultFile]) {
    if (fs.existsSync(f) && !fs.statSync(f).isFile()) throw new Error(`${f} is not a regular file (a folder?); the run folder is damaged`);
  }
  if (fs.existsSync(resultFile)) {
    // Finished before: load its final weights so callers continue from the same model.
    const res = readFitResult(await readJson<unknown>(resultFile), resultFile);
    await loadModel(finalFile, o.model);
    return res;
  }
  if (o.train.length() === 0) throw new Error(`${o.train.name}: the training split is empty`);
  if (o.val.length() === 0) throw new Error(`${o.val.name}: the validation split is empty (early stopping and best weights need it)`);
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
  let partial: PartialEpoch | null = null;
  if (fs.existsSync(ckptFile)) {
    if (!o.resume) throw new Error(`${dir} holds an unfinished run; pass --resume to continue it or choose another --out`);
    ({ partial, ...st } = await loadCheckpoint(ckptFile, o.model, opt, { epochs: s.epochs, stepsPerEpoch, dropouts: drops.length, nTrain: o.train.length() }));
    // The best weights so far are read only when the level ends: check them now, before anything is
    // written, so a damaged file fails the resume at once instead of after the remaining epochs.
    if (fs.existsSync(bestFile)) await readSafetensorsHeader(bestFile);
    else if (st.bestEpoch >= 0) throw new Error(`${bestFile} is missing, but the checkpoint says epoch ${st.bestEpoch + 1} was the best; the run folder is damaged`);
    drops.forEach((d, i) => (d.drawn = st.dropoutDrawn[i] ?? 0));
    log(`resuming ${dir} at epoch ${st.epoch + 1}, batch ${st.batch}`);
  }
  const capture = async (kind: 'step' | 'epoch', at: number) => {
    for (const c of o.captures ?? []) if ((c.at === 0 ? at === 0 : c.kind === kind && c.at === at)) await c.capture(o.model);
  };
  // First, before anything else is written: theta_0 is written once, and a different one on disk (a
  // damaged or foreign folder) is refused here with the folder untouched.
  if (st.step === 0 && st.epoch === 0 && st.batch === 0) await capture('step', 0);
  // A run killed before its first checkpoint: its partial log has nothing to keep.
  if (!fs.existsSync(ckptFile) && fs.existsSync(metricsFile)) fs.rmSync(metricsFile);
  const done = await readJsonl<unknown>(metricsFile).catch((e: Error) => {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log(`warning: ${e.message.split('\n')[0]}; the epochs logged before this resume are left out of the summary`);
    return { records: [] as unknown[] };
  });
  // Records are trusted only as far as they are checked: a damaged line is skipped, not dereferenced.
  const history = (done.records.filter((r) => r !== null && typeof r === 'object' && Number.isInteger((r as EpochRecord).epoch)) as EpochRecord[]).filter(
    (r) => r.epoch < st.epoch,
  );
  // A kill between an epoch's log line and its checkpoint leaves a line the resumed run will write
  // again: the log keeps exactly the epochs the checkpoint has seen, so it never holds an epoch twice.
  if (history.length !== done.records.length) await writeFileAtomic(metricsFile, history.map((r) => JSON.stringify(r) + '\n').join(''));


  const nTrain = o.train.length();
  let stoppedEarly = false;
  const lastGood = () =>
    fs.existsSync(ckptFile) ? `the last good checkpoint (epoch ${st.epoch}, batch ${st.batch}) stays in ${ckptFile}` : 'no checkpoint was written before it';
  /**
   * Checks the epoch's per-step losses (one readback per epoch, not per step) and, when one is NaN/Inf,
   * the weights, to name the first step and the first tensor that went bad.
   */
  const checkDiverged = async (losses: Tensor, fromBatch: number, toBatch: number, weights: Record<string, HostTensor>) => {
    const l = (await losses.toArray()) as Float32Array;
    const firstBad = l.subarray(fromBatch, toBatch).findIndex((v) => !Number.isFinite(v));
    const badW = firstNonFinite(Object.entries(weights).filter(([k]) => !k.startsWith('optimizer.')).map(([k, t]) => [k, { data: t.data as ArrayLike<number> }]));
    if (firstBad < 0 && !badW) return;
    const batchNo = firstBad >= 0 ? fromBatch + firstBad : toBatch - 1;
    const stepNo = st.step - (toBatch - batchNo) + 1;
    const lossText = firstBad >= 0 ? `loss ${l[batchNo]} at epoch ${st.epoch + 1}, batch ${batchNo + 1}` : `weights non-finite by the end of epoch ${st.epoch + 1}`;
    const wText = badW ? `tensor '${badW.key}' has ${badW.count} of ${badW.total} values NaN/Inf` : 'every weight is still finite (the logits overflowed)';
    throw new DivergedError(dir, stepNo, `${lossText}; ${wText}`, lastGood());
  };
  try {
    while (st.epoch < s.epochs) {
      o.model.train();
      const epochStart = performance.now();
      const logits = keep(fill([nTrain], 0));
      const losses = keep(fill([Math.max(1, stepsPerEpoch)], 0));
      const firstBatch = st.batch;
      const labels = new Float32Array(nTrain);
      const rows = new Uint8Array(nTrain);
      if (partial) {
        writeTensor(logits, partial.logits);
        labels.set(partial.labels);
        rows.set(partial.rows);
        partial = null;
      }
      let at = st.batch * s.batch;
      const bar = o.progress ? new Progress({ total: nTrain, label: `epoch ${st.epoch + 1}/${s.epochs}`, unit: 'img' }) : null;
      bar?.tick(at);
      let images = 0;
      try {
        for await (const b of loader.epoch(st.epoch, st.batch)) {
          opt.lr = lrAt(s.lr, st.step, schedule);
          trainStep(o.model, opt, b, logits, at, losses);
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
          await capture('step', st.step);
          if (o.signal?.stop) {
            bar?.done();
            await queue.sync();
            st.dropoutDrawn = drops.map((d) => d.drawn);
            const tensors = await checkpointTensors(o.model, opt);
            await checkDiverged(losses, firstBatch, st.batch, tensors);
            await saveKernels(kernelsFile, pinned);
            // The epoch's logits so far, so the resumed epoch's train metrics are the uninterrupted ones.
            const n = [nTrain];
            tensors['loop.logits'] = { dtype: 'F32', shape: n, data: (await logits.toArray()) as Float32Array };
            tensors['loop.labels'] = { dtype: 'F32', shape: n, data: labels };
            tensors['loop.rows'] = { dtype: 'U8', shape: n, data: rows };
            await saveCheckpoint(ckptFile, tensors, opt, st);
            throw new Interrupted(dir);
          }
        }
        await queue.sync();
        bar?.done();
        const host = (await logits.toArray()) as Float32Array;
        // Rows trained before an interrupt come back from the checkpoint; only an old checkpoint without
        // them leaves the first rows of a resumed epoch out.
        const keepIdx = [...rows.keys()].filter((i) => rows[i]);
        if (keepIdx.length === 0 && firstBatch === 0) throw new Error(`${o.train.name}: no readable image in the training split (all ${nTrain} skipped)`);
        // One readback of weights and optimizer state per epoch serves the divergence check, best.safetensors
        // and the checkpoint (nothing changes them in between).
        const tensors = await checkpointTensors(o.model, opt);
        await checkDiverged(losses, firstBatch, Math.max(firstBatch, st.batch), tensors);
        const trainM = binaryMetrics(
          keepIdx.map((i) => host[i]),
          keepIdx.map((i) => labels[i]),
        );
        const seconds = (performance.now() - epochStart) / 1000;
        let valM: BinaryMetrics;
        try {
          valM = await evaluate(o.model, o.val, s.batch, 'validate', o.progress, { checkWeights: false });
        } catch (e) {
          if (e instanceof NonFiniteError) throw new DivergedError(dir, st.step, `validation logits are NaN/Inf after epoch ${st.epoch + 1}`, lastGood());
          throw e;
        }
        const better = valM.loss < st.bestValLoss;
        if (better) {
          st.bestValLoss = valM.loss;
          st.bestEpoch = st.epoch;
          st.badEpochs = 0;
          const weights = Object.fromEntries([...o.model.stateDict().keys()].map((k) => [k, tensors[k]]));
          await saveSafetensors(bestFile, weights, { ticketlab: 'weights', epoch: String(st.epoch + 1) });
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
        await saveCheckpoint(ckptFile, tensors, opt, st);
        if (s.patience > 0 && st.badEpochs >= s.patience) {
          stoppedEarly = true;
          log(`early stop: no better validation loss for ${s.patience} epochs (best: epoch ${st.bestEpoch + 1})`);
          break;
        }
      } finally {
        logits.dispose();
        losses.dispose();
      }
    }
  } finally {
    opt.dispose();
    clearPins();
  }
  // Early stopping restores the best weights (Keras restore_best_weights semantics, as the study).
  if (fs.existsSync(bestFile)) await loadModel(bestFile, o.model);
  await saveSafetensors(finalFile, await toHostTensors(o.model.stateDict()), {
    ticketlab: 'weights',
    epoch: String(st.bestEpoch + 1),
  });
  const test = o.test ? await evaluate(o.model, o.test, s.batch, 'test', o.progress) : null;
  const bestRec = history.find((r) => r.epoch === st.bestEpoch);
  const result: FitResult = {
    epochs: st.epoch,
    steps: st.step,
    bestEpoch: st.bestEpoch + 1,
    bestVal: bestRec ? validMetricsOrNull(bestRec.val) : null,
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

// Checkpointing of the training loop: the loop position and the tensors saved after every epoch and on
// an interrupt (checkpoint.safetensors), loaded and validated on --resume; a finished level's
// result.json read back; the epoch log repaired to the epochs a checkpoint has seen; the kernels a
// level trains with, written beside its checkpoint.
import * as fs from 'node:fs';
import type { Detector } from '../nn/models/index.js';
import type { Optimizer } from '../nn/optim/optimizer.js';
import type { Tensor } from '../tensor/tensor.js';
import { writeTensor } from '../tensor/io.js';
import { plannerRecord } from '../tensor/plan.js';
import { saveSafetensors, type HostTensor } from '../io/safetensors.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { readJsonl } from '../io/jsonl.js';
import { firstNonFinite, readF32Tensors, toHostTensors } from '../nn/checkpoint.js';
import { parseExact, stringifyExact } from '../util/exact-json.js';
import { metricsFrom, type BinaryMetrics } from './metrics.js';
import type { EpochRecord, FitResult } from './types.js';

/** Where the loop stands: saved in every checkpoint, restored on resume. */
export interface LoopState {
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

/** Host copies of the weights and optimizer state; null-free so they can be checked before saving. */
export async function checkpointTensors(model: Detector, opt: Optimizer): Promise<Record<string, HostTensor>> {
  return toHostTensors([...model.stateDict(), ...opt.namedState().map(([k, t]): [string, Tensor] => [`optimizer.${k}`, t])]);
}

export async function saveCheckpoint(file: string, tensors: Record<string, HostTensor>, opt: Optimizer, st: LoopState): Promise<void> {
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
export interface PartialEpoch {
  logits: Float32Array;
  labels: Float32Array;
  rows: Float32Array;
}
const PARTIAL_KEYS = ['loop.logits', 'loop.labels', 'loop.rows'] as const;

export async function loadCheckpoint(file: string, model: Detector, opt: Optimizer, lim: LoopLimits & { nTrain: number }): Promise<LoopState & { partial: PartialEpoch | null }> {
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

/** Adds the interrupted epoch's logits so far to a checkpoint's tensors, so the resumed epoch's train metrics are the uninterrupted ones. */
export function withPartialEpoch(tensors: Record<string, HostTensor>, p: { logits: Float32Array; labels: Float32Array; rows: Uint8Array }): Record<string, HostTensor> {
  const n = [p.logits.length];
  tensors['loop.logits'] = { dtype: 'F32', shape: n, data: p.logits };
  tensors['loop.labels'] = { dtype: 'F32', shape: n, data: p.labels };
  tensors['loop.rows'] = { dtype: 'U8', shape: n, data: p.rows };
  return tensors;
}

export function validMetricsOrNull(v: unknown): BinaryMetrics | null {
  try {
    return metricsFrom(v, 'metrics');
  } catch {
    return null;
  }
}

/** A finished level's result.json, checked (it is read back to skip the level and print its metrics). */
export function readFitResult(v: unknown, file: string): FitResult {
  const hint = `${file} is damaged; delete it (and final.safetensors) to train the level again`;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${hint}: not an object`);
  const o = v as Record<string, unknown>;
  for (const k of ['epochs', 'steps', 'bestEpoch', 'seconds', 'imagesPerSecond'] as const) {
    if (typeof o[k] !== 'number') throw new Error(`${hint}: '${k}' is ${JSON.stringify(o[k]) ?? 'missing'}`);
  }
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

/**
 * The epoch log as a resumed run continues it: the records before the checkpoint's epoch. A kill between
 * an epoch's log line and its checkpoint leaves a line the resumed run will write again, so the log is
 * rewritten to exactly the epochs the checkpoint has seen and never holds an epoch twice; a run killed
 * before its first checkpoint has nothing to keep.
 */
export async function resumeHistory(metricsFile: string, ckptFile: string, epoch: number, log: (msg: string) => void): Promise<EpochRecord[]> {
  if (!fs.existsSync(ckptFile) && fs.existsSync(metricsFile)) fs.rmSync(metricsFile);
  const done = await readJsonl<unknown>(metricsFile).catch((e: Error) => {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log(`warning: ${e.message.split('\n')[0]}; the epochs logged before this resume are left out of the summary`);
    return { records: [] as unknown[] };
  });
  // Records are trusted only as far as they are checked: a damaged line is skipped, not dereferenced.
  const history = (done.records.filter((r) => r !== null && typeof r === 'object' && Number.isInteger((r as EpochRecord).epoch)) as EpochRecord[]).filter(
    (r) => r.epoch < epoch,
  );
  if (history.length !== done.records.length) await writeFileAtomic(metricsFile, history.map((r) => JSON.stringify(r) + '\n').join(''));
  return history;
}

/**
 * The kernels a level trains with (planner choices, src/tensor/plan.ts), written beside its checkpoint:
 * a resumed level pins them again, so a tuning cache that changed in between cannot change its bits.
 */
export async function saveKernels(file: string, pinned: Record<string, string>): Promise<void> {
  await writeJsonAtomic(file, { ...pinned, ...plannerRecord() });
}

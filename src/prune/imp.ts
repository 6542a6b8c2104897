// Lottery-ticket experiments over one run folder:
//   level_0/                      dense training (captures theta_0, and theta_k for late rewinding)
//   level_<k>/                    IMP round k: prune the previous level's trained weights, rewind, retrain
//   oneshot_<scope>/level_<k>/    one-shot: prune the dense weights straight to IMP level k's sparsity
//   controls/reinit/level_<k>/    the ticket's mask with fresh random weights
//   controls/random_prune/level_<k>/  a random mask with the ticket's per-layer counts, same rewind point
// Every folder is a level (level.ts): finished ones are skipped, unfinished ones resume.
import * as fs from 'node:fs';
import type { DatasetSplits } from '../data/datasets.js';
import { createModel, type Detector, type ModelName } from '../nn/models/index.js';
import { saveModelOnce } from '../nn/checkpoint.js';
import type { RewindPoint, TrainSettings } from '../train/trainer.js';
import type { KernelMode } from '../tensor/sparse-plan.js';
import { controlDir, levelDir, oneshotDir, runFile } from '../io/run-paths.js';
import { loadMasks, onesMasks, prunableWeights, type HostMasks, type PrunableWeight } from './masks.js';
import { magnitudeScores, pruneByRate, pruneToSparsity, randomMasksLike, sparsityAfter, type Scope } from './magnitude.js';
import { runLevel, type LevelResult } from './level.js';
import { readF32Tensors } from '../nn/checkpoint.js';
import { granularityOf, type Granularity } from './granularity.js';
import type { Structure } from './structured.js';
import { ArgumentError } from '../util/errors.js';

export type Rewind = { kind: 'init' } | { kind: 'none' } | { kind: 'epoch' | 'step'; at: number };

export function parseRewind(s: string): Rewind {
  if (s === 'init' || s === 'none') return { kind: s };
  const m = /^(epoch|step):(\d+)$/.exec(s);
  if (m) return { kind: m[1] as 'epoch' | 'step', at: Number(m[2]) };
  throw new ArgumentError('parseRewind', 'spec', `'${s}' is not one of init, none, epoch:<k>, step:<k>`);
}

/**
 * Fails up front when the rewind point lies beyond the dense training (`--rewind epoch:99` with 2 epochs
 * used to fail only after the whole dense level had trained). `trainImages` (when known) also bounds
 * step:<k> by the number of steps the dense level can take.
 */
export function checkRewind(c: Pick<ImpConfig, 'rewind' | 'train'>, trainImages?: number): void {
  const rw = parseRewind(c.rewind);
  if (rw.kind === 'epoch' && rw.at > c.train.epochs) {
    throw new ArgumentError('runImp', 'config.rewind', `${c.rewind}: the dense level trains only ${c.train.epochs} epoch(s); rewind to epoch:0..${c.train.epochs}`);
  }
  if (rw.kind === 'step' && trainImages !== undefined) {
    const steps = Math.ceil(trainImages / c.train.batch) * c.train.epochs;
    if (rw.at > steps) throw new ArgumentError('runImp', 'config.rewind', `${c.rewind}: the dense level takes only ${steps} step(s) (${c.train.epochs} epoch(s) of ${Math.ceil(trainImages / c.train.batch)} batch(es)); rewind to step:0..${steps}`);
  }
}

export type ControlKind = 'reinit' | 'random_prune';

export interface ImpConfig {
  model: ModelName;
  data: string;
  size: number;
  train: TrainSettings;
  levels: number;
  rate: number;
  /** Explicit target sparsity per level (overrides rate). */
  sparsities: number[] | null;
  scope: Scope;
  rewind: string;
  pruneLast: boolean;
  /**
   * What is pruned together (granularity.ts). Present only when not 'weight', so the config.json of a
   * run made before granularities existed still matches and resumes unchanged.
   */
  granularity?: Granularity;
  /** --bn-reestimate N (train/bn-reestimate.ts); present only when N > 0, like granularity. */
  bnReestimate?: number;
}

export interface ExperimentContext {
  run: string;
  data: DatasetSplits;
  resume: boolean;
  progress: boolean;
  signal?: { stop: boolean };
  log: (m: string) => void;
  /** Kernels of the pruned layers (--kernels; default dense). */
  kernels?: KernelMode;
}

/** Target sparsity of IMP level k (k >= 1). */
export function levelSparsity(c: ImpConfig, k: number): number {
  if (c.sparsities) {
    const s = c.sparsities[k - 1];
    if (s === undefined) throw new Error(`no target sparsity for level ${k}`);
    return s;
  }
  return sparsityAfter(k, c.rate);
}

export function levelCount(c: ImpConfig): number {
  return c.sparsities ? c.sparsities.length : c.levels;
}

async function hostWeights(model: Detector, ws: readonly PrunableWeight[]): Promise<Map<string, Float32Array>> {
  const sd = model.stateDict();
  const out = new Map<string, Float32Array>();
  for (const w of ws) out.set(w.key, (await sd.get(w.key)!.toArray()) as Float32Array);
  return out;
}

async function weightsFromFile(file: string, ws: readonly PrunableWeight[]): Promise<Map<string, Float32Array>> {
  const { tensors } = await readF32Tensors(file);
  const out = new Map<string, Float32Array>();
  for (const w of ws) {
    const t = tensors.get(w.key);
    if (!t) throw new Error(`${file}: no weight '${w.key}'`);
    out.set(w.key, t.data);
  }
  return out;
}

/** Where level k>=1 starts from: theta_0, theta_k, or the previous level's trained weights. */
export function rewindFile(run: string, rewind: Rewind, prevLevel: number): string {
  if (rewind.kind === 'init') return runFile(levelDir(run, 0), 'init');
  if (rewind.kind === 'none') return runFile(levelDir(run, prevLevel), 'final');
  return runFile(levelDir(run, 0), 'rewind');
}

/** The fields every level of one experiment shares. */
function shared(c: ImpConfig, ctx: ExperimentContext, model: Detector, ws: PrunableWeight[]) {
  return { model, weights: ws, data: ctx.data, settings: c.train, resume: ctx.resume, progress: ctx.progress, signal: ctx.signal, log: ctx.log, kernels: ctx.kernels ?? 'dense', granularity: granularityOf(c), bnReestimate: c.bnReestimate };
}

/** The run's granularity with the prunable weights' shapes: what structured pruning needs. */
export function structureOf(c: Pick<ImpConfig, 'granularity'>, ws: readonly Pick<PrunableWeight, 'key' | 'shape'>[]): Structure {
  return { granularity: granularityOf(c), shapes: new Map(ws.map((w) => [w.key, w.shape])) };
}

/** ' at block:8' for labels; '' at the default granularity. */
function atGranularity(c: ImpConfig): string {
  return c.granularity && c.granularity !== 'weight' ? ` at ${c.granularity}` : '';
}

function makeModel(c: ImpConfig, seed = c.train.seed): Detector {
  return createModel(c.model, { size: c.size, seed });
}

/** A fresh model and its prunable weights for one level, disposed after `body` (each level is self-contained). */
async function withModel<T>(c: ImpConfig, body: (model: Detector, ws: PrunableWeight[]) => Promise<T>): Promise<T> {
  const model = makeModel(c);
  try {
    return await body(model, prunableWeights(model, c.pruneLast));
  } finally {
    model.dispose();
  }
}

/** Dense level 0, capturing theta_0 (init.safetensors) and theta_k (rewind.safetensors) on the way. */
export async function runDenseLevel(c: ImpConfig, ctx: ExperimentContext): Promise<LevelResult> {
  return withModel(c, (model, ws) => {
    const dir = levelDir(ctx.run, 0);
    const rw = parseRewind(c.rewind);
    const captures: RewindPoint[] = [{ kind: 'step', at: 0, capture: (m) => saveModelOnce(runFile(dir, 'init'), m, { ticketlab: 'theta_0' }) }];
    if (rw.kind === 'epoch' || rw.kind === 'step') {
      captures.push({ kind: rw.kind, at: rw.at, capture: (m) => saveModelOnce(runFile(dir, 'rewind'), m, { ticketlab: `theta_${rw.kind}_${rw.at}` }) });
    }
    return runLevel({ ...shared(c, ctx, model, ws), dir, masks: onesMasks(ws), startFrom: null, captures, label: 'level 0 (dense)' });
  });
}

/**
 * IMP level k >= 1 alone: prunes level k-1's trained weights under level k-1's mask (both read from its
 * folder, which must be finished), rewinds, retrains. A level whose mask is already on disk reuses it.
 */
export async function runImpLevel(c: ImpConfig, ctx: ExperimentContext, k: number): Promise<LevelResult> {
  return withModel(c, async (model, ws) => {
    const dir = levelDir(ctx.run, k);
    const maskFile = runFile(dir, 'mask');
    // An unfinished level's masks are recomputed, so that runLevel can hold its mask file to them; a
    // finished level (or one whose predecessor lost its result) reads its own.
    const prev = levelDir(ctx.run, k - 1);
    const readOwn = fs.existsSync(runFile(dir, 'result')) || !fs.existsSync(runFile(prev, 'result'));
    let masks: HostMasks;
    if (fs.existsSync(maskFile) && readOwn) masks = await loadMasks(maskFile, ws);
    else {
      if (!fs.existsSync(runFile(prev, 'result'))) throw new Error(`${ctx.run}: IMP level ${k} needs level ${k - 1} finished first (${runFile(prev, 'result')} is missing)`);
      const prevMasks = k === 1 ? onesMasks(ws) : await loadMasks(runFile(prev, 'mask'), ws);
      // Magnitudes of the previous level's trained weights.
      const scores = magnitudeScores(await weightsFromFile(runFile(prev, 'final'), ws));
      const st = structureOf(c, ws);
      masks = c.sparsities ? pruneToSparsity(prevMasks, scores, levelSparsity(c, k), c.scope, st) : pruneByRate(prevMasks, scores, c.rate, c.scope, st);
    }
    return runLevel({
      ...shared(c, ctx, model, ws),
      dir,
      masks,
      startFrom: rewindFile(ctx.run, parseRewind(c.rewind), k - 1),
      label: `level ${k} (IMP-${c.scope}${atGranularity(c)})`,
    });
  });
}

export interface ImpResult {
  levels: { level: number; result: LevelResult }[];
}

/** Runs (or resumes) level 0 and every IMP level. */
export async function runImp(c: ImpConfig, ctx: ExperimentContext): Promise<ImpResult> {
  const out: ImpResult = { levels: [{ level: 0, result: await runDenseLevel(c, ctx) }] };
  const rw = parseRewind(c.rewind);
  if (levelCount(c) > 0 && (rw.kind === 'epoch' || rw.kind === 'step') && rw.at > 0 && !fs.existsSync(runFile(levelDir(ctx.run, 0), 'rewind'))) {
    const r = out.levels[0].result;
    throw new ArgumentError('runImp', 'config.rewind', `${c.rewind}: the dense level (${levelDir(ctx.run, 0)}) stopped early after ${r.epochs} epochs, ${r.steps} steps, before it; use a smaller k or a larger config.train.patience`);
  }
  for (let k = 1; k <= levelCount(c); k++) out.levels.push({ level: k, result: await runImpLevel(c, ctx, k) });
  return out;
}

/** One-shot to IMP level k's sparsity alone: prune the dense weights straight to it, rewind, retrain. */
export async function runOneShotLevel(c: ImpConfig, ctx: ExperimentContext, k: number, scope: Scope = c.scope): Promise<LevelResult> {
  const dense = runFile(levelDir(ctx.run, 0), 'final');
  if (!fs.existsSync(dense)) throw new Error(`${ctx.run}: no dense model yet (${dense} is missing); run 'ticketlab imp' or 'train' first`);
  return withModel(c, async (model, ws) => {
    const s = levelSparsity(c, k);
    const dir = oneshotDir(ctx.run, scope, k);
    const masks = pruneToSparsity(onesMasks(ws), magnitudeScores(await weightsFromFile(dense, ws)), s, scope, structureOf(c, ws));
    return runLevel({
      ...shared(c, ctx, model, ws),
      dir,
      masks,
      startFrom: rewindFile(ctx.run, parseRewind(c.rewind), 0),
      label: `one-shot ${scope}${atGranularity(c)} to ${(s * 100).toFixed(1)}%`,
    });
  });
}

/** One-shot: prune the dense weights straight to each level's sparsity, rewind, retrain. */
export async function runOneShot(c: ImpConfig, ctx: ExperimentContext, levels: number[], scope: Scope = c.scope): Promise<{ level: number; result: LevelResult }[]> {
  const out: { level: number; result: LevelResult }[] = [];
  for (const k of levels) out.push({ level: k, result: await runOneShotLevel(c, ctx, k, scope) });
  return out;
}

/** One control of IMP level k (whose mask must exist): random re-initialisation or random pruning (same per-layer counts). */
export async function runControlLevel(c: ImpConfig, ctx: ExperimentContext, kind: ControlKind, k: number): Promise<LevelResult> {
  const ticketMask = runFile(levelDir(ctx.run, k), 'mask');
  if (!fs.existsSync(ticketMask)) throw new Error(`${ctx.run}: IMP level ${k} has no mask yet; run its IMP level first`);
  return withModel(c, async (model, ws) => {
    const ticket = await loadMasks(ticketMask, ws);
    const dir = controlDir(ctx.run, kind, k);
    let masks: HostMasks;
    let startFrom: string;
    if (kind === 'reinit') {
      masks = ticket;
      // Fresh weights from another seed, saved so the branch is reproducible and resumable.
      startFrom = runFile(dir, 'reinit');
      if (!fs.existsSync(startFrom)) {
        const fresh = makeModel(c, c.train.seed + 1_000_003 * k);
        fs.mkdirSync(dir, { recursive: true });
        await saveModelOnce(startFrom, fresh, { ticketlab: 'reinit' });
        fresh.dispose();
      }
    } else {
      masks = randomMasksLike(ticket, c.train.seed + 7919 * k, structureOf(c, ws));
      const rw = parseRewind(c.rewind);
      startFrom = rewindFile(ctx.run, rw.kind === 'none' ? { kind: 'init' } : rw, 0);
    }
    return runLevel({ ...shared(c, ctx, model, ws), dir, masks, startFrom, label: `control ${kind} at level ${k}${atGranularity(c)}` });
  });
}

/** Controls for IMP levels: random re-initialisation and random pruning (same per-layer counts). */
export async function runControls(c: ImpConfig, ctx: ExperimentContext, kinds: ControlKind[], levels: number[]): Promise<{ kind: ControlKind; level: number; result: LevelResult }[]> {
  const out: { kind: ControlKind; level: number; result: LevelResult }[] = [];
  for (const k of levels) for (const kind of kinds) out.push({ kind, level: k, result: await runControlLevel(c, ctx, kind, k) });
  return out;
}

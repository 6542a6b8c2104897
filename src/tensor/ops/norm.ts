// Launchers for batch norm (src/shaders/norm.ts) and per-channel sums. Raw ops, no autograd.
// Inputs are [N, C, ...] (NCHW for BatchNorm2d; [N, C] works too): statistics are per channel over N and
// every trailing dimension. PyTorch semantics: biased variance normalises, the running variance is
// updated with the unbiased one, running = (1 - momentum) * running + momentum * batch_stat.
// Every launcher takes an optional NormAct: a ReLU fused before the normalisation (on x) and/or after
// it (on y), forward and backward (shaders/norm.ts); ops/fused.ts asks the planner when to use it.
import {
  APPLY_WG,
  type ApplyVec,
  FINALIZE_WG,
  NORM_UNIFORM,
  NORM_POOLED_UNIFORM,
  bnApplyKernel,
  bnBackwardDxKernel,
  bnBiasGradFinalizeKernel,
  bnStatsFinalizeKernel,
  channelPartialsKernel,
  channelPartialsThreadKernel,
  THREAD_PARTIALS_WG,
  channelSumFinalizeKernel,
  partialWidth,
  type PartialMode,
  NO_ACT,
  type NormAct,
} from '../../shaders/norm.js';
import { gridFor, MAX_GROUPS_PER_DIM, type Grid, type Kernel } from '../../shaders/kernel.js';
import { poolFoldSuits, pooledDyParams, pooledWalk } from '../../shaders/fused-pool-grad.js';
import type { Pool2dGeometry } from './pool.js';
import { cachedKernel, log2Class, plan as planKernel, registerCandidates, registerFamily } from '../plan.js';
import { queue } from '../queue.js';
import { empty, type Shape, type Tensor } from '../tensor.js';
import { fill, mapExpr } from './map.js';
import { shapeStr } from './conv-geometry.js';

export { NO_ACT, type NormAct };

/** Elements per stage-1 workgroup the split aims for, and the most chunks per channel. */
const CHUNK_TARGET = 4096;
const MAX_CHUNKS = 64;

export interface ChanGeom {
  n: number;
  c: number;
  hw: number;
  /** N * HW: elements per channel. */
  cnt: number;
  g: number;
  chunk: number;
}


/** How a per-channel reduction over `shape` is split (depends on the shape only). */
export function channelGeometry(shape: Shape, what = 'batch norm'): ChanGeom {
  if (shape.length < 2) throw new Error(`${what}: input must be [N, C, ...], got ${shapeStr(shape)}`);
  const n = shape[0];
  const c = shape[1];
  let hw = 1;
  for (let i = 2; i < shape.length; i++) hw *= shape[i];
  const cnt = n * hw;
  let g = Math.max(1, Math.min(MAX_CHUNKS, Math.ceil(cnt / CHUNK_TARGET)));
  const chunk = Math.max(1, Math.ceil(cnt / g));
  g = Math.max(1, Math.ceil(cnt / chunk));
  if (c > MAX_GROUPS_PER_DIM) throw new Error(`${what}: ${c} channels exceed ${MAX_GROUPS_PER_DIM}`);
  return { n, c, hw, cnt, g, chunk };
}

/** Grid of the elementwise kernels: (HW / (APPLY_WG * vec), C, N). */
function applyGrid(cg: ChanGeom, vec: ApplyVec): Grid {
  // With the software-adapter policy ('thread', see normPartialsImpl) one workgroup row per (plane
  // tile, channel) and threads loop over the batch; on GPUs one z slice per batch item.
  const g: Grid = [Math.ceil(cg.hw / vec / APPLY_WG), cg.c, normPartialsImpl(cg) !== 'group' ? Math.min(1, cg.n) : cg.n];
  if (g.some((d) => d > MAX_GROUPS_PER_DIM)) {
    throw new Error(`batch norm: [N=${cg.n}, C=${cg.c}, HW=${cg.hw}] needs a grid of [${g.join(', ')}], over ${MAX_GROUPS_PER_DIM} per dimension`);
  }
  return g;
}

function params(cg: ChanGeom, n: number, momentum = 0, eps = 0, pool: Pool2dGeometry | null = null): Uint32Array {
  const v = { n, c: cg.c, hw: cg.hw, g: cg.g, chunk: cg.chunk, cnt: cg.cnt, momentum, eps };
  return pool ? NORM_POOLED_UNIFORM.pack({ ...v, ...pooledDyParams(pool) }) : NORM_UNIFORM.pack(v);
}

/**
 * The gradient of a batch norm's output given pooled: the gradient of the max pool after it and the
 * pool's argmax (maxPool2dForward's idx). The backward kernels rebuild dy from them as they load it
 * (the pool's backward folded in, shaders/fused-pool-grad.ts): windows must not overlap.
 */
export interface PooledDy {
  gy: Tensor;
  idx: Tensor;
  pool: Pool2dGeometry;
}

/** dy of a batch norm's output: full-size, or pooled. */
export type NormDy = Tensor | PooledDy;

function pooledOf(dy: NormDy): PooledDy | null {
  return 'gy' in dy ? dy : null;
}

/** The buffers that stand for dy in a backward kernel's bindings. */
function dyBuffers(dy: NormDy): Tensor[] {
  const pd = pooledOf(dy);
  return pd ? [pd.gy, pd.idx] : [dy as Tensor];
}

function cached(key: string, make: () => Kernel): Kernel {
  return cachedKernel(`norm|${key}`, make);
}

function checkVec(t: Tensor | null, c: number, what: string): void {
  if (!t) return;
  if (t.dtype !== 'f32') throw new Error(`batch norm: ${what} must be f32, got ${t.dtype}`);
  if (t.size !== c) throw new Error(`batch norm: ${what} ${shapeStr(t.shape)} must have ${c} elements`);
}

function checkAffine(gamma: Tensor | null, beta: Tensor | null): boolean {
  if (!!gamma !== !!beta) throw new Error('batch norm: pass both gamma and beta (affine) or neither');
  return !!gamma;
}

/** Stage 1 into a fresh partials tensor [C, G, width]. */
export type NormPartialsImpl = 'group' | 'thread' | 'thread4';

/**
 * Stage-1 variant: 'group' (a workgroup per chunk, tree reduction in workgroup memory) on GPUs,
 * 'thread' (a thread per chunk, no barriers) on software adapters, where barriers are ruinous, and
 * 'thread4' (the same walking vec4s) there when HW and the chunk are multiples of 4. The
 * elementwise BN kernels follow the same policy (z = N on GPUs, z = 1 with a batch loop otherwise).
 * The planner (family 'norm') decides; `TICKETLAB_KERNELS=norm:group` forces one. All give the same
 * partials up to summation order.
 */
export function normPartialsImpl(cg: ChanGeom = channelGeometry([1, 1, 64])): NormPartialsImpl {
  return planKernel('norm', cg).variant as NormPartialsImpl;
}


registerFamily<ChanGeom>({
  family: 'norm',
  about: 'batch-norm statistics (stage 1) and the elementwise batch-norm kernels that follow its grid',
  shapeClass: (g) => `n${g.n} c${g.c} hw2^${log2Class(g.hw)}${g.hw % 4 === 0 && g.chunk % 4 === 0 ? ' q4' : ''}`,
  // Software adapters: a thread per chunk, walking vec4s where planes and chunks are whole quads.
  defaultRule: (_g, dev, cands) =>
    (dev.isSoftware ? cands.find((c) => c.variant === 'thread4') ?? cands.find((c) => c.variant === 'thread') : cands.find((c) => c.variant === 'group')) ?? cands[0],
  bench: (g) => {
    const x = fill([g.n, g.c, g.hw], 1);
    return { run: () => channelSum(x).dispose(), dispose: () => x.dispose() };
  },
});
registerCandidates<ChanGeom>('norm', [
  { variant: 'thread' },
  { variant: 'group' },
  { variant: 'thread4', suits: (g) => g.hw % 4 === 0 && g.chunk % 4 === 0 },
]);

registerFamily<ChanGeom>({
  family: 'bn.apply',
  about: 'the elementwise batch-norm kernels (apply, input gradient): scalars or vec4s of the plane',
  shapeClass: (g) => `hw2^${log2Class(g.hw)}${g.hw % 4 === 0 ? ' %4' : ''}`,
  // Software adapters: vec4s where HW % 4 == 0 (a vec4 load costs about one scalar load there). GPUs
  // keep a scalar per thread.
  defaultRule: (_g, dev, cands) => cands.find((c) => c.variant === (dev.isSoftware ? 'vec4' : 'scalar')) ?? cands[0],
});
registerCandidates<ChanGeom>('bn.apply', [{ variant: 'scalar' }, { variant: 'vec4', suits: (g) => g.hw % 4 === 0 }]);

/** Elements per thread of the elementwise batch-norm kernels (planner family 'bn.apply'; a family of its own so that `norm:thread` does not select it). */
function applyVec(cg: ChanGeom): ApplyVec {
  return planKernel('bn.apply', cg).variant === 'vec4' ? 4 : 1;
}

/** Cache-key suffix of a fused ReLU ('' without one, so unfused keys are unchanged). */
function actKey(act: NormAct): string {
  return act.pre || act.post ? `|a${+act.pre}${+act.post}` : '';
}

/** Stage 1 over `inputs` (dy's buffers first where the mode reads dy); `pool`: dy comes pooled. */
function partials(mode: PartialMode, cg: ChanGeom, inputs: Tensor[], act: NormAct = NO_ACT, affine = true, pool: Pool2dGeometry | null = null): Tensor {
  const parts = empty([cg.c, cg.g, partialWidth(mode)]);
  const bufs = [...inputs, parts].map((t) => ({ buffer: t.buf }));
  const impl = normPartialsImpl(cg);
  const tag = () => ({ op: `norm.partials.${mode}`, variant: `${impl}${pool ? '+pooled' : ''}`, shape: `${cg.n}x${cg.c}x${cg.hw}`, flops: cg.c * cg.cnt });
  const pooled = pool ? pooledWalk(pool) : null;
  const key = `${actKey(act)}${act.post && !affine ? '|na' : ''}${pooled ? `|pooled${pooled}` : ''}`;
  if (impl !== 'group') {
    const vec = impl === 'thread4' ? 4 : 1;
    const k = cached(`pt|${mode}|${vec}${key}`, () => channelPartialsThreadKernel(mode, vec, act, affine, pooled));
    queue.dispatch(k, bufs, params(cg, 0, 0, 0, pool), gridFor(cg.c * cg.g, THREAD_PARTIALS_WG), tag);
  } else {
    const k = cached(`p|${mode}${key}`, () => channelPartialsKernel(mode, act, affine, pooled));
    queue.dispatch(k, bufs, params(cg, 0, 0, 0, pool), [cg.g, cg.c, 1], tag);
  }
  return parts;
}

/** Per-channel sum of x [N, C, ...] over N and the trailing dims: shape [C]. */
export function channelSum(x: Tensor): Tensor {
  if (x.dtype !== 'f32') throw new Error(`channelSum: input must be f32, got ${x.dtype}`);
  const cg = channelGeometry(x.shape, 'channelSum');
  if (cg.cnt === 0 || cg.c === 0) return fill([cg.c], 0);
  const out = empty([cg.c]);
  const parts = partials('sum', cg, [x]);
  const k = cached('sf1', () => channelSumFinalizeKernel(1));
  queue.dispatch(k, [{ buffer: parts.buf }, { buffer: out.buf }], params(cg, 0), gridFor(cg.c, FINALIZE_WG));
  parts.dispose();
  return out;
}

export interface BatchNormTrainResult {
  y: Tensor;
  /** Batch mean per channel [C]. */
  mean: Tensor;
  /** 1 / sqrt(biased batch variance + eps) per channel [C]. */
  invstd: Tensor;
}

/** Validates a forward call's operands (one-line errors naming the operand); returns its geometry. */
export function checkForward(x: Tensor, gamma: Tensor | null, beta: Tensor | null, runningMean: Tensor | null, runningVar: Tensor | null): { cg: ChanGeom; affine: boolean } {
  if (x.dtype !== 'f32') throw new Error(`batch norm: input must be f32, got ${x.dtype}`);
  const cg = channelGeometry(x.shape);
  const affine = checkAffine(gamma, beta);
  checkVec(gamma, cg.c, 'gamma');
  checkVec(beta, cg.c, 'beta');
  checkVec(runningMean, cg.c, 'running mean');
  checkVec(runningVar, cg.c, 'running var');
  return { cg, affine };
}

/**
 * The batch statistics of training-mode batch norm (of relu(x) with a fused pre-ReLU): mean and invstd
 * per channel, and the running statistics updated IN PLACE when given (see batchNormTrainForward).
 */
export function batchNormTrainStats(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  momentum = 0.1,
  eps = 1e-5,
  act: NormAct = NO_ACT,
): { mean: Tensor; invstd: Tensor } {
  const { cg } = checkForward(x, null, null, runningMean, runningVar);
  if (!!runningMean !== !!runningVar) throw new Error('batch norm: pass both running mean and running var or neither');
  if (cg.cnt < 2) throw new Error(`batch norm: training needs more than 1 value per channel, input ${shapeStr(x.shape)}`);
  const mean = empty([cg.c]);
  const invstd = empty([cg.c]);
  const parts = partials('stats', cg, [x], act);
  const running = !!runningMean;
  const fk = cached(`fin|${running}`, () => bnStatsFinalizeKernel(running));
  const fb = [parts, mean, invstd, ...(running ? [runningMean!, runningVar!] : [])];
  queue.dispatch(fk, fb.map((t) => ({ buffer: t.buf })), params(cg, 0, momentum, eps), gridFor(cg.c, FINALIZE_WG));
  parts.dispose();
  return { mean, invstd };
}

/**
 * Training-mode batch norm: normalises with the batch statistics and, when running stats are given,
 * updates them IN PLACE (running = (1 - momentum) * running + momentum * stat, unbiased variance).
 * gamma/beta [C] or both null (affine = false). Keep mean/invstd for batchNormBackward.
 */
export function batchNormTrainForward(
  x: Tensor,
  gamma: Tensor | null,
  beta: Tensor | null,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  momentum = 0.1,
  eps = 1e-5,
  act: NormAct = NO_ACT,
): BatchNormTrainResult {
  const { cg, affine } = checkForward(x, gamma, beta, runningMean, runningVar);
  const { mean, invstd } = batchNormTrainStats(x, runningMean, runningVar, momentum, eps, act);
  const y = empty(x.shape);
  const vec = applyVec(cg);
  const ak = cached(`apply|${affine}|false|${vec}${actKey(act)}`, () => bnApplyKernel(affine, false, vec, act));
  const ab = [x, mean, invstd, ...(affine ? [gamma!, beta!] : []), y];
  queue.dispatch(ak, ab.map((t) => ({ buffer: t.buf })), params(cg, x.size, 0, eps), applyGrid(cg, vec));
  return { y, mean, invstd };
}

/** Eval-mode batch norm: y = (x - runningMean) / sqrt(runningVar + eps) * gamma + beta. */
export function batchNormEvalForward(
  x: Tensor,
  gamma: Tensor | null,
  beta: Tensor | null,
  runningMean: Tensor,
  runningVar: Tensor,
  eps = 1e-5,
  act: NormAct = NO_ACT,
): Tensor {
  const { cg, affine } = checkForward(x, gamma, beta, runningMean, runningVar);
  const y = empty(x.shape);
  const vec = applyVec(cg);
  const ak = cached(`apply|${affine}|true|${vec}${actKey(act)}`, () => bnApplyKernel(affine, true, vec, act));
  const ab = [x, runningMean, runningVar, ...(affine ? [gamma!, beta!] : []), y];
  queue.dispatch(ak, ab.map((t) => ({ buffer: t.buf })), params(cg, x.size, 0, eps), applyGrid(cg, vec));
  return y;
}

export interface BatchNormGrads {
  dx: Tensor;
  /** Sum of dy * xhat per channel; null when gamma is null (affine = false). */
  dgamma: Tensor | null;
  /** Sum of dy per channel; null when gamma is null (affine = false). */
  dbeta: Tensor | null;
  /**
   * With `biasIn`: the gradient of a bias added to x before the norm (the preceding conv's), the sum
   * of dx per channel, taken from the same stage-1 pass; else null.
   */
  dbiasIn: Tensor | null;
}

/**
 * Per-channel sums of dy and dy * xhat: [dbeta, dgamma], and with `biasIn` (training or eval) the
 * gradient of a bias added to x, from the same pass ('dyxhat-bias'); its finalize reads invstd, gamma.
 */
function dySums(
  dy: NormDy,
  x: Tensor,
  mean: Tensor,
  invstd: Tensor,
  cg: ChanGeom,
  act: NormAct = NO_ACT,
  gamma: Tensor | null = null,
  beta: Tensor | null = null,
  biasIn: 'train' | 'eval' | null = null,
): [Tensor, Tensor, Tensor | null] {
  const sdy = empty([cg.c]);
  const sdyxh = empty([cg.c]);
  const affine = !!gamma;
  const ins = [...dyBuffers(dy), x, mean, invstd, ...(act.post && affine ? [gamma!, beta!] : [])];
  const parts = partials(biasIn ? 'dyxhat-bias' : 'dyxhat', cg, ins, act, affine, pooledOf(dy)?.pool ?? null);
  let dbias: Tensor | null = null;
  if (biasIn) {
    dbias = empty([cg.c]);
    const k = cached(`bgf|${biasIn}|${affine}`, () => bnBiasGradFinalizeKernel(biasIn === 'train', affine));
    const b = [parts, invstd, ...(affine ? [gamma!] : []), sdy, sdyxh, dbias];
    queue.dispatch(k, b.map((t) => ({ buffer: t.buf })), params(cg, 0), gridFor(cg.c, FINALIZE_WG));
  } else {
    const k = cached('sf2', () => channelSumFinalizeKernel(2));
    queue.dispatch(k, [parts, sdy, sdyxh].map((t) => ({ buffer: t.buf })), params(cg, 0), gridFor(cg.c, FINALIZE_WG));
  }
  parts.dispose();
  return [sdy, sdyxh, dbias];
}

/** A fused post-ReLU's backward recomputes the BN output, so an affine norm needs its beta. */
function checkPostBeta(act: NormAct, gamma: Tensor | null, beta: Tensor | null, c: number): void {
  if (!act.post || !gamma) return;
  if (!beta) throw new Error('batch norm backward: a fused ReLU after an affine norm needs beta');
  checkVec(beta, c, 'beta');
}

function checkBackward(dy: NormDy, x: Tensor): ChanGeom {
  const pd = pooledOf(dy);
  if (pd) {
    const { gy, idx, pool: g } = pd;
    if (gy.dtype !== 'f32' || x.dtype !== 'f32') throw new Error('batch norm backward: the pooled dy and x must be f32');
    if ([g.n, g.c, g.h, g.w].join() !== x.shape.join()) throw new Error(`batch norm backward: the pool's input [${g.n}, ${g.c}, ${g.h}, ${g.w}] is not x ${shapeStr(x.shape)}`);
    const want = [g.n, g.c, g.oh, g.ow].join();
    if (gy.shape.join() !== want) throw new Error(`batch norm backward: pooled dy ${shapeStr(gy.shape)} must be [${want}]`);
    if (idx.dtype !== 'i32' || idx.shape.join() !== want) throw new Error(`batch norm backward: the pool's argmax must be i32 [${want}], got ${idx.dtype} ${shapeStr(idx.shape)}`);
    if (!poolFoldSuits(g)) throw new Error(`batch norm backward: a pooled dy needs non-overlapping windows, got ${g.kh}x${g.kw} stride ${g.sh}x${g.sw}`);
    return channelGeometry(x.shape);
  }
  const d = dy as Tensor;
  if (d.dtype !== 'f32' || x.dtype !== 'f32') throw new Error('batch norm backward: dy and x must be f32');
  if (d.shape.join() !== x.shape.join()) throw new Error(`batch norm backward: dy ${shapeStr(d.shape)} and x ${shapeStr(x.shape)} differ`);
  return channelGeometry(x.shape);
}

/**
 * Backward of batchNormTrainForward (batch statistics), given its saved mean and invstd:
 * dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)), dgamma = sum(dy * xhat), dbeta = sum(dy).
 */
export function batchNormBackward(
  dy: NormDy,
  x: Tensor,
  gamma: Tensor | null,
  mean: Tensor,
  invstd: Tensor,
  act: NormAct = NO_ACT,
  beta: Tensor | null = null,
  biasIn = false,
): BatchNormGrads {
  const cg = checkBackward(dy, x);
  checkVec(gamma, cg.c, 'gamma');
  checkVec(mean, cg.c, 'mean');
  checkVec(invstd, cg.c, 'invstd');
  const affine = !!gamma;
  checkPostBeta(act, gamma, beta, cg.c);
  const [sdy, sdyxh, dbiasIn] = dySums(dy, x, mean, invstd, cg, act, gamma, beta, biasIn ? 'train' : null);
  const dx = empty(x.shape);
  const vec = applyVec(cg);
  const pool = pooledOf(dy)?.pool ?? null;
  const pw = pool ? pooledWalk(pool) : null;
  const k = cached(`dx|${affine}|train|${vec}${actKey(act)}${pw ? `|pooled${pw}` : ''}`, () => bnBackwardDxKernel(affine, true, vec, act, pw));
  const b = [...dyBuffers(dy), x, mean, invstd, sdy, sdyxh, ...(affine ? [gamma!] : []), ...(affine && act.post ? [beta!] : []), dx];
  queue.dispatch(k, b.map((t) => ({ buffer: t.buf })), params(cg, x.size, 0, 0, pool), applyGrid(cg, vec));
  if (!affine) {
    sdy.dispose();
    sdyxh.dispose();
    return { dx, dgamma: null, dbeta: null, dbiasIn };
  }
  return { dx, dgamma: sdyxh, dbeta: sdy, dbiasIn };
}

/**
 * Backward of batchNormEvalForward (running statistics are constants; Grad-CAM and frozen-BN
 * fine-tuning): dx = gamma * invstd * dy, dgamma = sum(dy * xhat), dbeta = sum(dy).
 */
export function batchNormEvalBackward(
  dy: NormDy,
  x: Tensor,
  gamma: Tensor | null,
  runningMean: Tensor,
  runningVar: Tensor,
  eps = 1e-5,
  act: NormAct = NO_ACT,
  beta: Tensor | null = null,
  biasIn = false,
): BatchNormGrads {
  const cg = checkBackward(dy, x);
  checkVec(gamma, cg.c, 'gamma');
  checkVec(runningMean, cg.c, 'running mean');
  checkVec(runningVar, cg.c, 'running var');
  const affine = !!gamma;
  checkPostBeta(act, gamma, beta, cg.c);
  const invstd = mapExpr('bn_invstd', 'inverseSqrt(x0 + p.alpha)', [runningVar], eps);
  const dx = empty(x.shape);
  const vec = applyVec(cg);
  const fused = act.pre || act.post;
  const pool = pooledOf(dy)?.pool ?? null;
  const pw = pool ? pooledWalk(pool) : null;
  const k = cached(`dx|${affine}|eval|${vec}${actKey(act)}${pw ? `|pooled${pw}` : ''}`, () => bnBackwardDxKernel(affine, false, vec, act, pw));
  const b = [...dyBuffers(dy), ...(fused ? [x, runningMean] : []), invstd, ...(affine ? [gamma!] : []), ...(affine && act.post ? [beta!] : []), dx];
  queue.dispatch(k, b.map((t) => ({ buffer: t.buf })), params(cg, x.size, 0, 0, pool), applyGrid(cg, vec));
  if (!affine && !biasIn) {
    invstd.dispose();
    return { dx, dgamma: null, dbeta: null, dbiasIn: null };
  }
  const [sdy, sdyxh, dbiasIn] = dySums(dy, x, runningMean, invstd, cg, act, gamma, beta, biasIn ? 'eval' : null);
  invstd.dispose();
  if (!affine) {
    sdy.dispose();
    sdyxh.dispose();
    return { dx, dgamma: null, dbeta: null, dbiasIn };
  }
  return { dx, dgamma: sdyxh, dbeta: sdy, dbiasIn };
}

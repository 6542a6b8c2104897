// Fused ops and their planner families. Each family has two candidates, 'fused' and 'unfused', so the
// choice between one kernel and the chain of separate ones is the planner's like every other kernel
// choice (recorded in kernels.json and pinned on --resume; `TICKETLAB_KERNELS=fused:unfused` or
// bench/train-step.ts --baseline force the separate kernels everywhere):
//   fused.bn-relu  batch norm with a ReLU on its input (Meso: conv -> ReLU -> BN) or its output
//                  (CNN-5, ResNet: conv -> BN -> ReLU), forward and backward (the NormAct of
//                  shaders/norm.ts; autograd/fused-nn.ts composes or fuses);
//   fused.bn-pool  batch norm (with its ReLU, if any) and the max pool after it: the BN output of
//                  each window computed as it is pooled (shaders/fused-pool.ts), never stored;
//   fused.bn-pool-bwd  the backward of fused.bn-pool: the BN backward reads the pooled gradient and
//                  the pool's argmax and rebuilds dy as it loads it (shaders/fused-pool-grad.ts), so
//                  the pool's backward never writes a full-size dy (non-overlapping windows only);
//   fused.bn-bias-grad  the preceding conv's bias gradient (the sum of the BN's dx per channel) taken
//                  from the BN backward's stage-1 pass instead of a pass of its own over dx;
//   fused.conv-bn  eval mode, no gradients: batch norm folded into the preceding conv's weights and
//                  bias (shaders/fused-conv-bn.ts), so the BN pass over the activation is gone;
//   fused.conv-relu  a conv's ReLU applied in the conv kernel's store (shaders/conv*.ts epilogue) and
//                  its gradient masked by y > 0, so the ReLU pass over the activation is gone;
//   fused.bce      BCE-with-logits and its mean in one kernel (shaders/fused-loss.ts).
// Fusing only removes passes over memory, never changes the arithmetic's expressions, so both
// candidates agree within float32 rounding (the ReLU-before-BN fusion bit for bit); the static rule
// takes the fused kernel on every adapter: it moves fewer bytes in fewer dispatches.
import { bceMeanKernel, LOSS_UNIFORM } from '../../shaders/fused-loss.js';
import { BN_POOL_UNIFORM, BN_POOL_WG, bnMaxPoolKernel } from '../../shaders/fused-pool.js';
import { poolFoldSuits } from '../../shaders/fused-pool-grad.js';
import { FOLD_UNIFORM, FOLD_WG, foldBnKernel } from '../../shaders/fused-conv-bn.js';
import { gridFor } from '../../shaders/kernel.js';
import { RELU_EPILOGUE_VARIANTS, type Conv2dGeometry } from './conv.js';
import { checkForward, type NormAct } from './norm.js';
import { pool2dGeometry, quadPoolSuits, type MaxPoolResult, type Pool2dGeometry, type Pool2dOptions } from './pool.js';
import { cachedKernel, log2Class, plan, registerCandidates, registerFamily } from '../plan.js';
import { queue } from '../queue.js';
import { empty, type Tensor } from '../tensor.js';

/** Where the ReLU sits relative to the batch norm. */
export type ReluOrder = 'relu-bn' | 'bn-relu';

export interface BnReluGeom {
  n: number;
  c: number;
  hw: number;
  order: ReluOrder;
  training: boolean;
}

const fusedFirst = <C extends { variant: string }>(cands: readonly C[]) => cands.find((c) => c.variant === 'fused') ?? cands[0];

registerFamily<BnReluGeom>({
  family: 'fused.bn-relu',
  about: 'batch norm with the ReLU before or after it: one set of BN kernels applying the ReLU and its mask, or separate ReLU kernels',
  shapeClass: (g) => `${g.order} ${g.training ? 'train' : 'eval'}`,
  defaultRule: (_g, _dev, cands) => fusedFirst(cands),
  describe: (g) => `${g.order} n${g.n} c${g.c} hw${g.hw}${g.training ? '' : ' eval'}`,
});
registerCandidates<BnReluGeom>('fused.bn-relu', [{ variant: 'fused' }, { variant: 'unfused' }]);

/** Whether batch norm and its ReLU run fused for this geometry (the planner's choice). */
export function fuseBnRelu(g: BnReluGeom): boolean {
  return plan<BnReluGeom>('fused.bn-relu', g).variant === 'fused';
}

/** The pool's input and window (Pool2dGeometry's), whether it pads, and the ReLU and mode of the BN. */
export interface BnPoolGeom extends Pick<Pool2dGeometry, 'n' | 'c' | 'h' | 'w' | 'kh' | 'kw' | 'sh' | 'sw'> {
  /** Whether any side is padded (the quad walk needs none). */
  pad: number;
  relu: ReluOrder | 'none';
  training: boolean;
}

registerFamily<BnPoolGeom>({
  family: 'fused.bn-pool',
  about: 'batch norm (+ ReLU) then max pool: the BN output computed per window as it is pooled, or a BN apply kernel and a pool kernel',
  shapeClass: (g) => `${g.kh}x${g.kw}s${g.sh}x${g.sw}${g.pad ? ' pad' : ''}|${g.h}x${g.w} ${g.relu} ${g.training ? 'train' : 'eval'}`,
  defaultRule: (_g, dev, cands) => (dev.isSoftware ? cands.find((c) => c.tile === 'quad') : undefined) ?? fusedFirst(cands),
  describe: (g) => `n${g.n} c${g.c} ${g.h}x${g.w} pool ${g.kh}x${g.kw}/${g.sh}x${g.sw} ${g.relu}${g.training ? '' : ' eval'}`,
});
// The tile says how the fused kernel walks: a thread per window, or (software adapters) by row quads
// where the windows tile whole vec4 rows (the plain pool's quad rule).
registerCandidates<BnPoolGeom>('fused.bn-pool', [
  { variant: 'fused', tile: 'window' },
  { variant: 'fused', tile: 'quad', suits: (g) => g.pad === 0 && quadPoolSuits({ ...g, pt: 0, pl: 0, pb: 0, pr: 0, oh: g.h / g.sh, ow: g.w / g.sw }) },
  { variant: 'unfused' },
]);

/** How batch norm (+ ReLU) and the max pool after it run: the planner's choice ('unfused', or the fused kernel's walk). */
export function bnPoolPlan(g: BnPoolGeom): 'unfused' | 'window' | 'quad' {
  const p = plan<BnPoolGeom>('fused.bn-pool', g);
  return p.variant === 'unfused' ? 'unfused' : p.tile === 'quad' ? 'quad' : 'window';
}

/**
 * Max pool of batch norm's output without storing it: y = maxpool(BN(x)) with the fused ReLU `act`,
 * given the per-channel mean and invstd (training) or the running mean and variance (`fromVar`, eval).
 * idx as maxPool2dForward's (positions in x's planes), so maxPool2dBackward routes dy to x's shape.
 */
export function bnMaxPoolForward(
  x: Tensor,
  gamma: Tensor | null,
  beta: Tensor | null,
  mean: Tensor,
  scale: Tensor,
  fromVar: boolean,
  act: NormAct,
  eps: number,
  pool: Pool2dOptions,
  walk: 'window' | 'quad' = 'window',
): MaxPoolResult {
  const { affine } = checkForward(x, gamma, beta, mean, scale);
  const g = pool2dGeometry(x.shape, pool);
  const shape = [g.n, g.c, g.oh, g.ow];
  const y = empty(shape);
  const idx = empty(shape, 'i32');
  const quad = walk === 'quad';
  if (quad && !quadPoolSuits(g)) throw new Error(`bn max pool: the row-quad walk does not suit ${g.kh}x${g.kw}/${g.sh}x${g.sw} over ${g.h}x${g.w}`);
  const key = `fused|bn-pool|${walk}${g.kw}|${affine}|${fromVar}|${+act.pre}${+act.post}`;
  const k = cachedKernel(key, () => bnMaxPoolKernel(affine, fromVar, act, quad ? (g.kw as 2 | 4) : null));
  const total = quad ? g.n * g.c * g.oh * (g.w / 4) : y.size;
  const p = BN_POOL_UNIFORM.pack({ total, c: g.c, h: g.h, w: g.w, oh: g.oh, ow: g.ow, kh: g.kh, kw: g.kw, sh: g.sh, sw: g.sw, pt: g.pt, pl: g.pl, eps });
  const bufs = [x, mean, scale, ...(affine ? [gamma!, beta!] : []), y, idx].map((t) => ({ buffer: t.buf }));
  queue.dispatch(k, bufs, p, gridFor(total, BN_POOL_WG), () => ({
    op: 'bn.pool',
    variant: `fused:${walk}`,
    shape: `n${g.n} c${g.c} ${g.h}x${g.w} k${g.kh}x${g.kw} s${g.sh}x${g.sw}`,
    flops: x.size * 4,
  }));
  return { y, idx };
}

registerFamily<BnPoolGeom>({
  family: 'fused.bn-pool-bwd',
  about: "the backward of batch norm + max pool: the BN backward reading the pooled gradient and argmax, or the pool's backward writing a full-size dy first",
  shapeClass: (g) => `${g.kh}x${g.kw}s${g.sh}x${g.sw}${g.pad ? ' pad' : ''}|${g.h}x${g.w} ${g.relu} ${g.training ? 'train' : 'eval'}`,
  defaultRule: (_g, _dev, cands) => fusedFirst(cands),
  describe: (g) => `n${g.n} c${g.c} ${g.h}x${g.w} pool ${g.kh}x${g.kw}/${g.sh}x${g.sw} ${g.relu}${g.training ? '' : ' eval'} backward`,
});
// No `suits` test: callers ask only for non-overlapping windows (poolFoldSuits), so an override such as
// `fused:fused` never meets a geometry it cannot serve.
registerCandidates<BnPoolGeom>('fused.bn-pool-bwd', [{ variant: 'fused' }, { variant: 'unfused' }]);

/**
 * Whether the backward of batch norm + max pool reads the pooled gradient directly: false where windows
 * overlap (an element in two windows), else the planner's choice.
 */
export function foldPoolBackward(g: BnPoolGeom): boolean {
  return poolFoldSuits(g) && plan<BnPoolGeom>('fused.bn-pool-bwd', g).variant === 'fused';
}

/** A batch norm after a conv with a bias: its channels, ReLU and mode. */
export interface BnBiasGeom {
  c: number;
  relu: ReluOrder | 'none';
  training: boolean;
}

registerFamily<BnBiasGeom>({
  family: 'fused.bn-bias-grad',
  about: "the preceding conv bias's gradient from the batch-norm backward's stage-1 sums, or a per-channel sum over the BN's input gradient",
  shapeClass: (g) => `${g.relu} ${g.training ? 'train' : 'eval'}`,
  defaultRule: (_g, _dev, cands) => fusedFirst(cands),
  describe: (g) => `c${g.c} ${g.relu}${g.training ? '' : ' eval'}`,
  // The bias's gradient is summed in another order: runs recorded before this family keep the old sum.
  legacy: 'unfused',
});
registerCandidates<BnBiasGeom>('fused.bn-bias-grad', [{ variant: 'fused' }, { variant: 'unfused' }]);

/** Whether the BN backward delivers the preceding conv bias's gradient (the planner's choice). */
export function foldBiasGrad(g: BnBiasGeom): boolean {
  return plan<BnBiasGeom>('fused.bn-bias-grad', g).variant === 'fused';
}

/** A conv and the eval-mode batch norm after it: its weight's shape, its output, and what follows the BN. */
export interface ConvBnGeom {
  cout: number;
  /** Weights per output channel (cin / groups * kh * kw). */
  k: number;
  /** Output values per channel (N * OH * OW). */
  rows: number;
  relu: boolean;
  pool: boolean;
}

registerFamily<ConvBnGeom>({
  family: 'fused.conv-bn',
  about: "eval-mode batch norm folded into the preceding conv's weights and bias (one small pass over the weights), or a BN pass over the conv's output",
  shapeClass: (g) => `${g.relu ? 'relu' : 'plain'}${g.pool ? ' pool' : ''} ${g.rows > g.k ? 'act' : 'weights'}`,
  // Folding trades a read and a write of the activation (the BN pass) for a read and a write of the
  // weights (the fold), and saves that only where the BN has a pass of its own: a BN followed by a max
  // pool already rides in the pool kernel (fused.bn-pool), and a BN + ReLU pass becomes a ReLU pass of
  // the same bytes. So the static rule folds a BN with neither after it, where the activation per
  // channel outweighs the weights per channel (not ResNet-18's late stages at small inputs: 512 x 4
  // outputs per channel against 4,608 weights).
  defaultRule: (g, _dev, cands) => cands.find((c) => c.variant === (g.relu || g.pool || g.rows <= g.k ? 'unfused' : 'fused')) ?? cands[0],
  describe: (g) => `cout ${g.cout} k ${g.k} rows ${g.rows}${g.relu ? ' relu' : ''}${g.pool ? ' pool' : ''}`,
  legacy: 'unfused',
});
registerCandidates<ConvBnGeom>('fused.conv-bn', [{ variant: 'fused' }, { variant: 'unfused' }]);

/** Whether an eval-mode BN after a conv is folded into the conv's weights (the planner's choice). */
export function foldConvBn(g: ConvBnGeom): boolean {
  return plan<ConvBnGeom>('fused.conv-bn', g).variant === 'fused';
}

/**
 * The conv weight and bias with an eval-mode batch norm folded in: w * s and (b - mean) * s + beta per
 * output channel, s = gamma / sqrt(var + eps). w [Cout, ...], b/gamma/beta/mean/var [Cout] (b, and
 * gamma with beta, may be null). Raw op: no gradients (callers fold only where none are recorded).
 */
export function foldBatchNormIntoConv(
  w: Tensor,
  b: Tensor | null,
  gamma: Tensor | null,
  beta: Tensor | null,
  runningMean: Tensor,
  runningVar: Tensor,
  eps: number,
): { w: Tensor; b: Tensor } {
  const cout = w.shape[0];
  if (w.dtype !== 'f32' || w.rank < 2) throw new Error(`fold batch norm: the conv weight must be f32 [Cout, ...], got ${w.dtype} [${w.shape.join(', ')}]`);
  if (!!gamma !== !!beta) throw new Error('fold batch norm: pass both gamma and beta (affine) or neither');
  const affine = !!gamma;
  for (const [t, what] of [[b, 'conv bias'], [gamma, 'gamma'], [beta, 'beta'], [runningMean, 'running mean'], [runningVar, 'running var']] as const) {
    if (t && (t.dtype !== 'f32' || t.size !== cout)) throw new Error(`fold batch norm: ${what} must be f32 with ${cout} elements, got ${t.dtype} [${t.shape.join(', ')}]`);
  }
  const k = w.size / cout;
  const w2 = empty(w.shape);
  const b2 = empty([cout]);
  const kern = cachedKernel(`fused|fold-bn|${!!b}|${affine}`, () => foldBnKernel(!!b, affine));
  const bufs = [w, ...(b ? [b] : []), runningMean, runningVar, ...(affine ? [gamma!, beta!] : []), w2, b2].map((t) => ({ buffer: t.buf }));
  const total = cout * (k + 1);
  queue.dispatch(kern, bufs, FOLD_UNIFORM.pack({ k, cout, eps }), gridFor(total, FOLD_WG), () => ({ op: 'conv.fold-bn', variant: 'fused', shape: `cout${cout} k${k}`, flops: 2 * total }));
  return { w: w2, b: b2 };
}

/** A conv with a ReLU right after it: the planned conv.fwd variant, its output and whether it has a bias. */
export interface ConvReluGeom {
  /** The conv.fwd candidate's variant the planner picked for this conv. */
  conv: string;
  cout: number;
  /** Output values per channel (N * OH * OW). */
  rows: number;
  bias: boolean;
}

registerFamily<ConvReluGeom>({
  family: 'fused.conv-relu',
  about: "conv (+ bias) then ReLU: max(., 0) in the conv kernel's store and the gradient masked by y > 0, or a ReLU pass over the conv's output",
  shapeClass: (g) => `${g.conv}${g.bias ? ' bias' : ''}`,
  // The ReLU pass reads and writes the whole activation; the epilogue costs a max per stored value.
  defaultRule: (_g, _dev, cands) => fusedFirst(cands),
  describe: (g) => `${g.conv} cout ${g.cout} rows ${g.rows}${g.bias ? ' bias' : ''}`,
  // No legacy variant: max(conv + bias, 0) and the y > 0 mask give the unfused chain's bits.
});
registerCandidates<ConvReluGeom>('fused.conv-relu', [{ variant: 'fused', suits: (g) => RELU_EPILOGUE_VARIANTS.includes(g.conv) }, { variant: 'unfused' }]);

/** Whether the ReLU after a conv of geometry `g` rides in the conv kernel's store (the planner's choice). */
export function fuseConvRelu(g: Conv2dGeometry, bias: boolean): boolean {
  const conv = plan<Conv2dGeometry>('conv.fwd', g).variant;
  return plan<ConvReluGeom>('fused.conv-relu', { conv, cout: g.cout, rows: g.n * g.oh * g.ow, bias }).variant === 'fused';
}

export interface LossGeom {
  n: number;
}

/** Most logits the one-workgroup loss kernel takes (beyond, the unfused reduction spreads the sum). */
export const FUSED_LOSS_MAX = 1 << 16;

registerFamily<LossGeom>({
  family: 'fused.bce',
  about: 'BCE-with-logits: the per-element loss, its sum and the mean in one workgroup, or a map, a reduction and a scale',
  shapeClass: (g) => `n2^${log2Class(g.n)}`,
  defaultRule: (_g, _dev, cands) => fusedFirst(cands),
});
registerCandidates<LossGeom>('fused.bce', [{ variant: 'fused', suits: (g) => g.n <= FUSED_LOSS_MAX }, { variant: 'unfused' }]);

/** Whether BCE-with-logits of n logits runs as one fused kernel (the planner's choice). */
export function fuseBce(n: number): boolean {
  return plan<LossGeom>('fused.bce', { n }).variant === 'fused';
}

/** Mean BCE-with-logits of logits against 0/1 targets of the same size: a scalar tensor [1]. */
export function bceWithLogitsMean(logits: Tensor, target: Tensor): Tensor {
  if (logits.dtype !== 'f32' || target.dtype !== 'f32') throw new Error(`bce_with_logits: logits and targets must be f32, got ${logits.dtype} and ${target.dtype}`);
  if (logits.size !== target.size) throw new Error(`bce_with_logits: ${logits.size} logits and ${target.size} targets differ`);
  if (logits.size > FUSED_LOSS_MAX) throw new Error(`bce_with_logits: the fused loss takes at most ${FUSED_LOSS_MAX} logits, got ${logits.size}`);
  const out = empty([]);
  const n = logits.size;
  const k = cachedKernel('fused|bce-mean', bceMeanKernel);
  queue.dispatch(k, [{ buffer: logits.buf }, { buffer: target.buf }, { buffer: out.buf }], LOSS_UNIFORM.pack({ n, scale: n ? 1 / n : NaN }), [1, 1, 1], () => ({
    op: 'loss.bce',
    variant: 'fused',
    shape: `${n}`,
    flops: 8 * n,
  }));
  return out;
}

// Differentiable fused ops: one recorded op where the model would otherwise chain several, each
// falling back to that chain when the planner chooses 'unfused' (tensor/ops/fused.ts), so the two
// paths are interchangeable per run and comparable in one process.
import { keep, type Tensor } from '../tensor/tensor.js';
import { batchNormBackward, batchNormEvalBackward, batchNormTrainStats, channelGeometry, type BatchNormGrads, type NormAct, type NormDy } from '../tensor/ops/norm.js';
import { bnMaxPoolForward, bnPoolPlan, foldBatchNormIntoConv, foldBiasGrad, foldConvBn, foldPoolBackward, fuseBnRelu, fuseConvRelu, type BnPoolGeom, type ReluOrder } from '../tensor/ops/fused.js';
import type { Conv2dOptions } from '../tensor/ops/conv.js';
import { conv2dForward } from '../tensor/ops/conv.js';
import { conv2dGeometry, conv2dOutputShape } from '../tensor/ops/conv-geometry.js';
import { maxPool2dBackward, pool2dGeometry, type Pool2dOptions } from '../tensor/ops/pool.js';
import { batchNorm2d, bnInputGrads, conv2d, conv2dGrads, maxPool2d } from './functional-nn.js';
import { relu, reluGrad } from './functional.js';
import { needsGrad, record } from './tape.js';
import { binary, mapExpr } from '../tensor/ops/map.js';
import { sumToShape } from '../tensor/ops/reduce.js';

export type { ReluOrder };

/**
 * Batch norm with a ReLU before it ('relu-bn': y = BN(relu(x)), Meso's blocks) or after it
 * ('bn-relu': y = relu(BN(x)), CNN-5 and ResNet); same arguments and semantics as batchNorm2d, so the
 * same values as relu and batchNorm2d chained (the fused kernels apply the ReLU as they load x or store
 * y, and mask the gradient in the BN backward kernels). Training and eval mode.
 */
export function batchNormRelu(
  x: Tensor,
  order: ReluOrder,
  weight: Tensor | null,
  bias: Tensor | null,
  runningMean: Tensor,
  runningVar: Tensor,
  training: boolean,
  momentum = 0.1,
  eps = 1e-5,
): Tensor {
  const cg = channelGeometry(x.shape);
  const bn = (v: Tensor, act = { pre: false, post: false }) => batchNorm2d(v, weight, bias, runningMean, runningVar, training, momentum, eps, act);
  if (fuseBnRelu({ n: cg.n, c: cg.c, hw: cg.hw, order, training })) return bn(x, { pre: order === 'relu-bn', post: order === 'bn-relu' });
  return order === 'relu-bn' ? bn(relu(x)) : relu(bn(x));
}

/** How batchNormMaxPool pools: kernel, stride (default the kernel) and padding, as maxPool2d's. */
export type MaxPoolArgs = Required<Pick<Pool2dOptions, 'kernel'>> & Pick<Pool2dOptions, 'stride' | 'padding'>;

function bnPoolGeom(shape: readonly number[], order: ReluOrder | null, training: boolean, pool: MaxPoolArgs): BnPoolGeom {
  const pg = pool2dGeometry(shape, pool);
  const pad = pg.pt + pg.pl + pg.pb + pg.pr;
  return { n: pg.n, c: pg.c, h: pg.h, w: pg.w, kh: pg.kh, kw: pg.kw, sh: pg.sh, sw: pg.sw, pad, relu: order ?? 'none', training };
}

/**
 * Whether batchNormMaxPool of an input of `shape` can deliver the gradient of the bias of the conv
 * before it (its `inBias`): where it runs fused and the planner takes the bias's gradient from the BN
 * backward's stage 1 (fused.bn-bias-grad). Ask before running the conv, which then leaves its bias out
 * of its recorded op (conv2d's biasGrad false).
 */
export function bnPoolTakesBiasGrad(shape: readonly number[], order: ReluOrder | null, training: boolean, pool: MaxPoolArgs): boolean {
  const g = bnPoolGeom(shape, order, training, pool);
  return bnPoolPlan(g) !== 'unfused' && foldBiasGrad({ c: g.c, relu: g.relu, training });
}

/**
 * maxPool2d(batch norm (with its ReLU, if `order`)): Meso-4's and CNN-5's block ends. Fused, the BN
 * output is computed per pooling window and never stored; the backward routes dy through the max-pool
 * backward into the BN backward (with the ReLU's mask). Same values as the chain, bit for bit forward.
 * `inBias`: the bias of the conv that produced x, whose gradient the BN backward then delivers (only
 * where bnPoolTakesBiasGrad said so, and the conv left it out of its own op).
 */
export function batchNormMaxPool(
  x: Tensor,
  order: ReluOrder | null,
  weight: Tensor | null,
  bias: Tensor | null,
  runningMean: Tensor,
  runningVar: Tensor,
  training: boolean,
  momentum: number,
  eps: number,
  pool: MaxPoolArgs,
  inBias: Tensor | null = null,
): Tensor {
  const pg = pool2dGeometry(x.shape, pool);
  const g = bnPoolGeom(x.shape, order, training, pool);
  const walk = bnPoolPlan(g);
  if (inBias && !bnPoolTakesBiasGrad(x.shape, order, training, pool)) throw new Error('batch norm max pool: inBias given where the planner does not fold the conv bias gradient (ask bnPoolTakesBiasGrad first)');
  if (walk === 'unfused') {
    const y = order ? batchNormRelu(x, order, weight, bias, runningMean, runningVar, training, momentum, eps) : batchNorm2d(x, weight, bias, runningMean, runningVar, training, momentum, eps);
    return maxPool2d(y, pool.kernel, pool.stride ?? pool.kernel, pool.padding ?? 0);
  }
  const act: NormAct = { pre: order === 'relu-bn', post: order === 'bn-relu' };
  const inputs = [x, ...(weight && bias ? [weight, bias] : []), ...(inBias ? [inBias] : [])];
  const opts: Pool2dOptions = { kernel: pool.kernel, stride: pool.stride ?? pool.kernel, padding: pool.padding ?? 0 };
  // dy of the pooled output -> the BN backward's gradients: read pooled (the pool's backward folded
  // in, planner family fused.bn-pool-bwd), or through a full-size dy from the max-pool backward.
  const fold = foldPoolBackward(g);
  const through = (gy: Tensor, idx: Tensor, bn: (dy: NormDy) => BatchNormGrads) => {
    const grads = (r: BatchNormGrads) => [...bnInputGrads(x, weight, bias, r), ...(inBias ? [r.dbiasIn] : [])];
    if (fold) return grads(bn({ gy, idx, pool: pg }));
    const dy = maxPool2dBackward(gy, idx, x.shape, opts);
    const out = grads(bn(dy));
    dy.dispose();
    return out;
  };
  if (training) {
    const { mean, invstd } = batchNormTrainStats(x, runningMean, runningVar, momentum, eps, act);
    const { y, idx } = bnMaxPoolForward(x, weight, bias, mean, invstd, false, act, eps, opts, walk);
    const rule = (gy: Tensor) => through(gy, idx, (dy) => batchNormBackward(dy, x, weight, mean, invstd, act, bias, !!inBias));
    return record('batch_norm_max_pool', y, inputs, rule, [keep(mean), keep(invstd), keep(idx)]);
  }
  const { y, idx } = bnMaxPoolForward(x, weight, bias, runningMean, runningVar, true, act, eps, opts, walk);
  const rule = (gy: Tensor) => through(gy, idx, (dy) => batchNormEvalBackward(dy, x, weight, runningMean, runningVar, eps, act, bias, !!inBias));
  return record('batch_norm_max_pool_eval', y, inputs, rule, [keep(idx)]);
}

/** A conv's parameters and options, as convBatchNormFolded takes them. */
export interface ConvArgs {
  weight: Tensor;
  bias: Tensor | null;
  opts: Conv2dOptions;
}

/** An eval-mode batch norm's parameters and statistics. */
export interface BnArgs {
  weight: Tensor | null;
  bias: Tensor | null;
  runningMean: Tensor;
  runningVar: Tensor;
  eps: number;
}

/** 1 / sqrt(var + eps) per channel of an eval-mode BN. */
function bnInv(bn: BnArgs): Tensor {
  return mapExpr('bn_invstd', 'inverseSqrt(x0 + p.alpha)', [bn.runningVar], bn.eps);
}

/**
 * The conv's weight and bias with the eval-mode BN folded in. The values come from the one fold
 * kernel whether or not gradients are recorded (so eval outputs do not depend on grad recording);
 * where they are, two ops give the parameters their gradients, with s = gamma * inv, inv =
 * 1 / sqrt(var + eps): W' = W s gives dW = gW' s and dgamma = inv sum_k gW' W; b' = (b - mean) s +
 * beta gives db = gb' s, dgamma += inv gb' (b - mean), dbeta = gb'.
 */
function foldedParams(conv: ConvArgs, bn: BnArgs): { w: Tensor; b: Tensor } {
  const f = foldBatchNormIntoConv(conv.weight, conv.bias, bn.weight, bn.bias, bn.runningMean, bn.runningVar, bn.eps);
  const { weight: w, bias: b } = conv;
  const { weight: gamma, bias: beta } = bn;
  const cout = w.shape[0];
  const col = [cout, ...w.shape.slice(1).map(() => 1)];
  // dL/dgamma of `term` (gW' * W or gb' * (b - mean)): inv * its per-channel sum.
  const gammaGrad = (term: Tensor) => {
    const inv = bnInv(bn);
    const r = term.rank > 1 ? sumToShape(term, col) : term;
    const flat = r.reshape([cout]);
    const out = binary('mul', flat, inv);
    for (const t of new Set([term, r, flat, inv])) t.dispose();
    return out;
  };
  // g * s per output channel, s = gamma * inv (inv without gamma).
  const scaled = (g: Tensor) => {
    const inv = bnInv(bn);
    const s = gamma ? binary('mul', gamma, inv) : inv;
    const sv = g.rank > 1 ? s.reshape(col) : s;
    const out = binary('mul', g, sv);
    for (const t of new Set([sv, s, inv])) t.dispose();
    return out;
  };
  // Recorded, each folded tensor is owned by its own op: the conv's backward (which runs first) still
  // reads it, and it is freed once its own backward has run.
  const own = (t: Tensor, inputs: Tensor[]) => (needsGrad(...inputs) ? [keep(t)] : []);
  const wIns = [w, ...(gamma ? [gamma] : [])];
  const bIns = [...(b ? [b] : []), ...(gamma && beta ? [gamma, beta] : [])];
  const wOut = record('fold_bn_weight', f.w, wIns, (g) => [
    w.requiresGrad ? scaled(g) : null,
    ...(gamma ? [gamma.requiresGrad ? gammaGrad(binary('mul', g, w)) : null] : []),
  ], own(f.w, wIns));
  const bOut = record('fold_bn_bias', f.b, bIns, (g) => [
    ...(b ? [b.requiresGrad ? scaled(g) : null] : []),
    ...(gamma && beta
      ? [
          gamma.requiresGrad ? gammaGrad(b ? mapExpr('fold_bn_db', '(x1 - x2) * x0', [g, b, bn.runningMean]) : mapExpr('fold_bn_db', '-x1 * x0', [g, bn.runningMean])) : null,
          beta.requiresGrad ? g.reshape([cout]) : null,
        ]
      : []),
  ], own(f.b, bIns));
  return { w: wOut, b: bOut };
}

/**
 * conv2d then eval-mode batch norm (then a ReLU after it, then a max pool) with the BN folded into the
 * conv's weights and bias: one small pass over the weights instead of one over the activation, where
 * the planner folds (fused.conv-bn); null otherwise, and the caller runs the chain. Differentiable
 * (foldedParams). Same function as the chain within float32 rounding (the BN's scale multiplies the
 * weights instead of the sums).
 */
export function convBatchNormFolded(x: Tensor, conv: ConvArgs, bn: BnArgs, withRelu: boolean, pool: MaxPoolArgs | null): Tensor | null {
  const cout = conv.weight.shape[0];
  const [n, , oh, ow] = conv2dOutputShape(x.shape, conv.weight.shape, conv.opts);
  if (!foldConvBn({ cout, k: conv.weight.size / cout, rows: n * oh * ow, relu: withRelu, pool: !!pool })) return null;
  const f = foldedParams(conv, bn);
  const steps: ((t: Tensor) => Tensor)[] = [];
  // max(relu(v)) = relu(max(v)): the ReLU runs on the pooled tensor, a fraction of the activation.
  if (pool) steps.push((t) => maxPool2d(t, pool.kernel, pool.stride ?? pool.kernel, pool.padding ?? 0));
  // Without a pool the ReLU follows the conv directly: in its store where the planner fuses that.
  if (withRelu && pool) steps.push(relu);
  let y = withRelu && !pool ? conv2dRelu(x, f.w, f.b, conv.opts) : conv2d(x, f.w, f.b, conv.opts);
  // Not recorded, the folded tensors are temporaries; recorded, their ops own them (foldedParams).
  for (const t of [f.w, f.b]) if (!t.requiresGrad) t.dispose();
  for (const step of steps) {
    const next = step(y);
    // Recorded, an intermediate lives until its backward (the enclosing tidy frees it), as the chain's do.
    if (!y.requiresGrad) y.dispose();
    y = next;
  }
  return y;
}

/**
 * relu(conv2d(x, weight, bias)): Inception branches and any conv followed directly by a ReLU. Fused
 * (fused.conv-relu), the conv kernel stores max(conv + bias, 0), so the ReLU's pass over the
 * activation is gone, and the backward masks the incoming gradient by y > 0 (y > 0 exactly where the
 * conv's output is) before the conv's usual backward. Bit for bit the chain, forward and backward.
 */
export function conv2dRelu(x: Tensor, weight: Tensor, bias: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  if (!fuseConvRelu(conv2dGeometry(x.shape, weight.shape, opts), !!bias)) return relu(conv2d(x, weight, bias, opts));
  const y = conv2dForward(x, weight, bias, opts, true);
  return record('conv2d_relu', y, bias ? [x, weight, bias] : [x, weight], (gy) => {
    const masked = reluGrad(gy, y);
    const out = conv2dGrads(masked, x, weight, bias, opts);
    masked.dispose();
    return out;
  });
}

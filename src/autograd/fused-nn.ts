// Differentiable fused ops: one recorded op where the model would otherwise chain several, each
// falling back to that chain when the planner chooses 'unfused' (tensor/ops/fused.ts), so the two
// paths are interchangeable per run and comparable in one process.
import { keep, type Tensor } from '../tensor/tensor.js';
import { batchNormBackward, batchNormEvalBackward, batchNormTrainStats, channelGeometry, type BatchNormGrads, type NormAct } from '../tensor/ops/norm.js';
import { bnMaxPoolForward, bnPoolPlan, fuseBnRelu, type ReluOrder } from '../tensor/ops/fused.js';
import { maxPool2dBackward, pool2dGeometry, type Pool2dOptions } from '../tensor/ops/pool.js';
import { batchNorm2d, bnInputGrads, maxPool2d } from './functional-nn.js';
import { relu } from './functional.js';
import { record } from './tape.js';

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

/**
 * maxPool2d(batch norm (with its ReLU, if `order`)): Meso-4's and CNN-5's block ends. Fused, the BN
 * output is computed per pooling window and never stored; the backward routes dy through the max-pool
 * backward into the BN backward (with the ReLU's mask). Same values as the chain, bit for bit forward.
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
): Tensor {
  const pg = pool2dGeometry(x.shape, pool);
  const pad = pg.pt + pg.pl + pg.pb + pg.pr;
  const g = { n: pg.n, c: pg.c, h: pg.h, w: pg.w, kh: pg.kh, kw: pg.kw, sh: pg.sh, sw: pg.sw, pad, relu: order ?? ('none' as const), training };
  const walk = bnPoolPlan(g);
  if (walk === 'unfused') {
    const y = order ? batchNormRelu(x, order, weight, bias, runningMean, runningVar, training, momentum, eps) : batchNorm2d(x, weight, bias, runningMean, runningVar, training, momentum, eps);
    return maxPool2d(y, pool.kernel, pool.stride ?? pool.kernel, pool.padding ?? 0);
  }
  const act: NormAct = { pre: order === 'relu-bn', post: order === 'bn-relu' };
  const inputs = weight && bias ? [x, weight, bias] : [x];
  const opts: Pool2dOptions = { kernel: pool.kernel, stride: pool.stride ?? pool.kernel, padding: pool.padding ?? 0 };
  // dy of the pooled output -> dy of the BN output (max-pool backward) -> the BN backward's gradients.
  const through = (gy: Tensor, idx: Tensor, bn: (dy: Tensor) => BatchNormGrads) => {
    const dy = maxPool2dBackward(gy, idx, x.shape, opts);
    const out = bnInputGrads(x, weight, bias, bn(dy));
    dy.dispose();
    return out;
  };
  if (training) {
    const { mean, invstd } = batchNormTrainStats(x, runningMean, runningVar, momentum, eps, act);
    const { y, idx } = bnMaxPoolForward(x, weight, bias, mean, invstd, false, act, eps, opts, walk);
    const rule = (gy: Tensor) => through(gy, idx, (dy) => batchNormBackward(dy, x, weight, mean, invstd, act, bias));
    return record('batch_norm_max_pool', y, inputs, rule, [keep(mean), keep(invstd), keep(idx)]);
  }
  const { y, idx } = bnMaxPoolForward(x, weight, bias, runningMean, runningVar, true, act, eps, opts, walk);
  const rule = (gy: Tensor) => through(gy, idx, (dy) => batchNormEvalBackward(dy, x, weight, runningMean, runningVar, eps, act, bias));
  return record('batch_norm_max_pool_eval', y, inputs, rule, [keep(idx)]);
}

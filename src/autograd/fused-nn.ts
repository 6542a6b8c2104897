// Differentiable fused ops: one recorded op where the model would otherwise chain several, each
// falling back to that chain when the planner chooses 'unfused' (tensor/ops/fused.ts), so the two
// paths are interchangeable per run and comparable in one process.
import type { Tensor } from '../tensor/tensor.js';
import { channelGeometry } from '../tensor/ops/norm.js';
import { fuseBnRelu, type ReluOrder } from '../tensor/ops/fused.js';
import { batchNorm2d } from './functional-nn.js';
import { relu } from './functional.js';

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

// Differentiable conv / pooling / batch-norm: the raw kernels of src/tensor/ops/{conv,pool,norm}.ts
// with their backward rules recorded on the tape.
import { keep, type Tensor } from '../tensor/tensor.js';
import {
  conv2dBackwardBias,
  conv2dBackwardInput,
  conv2dBackwardWeight,
  conv2dForward,
  type Conv2dOptions,
  type Pair,
  type Padding2d,
} from '../tensor/ops/conv.js';
import {
  adaptiveAvgPool2dTo1,
  adaptiveAvgPool2dTo1Backward,
  avgPool2dBackward,
  avgPool2dForward,
  maxPool2dBackward,
  maxPool2dForward,
  type Pool2dOptions,
} from '../tensor/ops/pool.js';
import { batchNormBackward, batchNormEvalBackward, batchNormEvalForward, batchNormTrainForward, NO_ACT, type BatchNormGrads, type NormAct } from '../tensor/ops/norm.js';
import { record, needsGrad } from './tape.js';
import { withPhase } from '../tensor/trace.js';
import { planPhases, runPhase, type LayerProblem } from '../tensor/sparse-plan.js';
import type { SparseWeight } from '../tensor/ops/sparse.js';
import { sum as rawSum } from '../tensor/ops/reduce.js';
import { binary as binaryRaw } from '../tensor/ops/map.js';
import { gatherAt as gatherAtRaw, scatterAt } from '../tensor/ops/compact.js';

/**
 * y = conv2d(x, weight) + bias. `biasGrad` false: the bias is not an input of the recorded op, because
 * the op consuming y delivers its gradient (a batch norm's backward, fused.bn-bias-grad).
 */
export function conv2d(x: Tensor, weight: Tensor, bias: Tensor | null, opts: Conv2dOptions = {}, biasGrad = true): Tensor {
  const y = conv2dForward(x, weight, bias, opts);
  const b = biasGrad ? bias : null;
  return record('conv2d', y, b ? [x, weight, b] : [x, weight], (g) => conv2dGrads(g, x, weight, b, opts));
}

/** The gradients of conv2d's recorded inputs [x, weight, (bias)] from the output's gradient g. */
export function conv2dGrads(g: Tensor, x: Tensor, weight: Tensor, bias: Tensor | null, opts: Conv2dOptions): (Tensor | null)[] {
  return [
    x.requiresGrad ? conv2dBackwardInput(g, weight, x.shape, opts) : null,
    weight.requiresGrad ? conv2dBackwardWeight(g, x, weight.shape, opts) : null,
    ...(bias ? [bias.requiresGrad ? withPhase('weight-grad', () => conv2dBackwardBias(g)) : null] : []),
  ];
}

export function maxPool2d(x: Tensor, kernel: Pair, stride: Pair = kernel, padding: Padding2d = 0): Tensor {
  const opts: Pool2dOptions = { kernel, stride, padding };
  const { y, idx } = maxPool2dForward(x, opts);
  if (!needsGrad(x)) {
    idx.dispose();
    return y;
  }
  return record('max_pool2d', y, [x], (g) => [maxPool2dBackward(g, idx, x.shape, opts)], [keep(idx)]);
}

export function avgPool2d(x: Tensor, kernel: Pair, stride: Pair = kernel, padding: Padding2d = 0, countIncludePad = true): Tensor {
  const opts: Pool2dOptions = { kernel, stride, padding, countIncludePad };
  return record('avg_pool2d', avgPool2dForward(x, opts), [x], (g) => [avgPool2dBackward(g, x.shape, opts)]);
}

/** Global average pool to [N, C, 1, 1]. */
export function adaptiveAvgPool2d1(x: Tensor): Tensor {
  return record('adaptive_avg_pool2d', adaptiveAvgPool2dTo1(x), [x], (g) => [adaptiveAvgPool2dTo1Backward(g, x.shape)]);
}

/** A batch norm's backward results as the gradients of its recorded inputs [x, (weight, bias)]. */
export function bnInputGrads(x: Tensor, weight: Tensor | null, bias: Tensor | null, r: BatchNormGrads): (Tensor | null)[] {
  const out: (Tensor | null)[] = [x.requiresGrad ? r.dx : (r.dx.dispose(), null)];
  if (weight && bias) out.push(r.dgamma, r.dbeta);
  else {
    r.dgamma?.dispose();
    r.dbeta?.dispose();
  }
  return out;
}

/**
 * Batch norm over NCHW. Training: batch statistics, running stats updated in place (momentum, unbiased
 * variance), as torch.nn.functional.batch_norm(training=True). Eval: running statistics. `act` fuses a
 * ReLU on the input (pre) or the output (post) into the BN kernels; autograd/fused-nn.ts's
 * batchNormRelu is the planned entry.
 */
export function batchNorm2d(
  x: Tensor,
  weight: Tensor | null,
  bias: Tensor | null,
  runningMean: Tensor,
  runningVar: Tensor,
  training: boolean,
  momentum = 0.1,
  eps = 1e-5,
  act: NormAct = NO_ACT,
): Tensor {
  const inputs = weight && bias ? [x, weight, bias] : [x];
  const fused = act.pre || act.post;
  const grads = (r: BatchNormGrads) => bnInputGrads(x, weight, bias, r);
  if (training) {
    const { y, mean, invstd } = batchNormTrainForward(x, weight, bias, runningMean, runningVar, momentum, eps, act);
    const name = fused ? 'batch_norm_relu' : 'batch_norm';
    return record(name, y, inputs, (g) => grads(batchNormBackward(g, x, weight, mean, invstd, act, bias)), [keep(mean), keep(invstd)]);
  }
  const y = batchNormEvalForward(x, weight, bias, runningMean, runningVar, eps, act);
  const name = fused ? 'batch_norm_relu_eval' : 'batch_norm_eval';
  return record(name, y, inputs, (g) => grads(batchNormEvalBackward(g, x, weight, runningMean, runningVar, eps, act, bias)));
}

/**
 * A pruned conv or linear layer whose phases run the kernels the planner chooses for its shapes and
 * density (src/tensor/sparse-plan.ts): the dense kernel on weight * mask, or a sparse one that skips
 * pruned taps. Same values as
 * conv2d/linear(x, weight * mask) within float32 rounding; the weight's gradient is exactly +0 at
 * pruned positions either way. x [N, Cin, H, W] (conv) or [N, in] (linear).
 */
export function prunedLayer(
  kind: LayerProblem['kind'],
  x: Tensor,
  weight: Tensor,
  mask: Tensor,
  sw: SparseWeight | null,
  bias: Tensor | null,
  opts: Conv2dOptions = {},
  biasGrad = true,
): Tensor {
  const p: LayerProblem = { kind, xShape: x.shape, wShape: weight.shape, opts };
  const kernels = planPhases(p, sw ? sw.density : null);
  const grads = needsGrad(x, weight, ...(bias ? [bias] : []));
  // The dense forward and input gradient share one masked weight, kept for the backward.
  const keepWm = grads && x.requiresGrad && kernels['input-grad'] === 'dense';
  const wm = kernels.forward === 'dense' || keepWm ? binaryRaw('mul', weight, mask) : undefined;
  const y = runPhase(p, 'forward', kernels.forward, { x, w: weight, mask, sw, bias, wm });
  if (wm && !keepWm) wm.dispose();
  // biasGrad false: as conv2d's, the consumer of y delivers the bias's gradient.
  const b = biasGrad ? bias : null;
  const inputs = b ? [x, weight, b] : [x, weight];
  return record(
    kind === 'conv' ? 'conv2d' : 'linear',
    y,
    inputs,
    (g) => [
      x.requiresGrad ? runPhase(p, 'input-grad', kernels['input-grad'], { dy: g, w: weight, mask, sw, wm: keepWm ? wm : undefined }) : null,
      weight.requiresGrad ? runPhase(p, 'weight-grad', kernels['weight-grad'], { dy: g, x, w: weight, mask, sw }) : null,
      ...(b ? [b.requiresGrad ? withPhase('weight-grad', () => (kind === 'conv' ? conv2dBackwardBias(g) : rawSum(g, [0], false))) : null] : []),
    ],
    keepWm && wm ? [keep(wm)] : [],
  );
}

/**
 * out[i] = x.flat[idx[i]], shaped `shape` (compaction's kept rows, columns or channels of a parameter
 * or activation); the gradient scatters back into a zeroed tensor of x's shape, so entries that were
 * not gathered get exact +0.
 */
export function gatherAt(x: Tensor, idx: Tensor, shape: readonly number[]): Tensor {
  return record('gather_at', gatherAtRaw(x, idx, shape), [x], (g) => [scatterAt(g, idx, x.shape)]);
}

// Sparse linear layers (ops/sparse.ts): a 1x1 conv over a 1x1 image, x [N, in] viewed as [N, in, 1, 1].
import type { Shape, Tensor } from '../tensor.js';
import { backwardInputByIn, sparseConv2dBackwardWeight, sparseConv2dForward, type SparseBlock, type SparseWeight } from './sparse.js';

function asImage(x: Tensor, what: string): Tensor {
  if (x.rank !== 2) throw new Error(`${what}: input must be [N, features], got [${x.shape.join(', ')}]`);
  return x.reshape([x.shape[0], x.shape[1], 1, 1]);
}

/** y = x (w * mask)^T + bias, x [N, in], w [out, in]. */
export function sparseLinearForward(x: Tensor, sw: SparseWeight, vals: Tensor, bn: SparseBlock, bias: Tensor | null): Tensor {
  const xi = asImage(x, 'sparse linear');
  const y = sparseConv2dForward(xi, sw, vals, bn, bias);
  xi.dispose();
  const out = y.reshape([x.shape[0], sw.wShape[0]]);
  y.dispose();
  return out;
}

/** dx of the sparse linear: dy [N, out]. */
export function sparseLinearBackwardInput(dy: Tensor, sw: SparseWeight, vals: Tensor, bn: SparseBlock, xShape: Shape): Tensor {
  const dyi = asImage(dy, 'sparse linear backward');
  const dx = backwardInputByIn(dyi, sw, vals, bn, [xShape[0], xShape[1], 1, 1]);
  dyi.dispose();
  const out = dx.reshape([...xShape]);
  dx.dispose();
  return out;
}

/** dw of the sparse linear at the kept positions (+0 elsewhere), shape [out, in]. */
export function sparseLinearBackwardWeight(dy: Tensor, x: Tensor, sw: SparseWeight, bn: SparseBlock): Tensor {
  const dyi = asImage(dy, 'sparse linear backward');
  const xi = asImage(x, 'sparse linear backward');
  const dw = sparseConv2dBackwardWeight(dyi, xi, sw, bn);
  dyi.dispose();
  xi.dispose();
  const out = dw.reshape([sw.wShape[0], sw.wShape[1]]);
  dw.dispose();
  return out;
}

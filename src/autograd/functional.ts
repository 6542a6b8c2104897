// Differentiable ops: each runs raw tensor ops forward and records its backward rule on the tape.
// Naming follows torch.nn.functional where PyTorch has the op.
import { Tensor, type Shape, fromArray, keep } from '../tensor/tensor.js';
import { binary, cast, fill, mapExpr, ternary, unary } from '../tensor/ops/map.js';
import {
  concat as rawConcat,
  expand,
  normAxis,
  permute as rawPermute,
  scatterSlice,
  slice as rawSlice,
  split as rawSplit,
  transposeDims,
} from '../tensor/ops/layout.js';
import { max as rawMax, sum as rawSum, sumToShape } from '../tensor/ops/reduce.js';
import { matmul as rawMatmul } from '../tensor/ops/matmul.js';
import { withPhase } from '../tensor/trace.js';
import { dropoutApply, dropoutMask, fuseDropout } from '../tensor/ops/random.js';
import { bceWithLogitsMean, fuseBce } from '../tensor/ops/fused.js';
import { record } from './tape.js';

const sameShape = (a: Shape, b: Shape) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Reduces a broadcast gradient back to an input's shape (identity view when shapes match). */
function unbroadcast(g: Tensor, shape: Shape): Tensor {
  return sameShape(g.shape, shape) ? g.reshape(shape) : sumToShape(g, shape);
}

/** unbroadcast() of a temporary the rule computed; the temporary is freed unless the result views it. */
function unbroadcastOwned(t: Tensor, shape: Shape): Tensor {
  const r = unbroadcast(t, shape);
  if (r.storage !== t.storage) t.dispose();
  return r;
}

// ---------------------------------------------------------------------------------------------
// Elementwise

export function add(a: Tensor, b: Tensor): Tensor {
  return record('add', binary('add', a, b), [a, b], (g) => [unbroadcast(g, a.shape), unbroadcast(g, b.shape)]);
}

export function sub(a: Tensor, b: Tensor): Tensor {
  return record('sub', binary('sub', a, b), [a, b], (g) => [
    unbroadcast(g, a.shape),
    b.requiresGrad ? unbroadcastOwned(unary('neg', g), b.shape) : null,
  ]);
}

export function mul(a: Tensor, b: Tensor): Tensor {
  return record('mul', binary('mul', a, b), [a, b], (g) => [
    a.requiresGrad ? unbroadcastOwned(binary('mul', g, b), a.shape) : null,
    b.requiresGrad ? unbroadcastOwned(binary('mul', g, a), b.shape) : null,
  ]);
}

export function div(a: Tensor, b: Tensor): Tensor {
  return record('div', binary('div', a, b), [a, b], (g) => [
    a.requiresGrad ? unbroadcastOwned(binary('div', g, b), a.shape) : null,
    b.requiresGrad ? unbroadcastOwned(mapExpr('div_grad_b', '-x0 * x1 / (x2 * x2)', [g, a, b]), b.shape) : null,
  ]);
}

export function neg(x: Tensor): Tensor {
  return record('neg', unary('neg', x), [x], (g) => [unary('neg', g)]);
}

/** x * alpha + beta with scalar alpha, beta. */
export function affine(x: Tensor, alpha: number, beta = 0): Tensor {
  return record('affine', unary('affine', x, alpha, beta), [x], (g) => [unary('affine', g, alpha, 0)]);
}
export const scale = (x: Tensor, s: number) => affine(x, s, 0);

export function exp(x: Tensor): Tensor {
  const y = unary('exp', x);
  return record('exp', y, [x], (g) => [binary('mul', g, y)]);
}

export function log(x: Tensor): Tensor {
  return record('log', unary('log', x), [x], (g) => [binary('div', g, x)]);
}

export function sqrt(x: Tensor): Tensor {
  const y = unary('sqrt', x);
  return record('sqrt', y, [x], (g) => [mapExpr('sqrt_grad', 'x0 * 0.5 / x1', [g, y])]);
}

export function square(x: Tensor): Tensor {
  return record('square', unary('square', x), [x], (g) => [mapExpr('square_grad', '2.0 * x0 * x1', [g, x])]);
}

export function relu(x: Tensor): Tensor {
  return record('relu', unary('relu', x), [x], (g) => [reluGrad(g, x)]);
}

/** ReLU's backward: g where `v` > 0, else 0; `v` is the ReLU's input or its output (both > 0 at the same places). */
export function reluGrad(g: Tensor, v: Tensor): Tensor {
  return mapExpr('relu_grad', 'select(0.0, x0, x1 > 0.0)', [g, v]);
}

export function leakyRelu(x: Tensor, slope = 0.01): Tensor {
  return record('leaky_relu', unary('leakyRelu', x, slope), [x], (g) => [
    mapExpr('leaky_relu_grad', 'select(p.alpha * x0, x0, x1 > 0.0)', [g, x], slope),
  ]);
}

export function sigmoid(x: Tensor): Tensor {
  const y = unary('sigmoid', x);
  return record('sigmoid', y, [x], (g) => [mapExpr('sigmoid_grad', 'x0 * x1 * (1.0 - x1)', [g, y])]);
}

export function tanh(x: Tensor): Tensor {
  const y = unary('tanh', x);
  return record('tanh', y, [x], (g) => [mapExpr('tanh_grad', 'x0 * (1.0 - x1 * x1)', [g, y])]);
}

/** where(cond, a, b); cond is not differentiated. */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  const out = ternary('where', cond, a, b);
  return record('where', out, [a, b], (g) => {
    const zero = fill([], 0);
    const ga = a.requiresGrad ? unbroadcastOwned(ternary('where', cond, g, zero), a.shape) : null;
    const gb = b.requiresGrad ? unbroadcastOwned(ternary('where', cond, zero, g), b.shape) : null;
    zero.dispose();
    return [ga, gb];
  });
}

// ---------------------------------------------------------------------------------------------
// Shape and layout

export function reshape(x: Tensor, shape: Shape): Tensor {
  return record('reshape', x.reshape(shape), [x], (g) => [g.reshape(x.shape)]);
}

/** Flattens dims from `start` on (torch.flatten(x, 1) by default). */
export function flatten(x: Tensor, start = 1): Tensor {
  const s = normAxis(start, x.rank);
  return reshape(x, [...x.shape.slice(0, s), -1]);
}

export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const d = dims.map((a) => normAxis(a, x.rank));
  const inv = new Array<number>(d.length);
  d.forEach((a, i) => (inv[a] = i));
  return record('permute', rawPermute(x, d), [x], (g) => [rawPermute(g, inv)]);
}

export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  return permute(x, transposeDims(x.rank, a, b));
}

export function slice(x: Tensor, axis: number, start: number, end?: number, step = 1): Tensor {
  const a = normAxis(axis, x.rank);
  const len = x.shape[a];
  const s = Math.min(len, Math.max(0, start < 0 ? start + len : start));
  const out = rawSlice(x, a, start, end, step);
  return record('slice', out, [x], (g) => [scatterSlice(fill(x.shape, 0), g, a, s, step)]);
}

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  const a = normAxis(axis, xs[0].rank);
  return record('concat', rawConcat(xs, a), xs, (g) => rawSplit(g, xs.map((t) => t.shape[a]), a));
}

// ---------------------------------------------------------------------------------------------
// Reductions

function axesOf(x: Tensor, axes?: number | readonly number[]): number[] {
  if (axes === undefined) return x.shape.map((_, i) => i);
  return (typeof axes === 'number' ? [axes] : [...axes]).map((a) => normAxis(a, x.rank));
}
function keptShape(x: Tensor, ax: number[]): number[] {
  return x.shape.map((d, i) => (ax.includes(i) ? 1 : d));
}

export function sum(x: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  const ax = axesOf(x, axes);
  const out = rawSum(x, ax, keepdim);
  return record('sum', out, [x], (g) => [expand(g.reshape(keptShape(x, ax)), x.shape)]);
}

export function mean(x: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  const ax = axesOf(x, axes);
  const count = ax.reduce((n, a) => n * x.shape[a], 1);
  const s = rawSum(x, ax, keepdim);
  const out = unary('affine', s, 1 / Math.max(1, count), 0);
  s.dispose();
  return record('mean', out, [x], (g) => {
    const e = expand(g.reshape(keptShape(x, ax)), x.shape);
    const r = unary('affine', e, 1 / Math.max(1, count), 0);
    e.dispose();
    return [r];
  });
}

// ---------------------------------------------------------------------------------------------
// Linear algebra

/** a @ b for 2-D or batched 3-D operands. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  const out = rawMatmul(a, b);
  return record('matmul', out, [a, b], (g) => [
    a.requiresGrad ? unbroadcastOwned(rawMatmul(g, b, { transB: true }), a.shape) : null,
    b.requiresGrad ? unbroadcastOwned(rawMatmul(a, g, { transA: true }), b.shape) : null,
  ]);
}

/** x [N, in] @ weight [out, in]^T + bias [out], like torch.nn.functional.linear. */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null): Tensor {
  const y = rawMatmul(x, weight, { transB: true, bias: bias ?? undefined });
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return record('linear', y, inputs, (g) => [
    x.requiresGrad ? rawMatmul(g, weight) : null,
    weight.requiresGrad ? withPhase('weight-grad', () => rawMatmul(g, x, { transA: true })) : null,
    ...(bias ? [bias.requiresGrad ? withPhase('weight-grad', () => rawSum(g, [0], false)) : null] : []),
  ]);
}

// ---------------------------------------------------------------------------------------------
// Regularisation and losses

export interface DropoutOpts {
  seed: number;
  stream: number;
  offset?: number;
}

/** Inverted dropout; the identity when p = 0 or when not training. */
export function dropout(x: Tensor, p: number, training: boolean, rng: DropoutOpts): Tensor {
  if (!training || p === 0) return x;
  if (!fuseDropout(x.size)) return dropoutWith(x, dropoutMask(x.shape, p, rng));
  const { y, mask } = dropoutApply(x, p, rng);
  return recordDropout(y, x, mask);
}

/** x * mask with mask's gradient rule (a compacted dropout gathers its mask from a full-size draw); takes ownership of mask. */
export function dropoutWith(x: Tensor, mask: Tensor): Tensor {
  return recordDropout(binary('mul', x, mask), x, mask);
}

function recordDropout(y: Tensor, x: Tensor, mask: Tensor): Tensor {
  return record('dropout', y, [x], (g) => [binary('mul', g, mask)], [keep(mask)]);
}

/**
 * Mean binary cross-entropy on logits (torch.nn.functional.binary_cross_entropy_with_logits), in the
 * stable form max(x,0) - x*y + log(1 + exp(-|x|)). Targets are 0/1 floats of the logits' shape.
 */
function bceWithLogitsUnfused(logits: Tensor, t: Tensor): Tensor {
  const per = mapExpr('bce_logits', 'max(x0, 0.0) - x0 * x1 + log(1.0 + exp(-abs(x0)))', [logits, t]);
  const s = rawSum(per, undefined, false);
  per.dispose();
  const loss = unary('affine', s, 1 / logits.size, 0);
  s.dispose();
  return loss;
}

export function bceWithLogits(logits: Tensor, target: Tensor): Tensor {
  if (logits.size !== target.size) {
    throw new Error(`bce_with_logits: logits [${logits.shape.join(', ')}] and targets [${target.shape.join(', ')}] differ`);
  }
  const t = target.reshape(logits.shape);
  const n = logits.size;
  // One kernel for the loss and its mean where the planner says so (tensor/ops/fused.ts).
  const loss = fuseBce(n) ? bceWithLogitsMean(logits, t) : bceWithLogitsUnfused(logits, t);
  return record(
    'bce_with_logits',
    loss,
    [logits],
    (g) => [mapExpr('bce_logits_grad', '(select(exp(x0) / (1.0 + exp(x0)), 1.0 / (1.0 + exp(-x0)), x0 >= 0.0) - x1) * x2 * p.alpha', [logits, t, g], 1 / n)],
    [t],
  );
}

/** Mean cross-entropy of logits [N, C] against class indices [N] (float or int). */
export function crossEntropy(logits: Tensor, target: Tensor): Tensor {
  if (logits.rank !== 2 || target.size !== logits.shape[0]) {
    throw new Error(`cross_entropy: logits [${logits.shape.join(', ')}] need [N, C] with N = ${target.size} targets`);
  }
  const [n, c] = logits.shape;
  const m = rawMax(logits, [1], true);
  const shifted = binary('sub', logits, m);
  const e = unary('exp', shifted);
  const se = rawSum(e, [1], true);
  const softmax = binary('div', e, se);
  const classes = iota(c);
  const tf = target.dtype === 'f32' ? target : cast(target, 'f32');
  const tcol = tf.reshape([n, 1]);
  const onehot = binary('eq', classes, tcol);
  tcol.dispose();
  if (tf !== target) tf.dispose();
  // loss_n = log(sum exp(x - m)) - (x_t - m)
  const sel = binary('mul', shifted, onehot);
  const picked = rawSum(sel, [1], true);
  sel.dispose();
  const per = mapExpr('ce_row', 'log(x0) - x1', [se, picked]);
  const tot = rawSum(per, undefined, false);
  const loss = unary('affine', tot, 1 / n, 0);
  for (const t of [m, shifted, e, se, classes, picked, per, tot]) t.dispose();
  return record(
    'cross_entropy',
    loss,
    [logits],
    (g) => [mapExpr('ce_grad', '(x0 - x1) * x2 * p.alpha', [softmax, onehot, g], 1 / n)],
    [softmax, onehot],
  );
}

function iota(n: number): Tensor {
  // 0..n-1 as one row: compared against a column of targets it makes the one-hot matrix.
  return fromArray(Float32Array.from({ length: n }, (_, i) => i), [1, n]);
}

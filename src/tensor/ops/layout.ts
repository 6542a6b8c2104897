// Layout ops: every one is a strided gather (mapRaw with one strided input) or, for concat, a
// strided scatter. Outputs are always contiguous; reshape alone is a free view (Tensor.reshape).
import { scatterKernel, SCATTER_PARAM_WORDS, MAP_WG, MAX_RANK } from '../../shaders/elementwise.js';
import { gridFor } from '../../shaders/kernel.js';
import { Params } from '../params.js';
import { queue } from '../queue.js';
import { empty, type Shape, Tensor } from '../tensor.js';
import { broadcastStrides, contiguousStrides, mapRaw } from './map.js';

export function normAxis(axis: number, rank: number, what = 'axis'): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new Error(`${what} ${axis} is out of range for rank ${rank}`);
  return a;
}

/** A contiguous copy. */
export function clone(x: Tensor): Tensor {
  return mapRaw('copy', 'x0', [{ t: x }], x.shape, x.dtype);
}

export function permute(x: Tensor, dims: readonly number[]): Tensor {
  if (dims.length !== x.rank) throw new Error(`permute: ${dims.length} dims for a rank-${x.rank} tensor`);
  const d = dims.map((a) => normAxis(a, x.rank, 'permute dim'));
  if (new Set(d).size !== d.length) throw new Error(`permute: dims [${dims.join(', ')}] repeat`);
  const st = contiguousStrides(x.shape);
  return mapRaw('permute', 'x0', [{ t: x, strides: d.map((a) => st[a]) }], d.map((a) => x.shape[a]), x.dtype);
}

/** The permutation that swaps axes a and b of a rank-`rank` tensor. */
export function transposeDims(rank: number, a: number, b: number): number[] {
  const dims = Array.from({ length: rank }, (_, i) => i);
  const i = normAxis(a, rank);
  const j = normAxis(b, rank);
  [dims[i], dims[j]] = [dims[j], dims[i]];
  return dims;
}

export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  return permute(x, transposeDims(x.rank, a, b));
}

/** x[..., start:end:step, ...] along one axis (negative start/end count from the end, like Python). */
export function slice(x: Tensor, axis: number, start: number, end?: number, step = 1): Tensor {
  const a = normAxis(axis, x.rank);
  const len = x.shape[a];
  if (!Number.isInteger(step) || step < 1) throw new Error(`slice: step ${step} must be a positive integer`);
  const clampIdx = (v: number) => Math.min(len, Math.max(0, v < 0 ? v + len : v));
  const s = clampIdx(start);
  const e = clampIdx(end ?? len);
  const n = Math.max(0, Math.ceil((e - s) / step));
  const st = contiguousStrides(x.shape);
  const shape = [...x.shape];
  shape[a] = n;
  const strides = st.map((v, i) => (i === a ? v * step : v));
  return mapRaw('slice', 'x0', [{ t: x, strides, offset: s * st[a] }], shape, x.dtype);
}

/** Broadcasts x to `shape` (materialised). */
export function expand(x: Tensor, shape: Shape): Tensor {
  return mapRaw('expand', 'x0', [{ t: x, strides: broadcastStrides(x.shape, shape) }], shape, x.dtype);
}

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error('concat: no tensors');
  const rank = xs[0].rank;
  const a = normAxis(axis, rank);
  for (const t of xs) {
    if (t.rank !== rank || t.dtype !== xs[0].dtype || t.shape.some((d, i) => i !== a && d !== xs[0].shape[i])) {
      throw new Error(`concat: [${t.shape.join(', ')}] ${t.dtype} does not match [${xs[0].shape.join(', ')}] ${xs[0].dtype} off axis ${a}`);
    }
  }
  const shape = [...xs[0].shape];
  shape[a] = xs.reduce((s, t) => s + t.shape[a], 0);
  if (rank > MAX_RANK) throw new Error(`concat: rank ${rank} exceeds ${MAX_RANK}`);
  const out = empty(shape, xs[0].dtype);
  const ost = contiguousStrides(shape);
  const kernel = scatterKernel(xs[0].dtype);
  let at = 0;
  for (const t of xs) {
    if (t.size > 0) {
      const p = new Params(SCATTER_PARAM_WORDS).u(t.size).u(rank).u(at * ost[a]).u(0);
      p.uArr(t.shape, 8).uArr(ost, 8);
      queue.dispatch(kernel, [{ buffer: t.buf }, { buffer: out.buf }], p.view, gridFor(t.size, MAP_WG));
    }
    at += t.shape[a];
  }
  return out;
}

/** Splits along an axis into pieces of the given sizes. */
export function split(x: Tensor, sizes: readonly number[], axis: number): Tensor[] {
  const a = normAxis(axis, x.rank);
  if (sizes.reduce((s, v) => s + v, 0) !== x.shape[a]) {
    throw new Error(`split: sizes [${sizes.join(', ')}] do not add up to ${x.shape[a]}`);
  }
  let at = 0;
  return sizes.map((n) => {
    const t = slice(x, a, at, at + n);
    at += n;
    return t;
  });
}

/**
 * Writes `src` into the slice [start::step] of `into` along `axis`, in place; returns `into`.
 * The backward of slice (into = zeros) and slice assignment.
 */
export function scatterSlice(into: Tensor, src: Tensor, axis: number, start: number, step = 1): Tensor {
  const a = normAxis(axis, into.rank);
  const expect = into.shape.map((d, i) => (i === a ? src.shape[a] : d));
  if (src.rank !== into.rank || src.shape.some((d, i) => d !== expect[i]) || start + (src.shape[a] - 1) * step >= into.shape[a] + (src.shape[a] === 0 ? 1 : 0)) {
    throw new Error(`scatterSlice: [${src.shape.join(', ')}] does not fit [${into.shape.join(', ')}] at ${start}::${step} on axis ${a}`);
  }
  if (src.size === 0) return into;
  const ost = contiguousStrides(into.shape);
  const p = new Params(SCATTER_PARAM_WORDS).u(src.size).u(src.rank).u(start * ost[a]).u(0);
  p.uArr(src.shape, 8).uArr(ost.map((v, i) => (i === a ? v * step : v)), 8);
  queue.dispatch(scatterKernel(src.dtype), [{ buffer: src.buf }, { buffer: into.buf }], p.view, gridFor(src.size, MAP_WG));
  return into;
}

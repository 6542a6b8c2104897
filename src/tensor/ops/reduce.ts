// Launchers for the reduction family (src/shaders/reduce.ts): axis handling, canonicalisation to
// kept/reduced dims, strategy and chunk choice, multi-pass partials. No autograd here.
//
// Determinism: the strategy, the chunking and every summation order are pure functions of the
// shape and the policy (see reducePolicy: the planner's choice, by device kind unless tuned or forced with TICKETLAB_KERNELS=reduce:...), so the same
// input gives the same bits on the same device. No atomics anywhere.
//
// Semantics follow PyTorch: `axes` undefined reduces every dim; negative axes count from the end;
// keepdim keeps reduced dims as size 1. One difference: an explicit empty list `[]` reduces nothing
// (NumPy's axis=()), where PyTorch's legacy dim=[] reduces everything.
// Empty reductions: sum -> 0, mean -> NaN, max/min/argmax/argmin -> error (as PyTorch).
import {
  REDUCE_MAX_DIMS,
  REDUCE_PARAM_WORDS,
  REDUCE_THREAD_WG,
  REDUCE_WG,
  isArgOp,
  reduceKernel,
  type ReduceOp,
  type ReduceStrategy,
} from '../../shaders/reduce.js';
import { grid1d, gridFor, type Kernel } from '../../shaders/kernel.js';
import { cachedKernel, log2Class, plan as planKernel, registerCandidates, registerFamily } from '../plan.js';
import { fill } from './map.js';
import { Params } from '../params.js';
import { queue } from '../queue.js';
import { empty, numel, type DType, type Shape, Tensor } from '../tensor.js';

export type Axes = number | readonly number[] | undefined | null;

/** Sorted, de-duplicated, non-negative axes; throws on out-of-range or repeated axes. */
export function normalizeAxes(rank: number, axes: Axes): number[] {
  if (axes === undefined || axes === null) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof axes === 'number' ? [axes] : [...axes];
  const out = new Set<number>();
  for (const a of list) {
    // A rank-0 tensor accepts axis 0 / -1 like PyTorch.
    const r = Math.max(rank, 1);
    if (!Number.isInteger(a) || a < -r || a >= r) throw new Error(`axis ${a} is out of range for rank ${rank}`);
    const n = a < 0 ? a + r : a;
    if (out.has(n)) throw new Error(`axis ${a} appears twice in [${list.join(', ')}]`);
    out.add(n);
  }
  return [...out].filter((a) => a < rank).sort((x, y) => x - y);
}

/** The shape a reduction over `axes` produces. */
export function reducedShape(shape: Shape, axes: Axes, keepdim = false): number[] {
  const ax = new Set(normalizeAxes(shape.length, axes));
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (!ax.has(i)) out.push(d);
    else if (keepdim) out.push(1);
  });
  return out;
}

interface Canon {
  kShape: number[];
  kStride: number[];
  rShape: number[];
  rStride: number[];
  nOut: number;
  rTotal: number;
  /** The innermost non-trivial dim is reduced (contiguous reads along the reduced range). */
  innerReduced: boolean;
}

/**
 * Drops size-1 dims and merges runs of adjacent dims of the same kind. On a contiguous tensor,
 * adjacent dims left after dropping size-1 dims always merge (stride_d = stride_{d+1} * size_{d+1}).
 */
export function canonicalize(shape: Shape, reduce: ReadonlySet<number>): Canon {
  const st: number[] = new Array(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    st[d] = s;
    s *= shape[d];
  }
  const kShape: number[] = [];
  const kStride: number[] = [];
  const rShape: number[] = [];
  const rStride: number[] = [];
  let lastKind: 'k' | 'r' | null = null;
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const kind = reduce.has(d) ? 'r' : 'k';
    const [sh, sd] = kind === 'r' ? [rShape, rStride] : [kShape, kStride];
    if (lastKind === kind) {
      sh[sh.length - 1] *= shape[d];
      sd[sd.length - 1] = st[d];
    } else {
      sh.push(shape[d]);
      sd.push(st[d]);
    }
    lastKind = kind;
  }
  const innerReduced = lastKind === 'r';
  if (rShape.length === 0) {
    rShape.push(1);
    rStride.push(0);
  }
  return {
    kShape,
    kStride,
    rShape,
    rStride,
    nOut: numel(kShape),
    rTotal: numel(rShape),
    innerReduced,
  };
}

// Strategy constants (pure functions of the shape, so results are bit-reproducible).
/** 'group' when the inner dim is reduced and an output has at least this many elements. */
const GROUP_MIN_R = 128;
/** 'group' chunking: at least this many elements per workgroup, aim for this many workgroups. */
const GROUP_CHUNK_MIN = 8192;
const GROUP_TARGET = 1024;
/** 'thread' chunking: at most this many sequential elements per thread (accuracy), at least
 * THREAD_CHUNK_MIN when splitting only for parallelism, aiming for THREAD_TARGET threads. */
const THREAD_MAX_SEQ = 1024;
const THREAD_CHUNK_MIN = 256;
const THREAD_TARGET = 65536;

interface Plan {
  strategy: ReduceStrategy;
  chunks: number;
  chunkLen: number;
}

/**
 * Which strategies a device gets. 'group': workgroup trees where the reduced dims are innermost
 * (GPUs). 'thread': one thread per (output, chunk) everywhere: on lavapipe a workgroup barrier
 * costs more than the work it organises (measured 1.5x faster for a 4M-element sum, 2x for
 * batch-norm statistics, 10x for [4096, 1000] rows). Bits are reproducible per policy, so per device.
 */
export type ReducePolicy = 'group' | 'thread' | 'subgroup';

/** What the planner sees of a reduction (the shape class buckets sizes by powers of two). */
export interface ReduceGeom {
  nOut: number;
  rTotal: number;
  innerReduced: boolean;
}


registerFamily<ReduceGeom>({
  family: 'reduce',
  about: "reductions (sum, mean, max, min, argmax, argmin): 'group' falls back to 'thread' where the reduced dims are not innermost",
  shapeClass: (g) => `out2^${log2Class(g.nOut)} red2^${log2Class(g.rTotal)}${g.innerReduced ? ' inner' : ''}`,
  defaultRule: (_g, dev, cands) => cands.find((c) => c.variant === (dev.isSoftware ? 'thread' : 'group')) ?? cands[0],
  bench: (g) => {
    const x = fill([g.innerReduced ? g.nOut : g.rTotal, g.innerReduced ? g.rTotal : g.nOut], 1);
    return { run: () => sum(x, [g.innerReduced ? 1 : 0]).dispose(), dispose: () => x.dispose() };
  },
});
registerCandidates<ReduceGeom>('reduce', [
  { variant: 'thread', dtypes: ['f32', 'i32', 'u32'] },
  { variant: 'group', dtypes: ['f32', 'i32', 'u32'] },
  // Only where the adapter offers subgroups; falls back like 'group' (and to its combine for arg ops).
  { variant: 'subgroup', dtypes: ['f32', 'i32', 'u32'], suits: (_g, dev) => dev.subgroups, tags: ['subgroups'] },
]);

/** The planner's policy for a reduction of this canonical form. */
export function reducePolicy(g: ReduceGeom = { nOut: 1, rTotal: 1024, innerReduced: true }, dtype: DType = 'f32'): ReducePolicy {
  return planKernel('reduce', g, { dtype }).variant as ReducePolicy;
}

function plan(c: Canon, policy: ReducePolicy): Plan {
  const R = c.rTotal;
  const O = c.nOut;
  if (policy !== 'thread' && c.innerReduced && R >= GROUP_MIN_R) {
    let chunks = 1;
    if (O < GROUP_TARGET) chunks = Math.max(1, Math.min(Math.floor(R / GROUP_CHUNK_MIN), Math.ceil(GROUP_TARGET / O)));
    const chunkLen = Math.ceil(R / chunks);
    return { strategy: policy, chunks: Math.ceil(R / chunkLen), chunkLen };
  }
  let chunks = Math.max(1, Math.ceil(R / THREAD_MAX_SEQ));
  if (O * chunks < THREAD_TARGET) {
    chunks = Math.max(chunks, Math.min(Math.floor(R / THREAD_CHUNK_MIN), Math.ceil(THREAD_TARGET / O)));
  }
  const chunkLen = Math.max(1, Math.ceil(R / chunks));
  return { strategy: 'thread', chunks: Math.max(1, Math.ceil(R / chunkLen)), chunkLen };
}

/** Identity of an op as raw 32-bit pattern for bitcast<T>. */
function identityBits(op: ReduceOp, t: DType): number {
  const big = op === 'max' || op === 'argmax' ? 'lowest' : op === 'min' || op === 'argmin' ? 'highest' : 'zero';
  if (big === 'zero') return 0;
  if (t === 'f32') return big === 'lowest' ? 0xff800000 : 0x7f800000; // -inf / +inf
  if (t === 'i32') return big === 'lowest' ? 0x80000000 : 0x7fffffff;
  return big === 'lowest' ? 0 : 0xffffffff;
}

/** Mixed-radix digits of `step` over `shape` (outermost digit absorbs the rest). */
function stepDigits(step: number, shape: number[]): number[] {
  const out = new Array<number>(shape.length).fill(0);
  let rem = step;
  for (let d = shape.length - 1; d >= 1; d--) {
    out[d] = rem % shape[d];
    rem = Math.floor(rem / shape[d]);
  }
  out[0] = rem;
  return out;
}

function reduceKernelFor(
  op: ReduceOp,
  type: DType,
  strategy: ReduceStrategy,
  kRank: number,
  rRank: number,
  idxIn: boolean,
  valOut: boolean,
  div: boolean,
): Kernel {
  const key = `reduce|${op}|${type}|${strategy}|${kRank}|${rRank}|${idxIn}|${valOut}|${div}`;
  return cachedKernel(key, () => reduceKernel({ op, type, strategy, kRank, rRank, idxIn, valOut, div }));
}

interface RunOut {
  val: Tensor | null;
  idx: Tensor | null;
}

/**
 * Reduces `src` (canonical form `c`) into `outShape`. For arg ops, `srcIdx` carries the indices of
 * the values (later passes); the result is in `idx` (u32 bits; `argDType` picks the tensor dtype).
 */
function runCanon(
  op: ReduceOp,
  src: Tensor,
  srcIdx: Tensor | null,
  c: Canon,
  outShape: Shape,
  div: number | null,
  argDType: DType,
  policy: ReducePolicy,
): RunOut {
  const arg = isArgOp(op);
  if (c.kShape.length > REDUCE_MAX_DIMS || c.rShape.length > REDUCE_MAX_DIMS) {
    throw new Error(`reduce ${op}: input [${src.shape.join(', ')}] splits into more than ${REDUCE_MAX_DIMS} runs of kept/reduced dims`);
  }
  const pl = plan(c, policy);
  const single = pl.chunks === 1;
  const units = c.nOut * pl.chunks;
  // Partial results: [nOut, chunks] for 'group', [chunks, nOut] for 'thread' (unit order).
  // 'subgroup' is 'group' with another combine: same units, layout and grid.
  const perGroup = pl.strategy !== 'thread';
  const partShape = perGroup ? [c.nOut, pl.chunks] : [pl.chunks, c.nOut];
  const val = arg ? (single ? null : empty(partShape, src.dtype)) : empty(single ? outShape : partShape, src.dtype);
  const idx = arg ? empty(single ? outShape : partShape, single ? argDType : 'u32') : null;
  const kernel = reduceKernelFor(op, src.dtype, pl.strategy, c.kShape.length, c.rShape.length, srcIdx !== null, arg && !single, single && div !== null);
  const step = perGroup ? REDUCE_WG : 1;
  const p = new Params(REDUCE_PARAM_WORDS)
    .u(units)
    .u(c.nOut)
    .u(pl.chunks)
    .u(pl.chunkLen)
    .u(c.rTotal)
    .u(identityBits(op, src.dtype))
    .f(div ?? 1)
    .u(0);
  p.uArr(c.kShape, 4).uArr(c.kStride, 4).uArr(c.rShape, 4).uArr(c.rStride, 4).uArr(stepDigits(step, c.rShape), 4);
  const buffers = [{ buffer: src.buf }];
  if (srcIdx) buffers.push({ buffer: srcIdx.buf });
  if (val) buffers.push({ buffer: val.buf });
  if (idx) buffers.push({ buffer: idx.buf });
  const grid = perGroup ? grid1d(units) : gridFor(units, REDUCE_THREAD_WG);
  queue.dispatch(kernel, buffers, p.view, grid, () => ({ op: `reduce.${op}`, variant: pl.strategy, shape: `${c.nOut}x${c.rTotal}`, flops: c.nOut * c.rTotal }));
  if (single) return { val, idx };

  // Next pass: reduce the partials along their chunk dim.
  const next =
    perGroup
      ? canonicalize([c.nOut, pl.chunks], new Set([1]))
      : canonicalize([pl.chunks, c.nOut], new Set([0]));
  const r = runCanon(op, val!, arg ? idx : null, next, outShape, div, argDType, policy);
  val?.dispose();
  idx?.dispose();
  return r;
}

function reduce(op: ReduceOp, x: Tensor, axes: Axes, keepdim: boolean, mean = false, argDType: DType = 'i32'): Tensor {
  const ax = normalizeAxes(x.rank, axes);
  const outShape = reducedShape(x.shape, ax, keepdim);
  const arg = isArgOp(op);
  if (mean && x.dtype !== 'f32') throw new Error(`mean: needs an f32 tensor, got ${x.dtype}`);
  const outType: DType = arg ? argDType : x.dtype;
  const nOut = numel(outShape);
  if (nOut === 0) return empty(outShape, outType);
  const c = canonicalize(x.shape, new Set(ax));
  if (c.rTotal === 0 && op !== 'sum') {
    throw new Error(`${mean ? 'mean' : op}: cannot reduce an empty range (input [${x.shape.join(', ')}], axes [${ax.join(', ')}])`);
  }
  // The division happens in the final pass; mean of nothing is 0 / 0 = NaN, as PyTorch.
  const div = mean ? c.rTotal : null;
  const r = runCanon(op, x, null, c, outShape, div, argDType, reducePolicy({ nOut: c.nOut, rTotal: c.rTotal, innerReduced: c.innerReduced }, x.dtype));
  return (arg ? r.idx : r.val)!;
}

/** Sum over `axes` (all when omitted). Integer sums wrap like 32-bit integers. */
export function sum(x: Tensor, axes?: Axes, keepdim = false): Tensor {
  return reduce('sum', x, axes, keepdim);
}

/** Arithmetic mean over `axes` (f32 only). */
export function mean(x: Tensor, axes?: Axes, keepdim = false): Tensor {
  return reduce('sum', x, axes, keepdim, true);
}

/** Maximum over `axes`. NaN handling is whatever WGSL max() does on the device (unspecified). */
export function max(x: Tensor, axes?: Axes, keepdim = false): Tensor {
  return reduce('max', x, axes, keepdim);
}

/** Minimum over `axes`. */
export function min(x: Tensor, axes?: Axes, keepdim = false): Tensor {
  return reduce('min', x, axes, keepdim);
}

/**
 * Index of the maximum along `axis` (of the flattened tensor when omitted), first index on ties.
 * Returns an i32 tensor (u32 with dtype 'u32').
 */
export function argmax(x: Tensor, axis?: number | null, keepdim = false, dtype: 'i32' | 'u32' = 'i32'): Tensor {
  return argReduce('argmax', x, axis, keepdim, dtype);
}

/** Index of the minimum along `axis` (flattened when omitted), first index on ties. */
export function argmin(x: Tensor, axis?: number | null, keepdim = false, dtype: 'i32' | 'u32' = 'i32'): Tensor {
  return argReduce('argmin', x, axis, keepdim, dtype);
}

function argReduce(op: ReduceOp, x: Tensor, axis: number | null | undefined, keepdim: boolean, dtype: 'i32' | 'u32'): Tensor {
  // No axis: over the flattened tensor, as PyTorch's argmax(x) (keepdim keeps every dim as 1). The
  // reduced linear index in row-major order is the flat index.
  return reduce(op, x, axis ?? undefined, keepdim, false, dtype);
}

/**
 * Sums `x` down to `shape`, which must broadcast to x.shape: the reverse of broadcasting, as the
 * backward of a broadcasting op needs. Leading dims are summed away, dims where `shape` has 1 are
 * summed with keepdim. When nothing needs summing the result is a reshape view (shared storage).
 */
export function sumToShape(x: Tensor, shape: Shape): Tensor {
  const r = x.rank - shape.length;
  if (r < 0) throw new Error(`sumToShape: [${x.shape.join(', ')}] has fewer dims than [${shape.join(', ')}]`);
  const axes: number[] = [];
  for (let d = 0; d < x.rank; d++) {
    if (d < r) {
      axes.push(d);
      continue;
    }
    const want = shape[d - r];
    const have = x.shape[d];
    if (want === have) continue;
    if (want === 1) axes.push(d);
    else throw new Error(`sumToShape: [${shape.join(', ')}] does not broadcast to [${x.shape.join(', ')}]`);
  }
  if (axes.length === 0) return x.reshape(shape);
  const s = reduce('sum', x, axes, false);
  if (s.shape.length === shape.length && s.shape.every((v, i) => v === shape[i])) return s;
  const v = s.reshape(shape);
  s.dispose();
  return v;
}

// Launchers for the elementwise family (src/shaders/elementwise.ts): broadcasting, input modes,
// kernel caching. No autograd here: these are the raw ops autograd builds on.
import {
  BINARY,
  MAP_PARAM_WORDS,
  MAX_RANK,
  TERNARY,
  UNARY,
  mapKernel,
  mapVec4Kernel,
  type BinaryOp,
  type ElemType,
  type InputMode,
  type TernaryOp,
  type UnaryOp,
} from '../../shaders/elementwise.js';
import { gridFor, type Kernel } from '../../shaders/kernel.js';
import { MAP_WG } from '../../shaders/elementwise.js';
import { Params } from '../params.js';
import { queue } from '../queue.js';
import { cachedKernel, log2Class, plan as planKernel, registerCandidates, registerFamily } from '../plan.js';
import { empty, type DType, type Shape, Tensor } from '../tensor.js';

export function contiguousStrides(shape: Shape): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    st[d] = s;
    s *= shape[d];
  }
  return st;
}

/** NumPy broadcasting of several shapes; throws naming both shapes when they do not broadcast. */
export function broadcastShapes(...shapes: Shape[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const d = rank - s.length + i;
      const v = s[i];
      if (out[d] === 1) out[d] = v;
      else if (v !== 1 && v !== out[d]) {
        throw new Error(`shapes ${shapes.map((x) => `[${x.join(', ')}]`).join(' and ')} do not broadcast`);
      }
    }
  }
  return out;
}

/** Strides of `shape` viewed as broadcast to `out` (0 on broadcast dims). */
export function broadcastStrides(shape: Shape, out: Shape): number[] {
  const st = contiguousStrides(shape);
  const r = out.length - shape.length;
  return out.map((d, i) => (i < r ? 0 : shape[i - r] === 1 && d !== 1 ? 0 : st[i - r]));
}

/** Drops size-1 dims and merges dims that are contiguous in every operand: less index math per thread. */
function simplify(shape: number[], strides: number[][]): { shape: number[]; strides: number[][] } {
  const s: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = s.length - 1;
    if (last >= 0 && strides.every((x, k) => st[k][last] === x[d] * shape[d])) {
      s[last] *= shape[d];
      strides.forEach((x, k) => (st[k][last] = x[d]));
    } else {
      s.push(shape[d]);
      strides.forEach((x, k) => st[k].push(x[d]));
    }
  }
  return { shape: s, strides: st };
}

/**
 * Threads launched for an elementwise map (planner family 'map'): 'full' is one thread per element
 * (GPUs); 'capped:G' launches at most G workgroups whose threads loop over the rest (grid-stride):
 * on software adapters (lavapipe) each workgroup costs a scheduling round trip, so the static rule
 * takes 'capped:64' there. The results do not depend on the choice.
 */
const MAP_CAPS = [16, 64, 256] as const;
const ALL_TYPES = ['f32', 'i32', 'u32'];

registerFamily<{ n: number }>({
  family: 'map',
  about: 'elementwise maps, casts, fills and strided gathers: threads per element',
  shapeClass: (g) => `2^${log2Class(g.n)}`,
  defaultRule: (_g, dev, cands) => (dev.isSoftware ? cands.find((c) => c.id === 'capped:64') : cands.find((c) => c.id === 'full')) ?? cands[0],
  bench: (g) => {
    const x = fill([g.n], 1);
    return { run: () => unary('neg', x).dispose(), dispose: () => x.dispose() };
  },
});
registerCandidates<{ n: number }>('map', [
  { variant: 'full', dtypes: ALL_TYPES },
  ...MAP_CAPS.map((groups) => ({ variant: 'capped', tile: `${groups}`, params: { groups }, dtypes: ALL_TYPES })),
]);

/**
 * Elements per thread (planner family 'ew.vec'): 'scalar', or 'vec4' (mapVec4Kernel) for maps whose
 * inputs are all contiguous or single values and whose size is a multiple of 4; the static rule takes
 * vec4 on software adapters, scalar on GPUs. The results do not depend on the choice.
 */
interface VecGeom {
  n: number;
  /** No strided input. */
  flat: boolean;
}
registerFamily<VecGeom>({
  family: 'ew.vec',
  about: 'elementwise maps: one element or a vec4 per thread (contiguous inputs, n % 4 == 0)',
  shapeClass: (g) => `2^${log2Class(g.n)}${g.flat && g.n % 4 === 0 ? ' flat4' : ''}`,
  defaultRule: (_g, dev, cands) => cands.find((c) => c.variant === (dev.isSoftware ? 'vec4' : 'scalar')) ?? cands[0],
});
registerCandidates<VecGeom>('ew.vec', [
  { variant: 'scalar', dtypes: ALL_TYPES },
  { variant: 'vec4', dtypes: ALL_TYPES, suits: (g) => g.flat && g.n % 4 === 0 },
]);

function cachedMap(name: string, expr: string, modes: InputMode[], types: ElemType[], out: ElemType, vec4: boolean): Kernel {
  const key = `map|${name}|${modes.join(',')}|${types.join(',')}|${out}|${vec4 ? 'v4' : 's'}|${expr}`;
  const spec = { name, expr, inputs: modes.map((mode, i) => ({ mode, type: types[i] })), out };
  return cachedKernel(key, () => (vec4 ? mapVec4Kernel(spec) : mapKernel(spec)));
}

export interface MapInput {
  t: Tensor;
  /** Element strides over the output shape (0 = broadcast); contiguous-broadcast when omitted. */
  strides?: number[];
  /** Element offset of the first element (slices). */
  offset?: number;
}

/**
 * Runs `expr` elementwise over inputs viewed with the given strides, writing a new contiguous tensor
 * of `outShape`. The general entry point: broadcasting ops, gathers and casts all land here.
 */
export function mapRaw(
  name: string,
  expr: string,
  inputs: MapInput[],
  outShape: Shape,
  outType: DType,
  alpha = 0,
  beta = 0,
  into?: Tensor,
): Tensor {
  const out = into ?? empty(outShape, outType);
  const n = out.size;
  if (n === 0) return out;
  const full = inputs.map((x) => x.strides ?? broadcastStrides(x.t.shape, outShape));
  const simp = simplify([...outShape], full);
  if (simp.shape.length > MAX_RANK) throw new Error(`${name}: rank ${simp.shape.length} exceeds ${MAX_RANK}`);
  const modes: InputMode[] = inputs.map((x, k) => {
    const st = simp.strides[k];
    const off = x.offset ?? 0;
    if (st.every((v) => v === 0)) return 'scalar';
    const cs = contiguousStrides(simp.shape);
    if (off === 0 && st.every((v, i) => v === cs[i])) return 'same';
    return 'strided';
  });
  const vec4 = planKernel<VecGeom>('ew.vec', { n, flat: !modes.includes('strided') }, { dtype: outType }).variant === 'vec4';
  const kernel = cachedMap(name, expr, modes, inputs.map((x) => x.t.dtype), outType, vec4);
  const p = new Params(MAP_PARAM_WORDS).u(n).u(simp.shape.length).f(alpha).f(beta);
  p.uArr(inputs.map((x) => x.offset ?? 0), 4);
  p.uArr(simp.shape, 8);
  for (let k = 0; k < 3; k++) p.uArr(simp.strides[k] ?? [], 8);
  const pl = planKernel('map', { n }, { dtype: outType });
  const items = vec4 ? n / 4 : n;
  const threads = pl.variant === 'capped' ? Math.min(items, (pl.params.groups as number) * MAP_WG) : items;
  const tag = () => ({ op: `map.${name}`, variant: pl.id, shape: `${n}`, flops: n });
  queue.dispatch(kernel, [...inputs.map((x) => ({ buffer: x.t.buf })), { buffer: out.buf }], p.view, gridFor(threads, MAP_WG), tag);
  return out;
}

export function unary(op: UnaryOp, x: Tensor, alpha = 0, beta = 0): Tensor {
  return mapRaw(op, UNARY[op], [{ t: x }], x.shape, x.dtype === 'f32' ? 'f32' : x.dtype, alpha, beta);
}

const COMPARE = new Set<BinaryOp>(['eq', 'ne', 'lt', 'le', 'gt', 'ge']);

export function binary(op: BinaryOp, a: Tensor, b: Tensor, alpha = 0, beta = 0): Tensor {
  if (a.dtype !== b.dtype) throw new Error(`${op}: dtypes ${a.dtype} and ${b.dtype} differ`);
  const shape = broadcastShapes(a.shape, b.shape);
  const outType: DType = COMPARE.has(op) ? 'f32' : a.dtype;
  return mapRaw(op, BINARY[op], [{ t: a }, { t: b }], shape, outType, alpha, beta);
}

export function ternary(op: TernaryOp, a: Tensor, b: Tensor, c: Tensor, alpha = 0): Tensor {
  const shape = broadcastShapes(a.shape, b.shape, c.shape);
  return mapRaw(op, TERNARY[op], [{ t: a }, { t: b }, { t: c }], shape, b.dtype, alpha);
}

/** Custom elementwise expression (used by autograd backward rules and fused optimizer steps). */
export function mapExpr(name: string, expr: string, inputs: Tensor[], alpha = 0, beta = 0, outType: DType = 'f32'): Tensor {
  const shape = broadcastShapes(...inputs.map((t) => t.shape));
  return mapRaw(name, expr, inputs.map((t) => ({ t })), shape, outType, alpha, beta);
}

export function cast(x: Tensor, to: DType): Tensor {
  return mapRaw(`cast_${to}`, `${to}(x0)`, [{ t: x }], x.shape, to);
}

/** Fills a tensor with a constant. */
export function fill(shape: Shape, value: number, dtype: DType = 'f32'): Tensor {
  const out = empty(shape, dtype);
  if (out.size === 0) return out;
  // A map with no inputs: the constant travels as alpha (exact for integers up to 2^24).
  return mapRaw(`fill_${dtype}`, 'p.alpha', [], shape, dtype, value, 0, out);
}

// Reduction family: sum / max / min / argmax / argmin over any set of axes, deterministic.
//
// The host (src/tensor/ops/reduce.ts) canonicalises every reduction to
//   output index o  -> base offset  = sum_d digit_d(o) * kStride_d   over <= 4 kept dims,
//   reduced index r -> extra offset = sum_d digit_d(r) * rStride_d   over <= 4 reduced dims,
// after dropping size-1 dims and merging adjacent dims of the same kind (kept/reduced), so
// [N, C, H, W] reduced over (0, 2, 3) becomes kept [C] and reduced [N, H*W] with no transpose.
// A "unit" is one (output, chunk) pair: the reduced range of an output may be cut into `chunks`
// contiguous pieces of `chunkLen` (in reduced linear order); the launcher then reduces the partials
// with a second (and rarely third) pass of this same family.
//
// Determinism: every unit walks its range in a fixed order and combines partials in a fixed order;
// the strategy and chunking are pure functions of the shape. No atomics. Same input -> same bits.
//
// Two strategies (the launcher's policy picks: GPUs use both, software devices only 'thread'):
//  'group'  one 256-thread workgroup per unit. Thread t accumulates elements t, t+256, ... of the
//           unit's range in registers, then the workgroup combines the 256 partials in two fixed
//           stages (16 threads x 16 values, then 1 thread x 16 values): only 2 barriers, because
//           barriers are the expensive part on lavapipe and the combine is negligible on a GPU.
//           Fast on GPUs when the reduced dims include the innermost (contiguous) one and there are
//           >= 128 elements per output: rows of softmax/log-sum-exp, sum-to-scalar (with chunks),
//           batch-norm statistics ([N, C, HW] over N and HW: the HW runs are read coalesced).
//           Slow on lavapipe (barriers; 0.2 GB/s on [4096, 1000] rows vs 2.2 GB/s for 'thread').
//  'thread' one thread per unit, walking its range sequentially. Fast on GPUs when the innermost
//           dim is kept (adjacent threads read adjacent addresses: column sums such as [R, inner]
//           over R, bias gradients, sumToShape) or when each output reduces only a few elements;
//           fast everywhere on lavapipe (1-2.5 GB/s per core). Long ranges are chunked (<= 1024
//           elements per thread) both for parallelism and for accuracy, with further passes over
//           the partials.
//  'subgroup' (GPUs offering the `subgroups` feature; a candidate the tuner times) 'group' with the
//           combine done by subgroupAdd/Max/Min: each subgroup reduces its lanes in hardware, lane 0
//           stores one partial per subgroup, one barrier, thread 0 folds the WG/subgroupSize partials
//           in index order. Assumes subgroups are contiguous runs of local_invocation_index (true of
//           1-D workgroups on the drivers we know; the tests check it on every adapter they run).
//           Arg ops keep the 'group' combine (no subgroup arg-reduction in WGSL).
// Reduced-index digits advance by a mixed-radix increment with carries (no integer division in the
// loop: vector integer division is scalarised and slow on lavapipe, and costly on GPUs too).
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';
import type { ElemType } from './elementwise.js';

export const REDUCE_WG = 256;
export const REDUCE_THREAD_WG = 64;
/** Max kept dims and max reduced dims after canonicalisation. */
export const REDUCE_MAX_DIMS = 4;

export type ReduceOp = 'sum' | 'max' | 'min' | 'argmax' | 'argmin';
export type ReduceStrategy = 'group' | 'thread' | 'subgroup';

export interface ReduceSpec {
  op: ReduceOp;
  /** Element type of the values. */
  type: ElemType;
  strategy: ReduceStrategy;
  /** Kept dims (0..4) and reduced dims (1..4) of the canonical form. */
  kRank: number;
  rRank: number;
  /** arg ops: the index of an element comes from a second input (a later pass over partials). */
  idxIn: boolean;
  /** arg ops: also write the winning values (a partial pass) besides the indices. */
  valOut: boolean;
  /** Divide the final value by p.div (mean). */
  div: boolean;
}

/**
 * Uniform words: units, nOut, chunks, chunkLen, rTotal, ident (identity bits), div (f32), pad,
 * then vec4s kShape, kStride, rShape, rStride, step (mixed-radix digits of the per-thread step).
 */
export const REDUCE_PARAM_WORDS = 8 + 5 * 4;

export function isArgOp(op: ReduceOp): boolean {
  return op === 'argmax' || op === 'argmin';
}

function combineWgsl(op: ReduceOp, t: ElemType): string {
  switch (op) {
    case 'sum':
      return `fn comb(a: ${t}, b: ${t}) -> ${t} { return a + b; }`;
    case 'max':
      return `fn comb(a: ${t}, b: ${t}) -> ${t} { return max(a, b); }`;
    case 'min':
      return `fn comb(a: ${t}, b: ${t}) -> ${t} { return min(a, b); }`;
    case 'argmax':
    case 'argmin': {
      const better = op === 'argmax' ? 'w > v' : 'w < v';
      // The smaller index wins ties, whatever order partials meet in: first index, as PyTorch.
      return `fn better(v: ${t}, i: u32, w: ${t}, j: u32) -> bool { return (${better}) || (w == v && j < i); }`;
    }
  }
}

export function reduceKernel(s: ReduceSpec): Kernel {
  const T = s.type;
  const arg = isArgOp(s.op);
  const group = s.strategy !== 'thread';
  const sub = s.strategy === 'subgroup' && !arg;
  const WG = group ? REDUCE_WG : REDUCE_THREAD_WG;
  const name = `reduce_${s.op}_${T}_${sub ? 'subgroup' : group ? 'group' : 'thread'}_k${s.kRank}_r${s.rRank}${s.idxIn ? '_ii' : ''}${s.valOut ? '_vo' : ''}${s.div ? '_div' : ''}`;
  const bindings: Kernel['bindings'][number][] = ['read'];
  const decl: string[] = [`@group(0) @binding(0) var<storage, read> src: array<${T}>;`];
  if (s.idxIn) {
    decl.push(`@group(0) @binding(${bindings.length}) var<storage, read> srcIdx: array<u32>;`);
    bindings.push('read');
  }
  if (!arg) {
    decl.push(`@group(0) @binding(${bindings.length}) var<storage, read_write> out: array<${T}>;`);
    bindings.push('write');
  } else {
    if (s.valOut) {
      decl.push(`@group(0) @binding(${bindings.length}) var<storage, read_write> outVal: array<${T}>;`);
      bindings.push('write');
    }
    decl.push(`@group(0) @binding(${bindings.length}) var<storage, read_write> outIdx: array<u32>;`);
    bindings.push('write');
  }
  decl.push(`@group(0) @binding(${bindings.length}) var<uniform> p: P;`);
  bindings.push('uniform');

  // Output index -> base offset (kept dims, innermost last).
  const base: string[] = ['  var base = 0u;'];
  if (s.kRank > 0) {
    base.push('  var rem = o;');
    for (let d = s.kRank - 1; d >= 0; d--) {
      base.push(`  base += (rem % p.kShape[${d}]) * p.kStride[${d}];`);
      if (d > 0) base.push(`  rem = rem / p.kShape[${d}];`);
    }
  }

  // Reduced linear index r -> digits c0..c(n-1) (c0 outermost) and offset.
  const n = s.rRank;
  const digits: string[] = [];
  if (n > 1) {
    digits.push('  var rr = r0;');
    for (let d = n - 1; d >= 0; d--) {
      digits.push(`  var c${d} = ${d > 0 ? `rr % p.rShape[${d}]` : 'rr'};`);
      if (d > 0) digits.push(`  rr = rr / p.rShape[${d}];`);
    }
  }
  const offExpr =
    n === 1 ? 'base + r * p.rStride[0]' : `base + ${Array.from({ length: n }, (_, d) => `c${d} * p.rStride[${d}]`).join(' + ')}`;
  const advance: string[] = [];
  if (n > 1) {
    advance.push(`    c${n - 1} += p.step[${n - 1}];`);
    advance.push('    var cy = 0u;');
    for (let d = n - 1; d >= 1; d--) {
      if (d < n - 1) advance.push(`    c${d} += p.step[${d}] + cy;`);
      advance.push(`    cy = select(0u, 1u, c${d} >= p.rShape[${d}]);`);
      advance.push(`    c${d} -= cy * p.rShape[${d}];`);
    }
    advance.push(`    c0 += p.step[0] + cy;`);
  }
  const stepExpr = group ? `${WG}u` : '1u';
  const idxOf = s.idxIn ? 'srcIdx[off]' : 'r';

  const accInit = arg ? `  var acc = bitcast<${T}>(p.ident);\n  var accI = 0xffffffffu;` : `  var acc = bitcast<${T}>(p.ident);`;
  const accStep = arg
    ? `    let v = src[off];
    let j = ${idxOf};
    if (better(acc, accI, v, j)) { acc = v; accI = j; }`
    : `    acc = comb(acc, src[off]);`;

  const loop = `  let r0 = rStart${group ? ' + lid' : ''};
${digits.join('\n')}
  for (var r = r0; r < rEnd; r += ${stepExpr}) {
    let off = ${offExpr};
${accStep}
${advance.join('\n')}
  }`;

  const finalVal = s.div ? 'acc / p.div' : 'acc';
  const write = arg
    ? `${s.valOut ? '    outVal[u] = acc;\n' : ''}    outIdx[u] = accI;`
    : `    out[u] = ${finalVal};`;

  // Both layouts, once a thread knows its output o and chunk ch: the unit's bases, its range of the
  // reduction, and the walk over it.
  const unitWalk = `${base.join('\n')}
  let rStart = ch * p.chunkLen;
  let rEnd = min(rStart + p.chunkLen, p.rTotal);
${accInit}
${loop}`;
  // A workgroup per unit ('group', 'subgroup'): its threads walk the unit's range with stride WG.
  // The early exit is uniform per workgroup, so barriers and subgroup ops after it stay in uniform
  // control flow.
  const groupPrologue = `  let u = wid.x + wid.y * nwg.x;
  if (u >= p.units) { return; }
  let o = u / p.chunks;
  let ch = u % p.chunks;
${unitWalk}`;
  let body: string;
  if (sub) {
    const sgOp = s.op === 'sum' ? 'subgroupAdd' : s.op === 'max' ? 'subgroupMax' : 'subgroupMin';
    body = `var<workgroup> shV: array<${T}, ${WG}>;

@compute @workgroup_size(${WG})
fn main(${GRID_BUILTINS_WGSL}, @builtin(subgroup_invocation_id) sgl: u32, @builtin(subgroup_size) sgs: u32) {
${groupPrologue}
  let sv = ${sgOp}(acc);
  if (sgl == 0u) { shV[lid / sgs] = sv; }
  workgroupBarrier();
  if (lid == 0u) {
    var a = shV[0];
    for (var q = 1u; q < ${WG}u / sgs; q++) { a = comb(a, shV[q]); }
    acc = a;
${write}
  }
}
`;
  } else if (group) {
    // Two-stage fixed-order combine: S = sqrt(WG) threads fold S interleaved values each, then
    // thread 0 folds those S. Interleaved reads (t, t+S, ...) avoid bank conflicts on GPUs.
    const S = Math.round(Math.sqrt(WG));
    if (S * S !== WG) throw new Error(`reduce: workgroup size ${WG} must be a square`);
    const sh = arg
      ? `var<workgroup> shV: array<${T}, ${WG}>;\nvar<workgroup> shI: array<u32, ${WG}>;`
      : `var<workgroup> shV: array<${T}, ${WG}>;`;
    const fold = (dst: string, srcIdx: string, count: number, stride: number) =>
      arg
        ? `    var a = shV[${srcIdx}];
    var ai = shI[${srcIdx}];
    for (var q = 1u; q < ${count}u; q++) {
      let w = shV[${srcIdx} + q * ${stride}u];
      let wi = shI[${srcIdx} + q * ${stride}u];
      if (better(a, ai, w, wi)) { a = w; ai = wi; }
    }
    shV[${dst}] = a;
    shI[${dst}] = ai;`
        : `    var a = shV[${srcIdx}];
    for (var q = 1u; q < ${count}u; q++) { a = comb(a, shV[${srcIdx} + q * ${stride}u]); }
    shV[${dst}] = a;`;
    body = `${sh}

@compute @workgroup_size(${WG})
fn main(${GRID_BUILTINS_WGSL}) {
${groupPrologue}
  shV[lid] = acc;
${arg ? '  shI[lid] = accI;' : ''}
  workgroupBarrier();
  if (lid < ${S}u) {
${fold('lid', 'lid', S, S)}
  }
  workgroupBarrier();
  if (lid == 0u) {
${fold('0u', '0u', S, 1)}
    acc = shV[0];
${arg ? '    accI = shI[0];' : ''}
${write}
  }
}
`;
  } else {
    body = `@compute @workgroup_size(${WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let u = ${linearIndexWgsl(WG)};
  if (u >= p.units) { return; }
  // Chunk-major units: adjacent threads take adjacent outputs (coalesced when the inner dim is kept).
  let ch = u / p.nOut;
  let o = u % p.nOut;
${unitWalk}
  {
${write}
  }
}
`;
  }

  const code = `${sub ? 'enable subgroups;\n' : ''}// ${name}
struct P {
  units: u32, nOut: u32, chunks: u32, chunkLen: u32,
  rTotal: u32, ident: u32, div: f32, _pad: u32,
  kShape: vec4<u32>, kStride: vec4<u32>,
  rShape: vec4<u32>, rStride: vec4<u32>,
  step: vec4<u32>,
}
${decl.join('\n')}
${combineWgsl(s.op, T)}
${body}`;
  return { name, code, bindings };
}

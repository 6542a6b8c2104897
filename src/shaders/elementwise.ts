// Elementwise family: one generator for unary, binary and ternary maps with NumPy/PyTorch broadcasting,
// plus strided gathers (permute, slice, expand) which are maps of one strided input.
//
// Tiling: 256 threads per workgroup, 1-D grid folded over x/y (grid1d), a grid-stride loop over the
// elements: one element per thread on GPUs; on software adapters the host caps the grid (each
// workgroup costs a scheduling round trip there) and threads loop.
// Each input is addressed in one of three modes chosen on the host, so the common cases pay no index
// math: 'same' (input index = output index), 'scalar' (always element `off`), 'strided' (output index
// decomposed over the output shape, dotted with the input's strides; broadcast dims have stride 0).
// Memory-bound; fast for any size above a few thousand elements. Max rank 8.
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';

export const MAP_WG = 256;
export const MAX_RANK = 8;
export type InputMode = 'same' | 'scalar' | 'strided';
export type ElemType = 'f32' | 'i32' | 'u32';

export interface MapSpec {
  /** WGSL expression over x0, x1, x2 (the inputs' values) and p.alpha, p.beta (f32 scalars). */
  expr: string;
  inputs: readonly { mode: InputMode; type: ElemType }[];
  out: ElemType;
  /** Name for errors/profiles. */
  name: string;
}

/** Uniform words of the map struct: n, rank, alpha, beta, off(4), shape(8), st0..st2 (8 each). */
export const MAP_PARAM_WORDS = 4 + 4 + 8 + 3 * 8;

const MAP_STRUCT = `struct P {
  n: u32, rank: u32, alpha: f32, beta: f32,
  off: vec4<u32>,
  shape: array<vec4<u32>, 2>,
  st0: array<vec4<u32>, 2>,
  st1: array<vec4<u32>, 2>,
  st2: array<vec4<u32>, 2>,
}`;

export function mapKernel(s: MapSpec): Kernel {
  const k = s.inputs.length;
  const decl = s.inputs
    .map((inp, i) => `@group(0) @binding(${i}) var<storage, read> in${i}: array<${inp.type}>;`)
    .join('\n');
  const strided = s.inputs.some((i) => i.mode === 'strided');
  const idx: string[] = [];
  s.inputs.forEach((inp, i) => {
    if (inp.mode === 'same') idx.push(`  let o${i} = i;`);
    else if (inp.mode === 'scalar') idx.push(`  let o${i} = p.off[${i}];`);
    else idx.push(`  var o${i} = p.off[${i}];`);
  });
  const loopBody = s.inputs
    .map((inp, i) => (inp.mode === 'strided' ? `    o${i} += c * p.st${i}[dd / 4u][dd % 4u];` : ''))
    .filter(Boolean)
    .join('\n');
  const loop = strided
    ? `  var rem = i;
  for (var d = p.rank; d > 0u; d--) {
    let dd = d - 1u;
    let sz = p.shape[dd / 4u][dd % 4u];
    let c = rem % sz;
    rem = rem / sz;
${loopBody}
  }`
    : '';
  const loads = s.inputs.map((_, i) => `  let x${i} = in${i}[o${i}];`).join('\n');
  const code = `// ${s.name}
${MAP_STRUCT}
${decl}
@group(0) @binding(${k}) var<storage, read_write> out: array<${s.out}>;
@group(0) @binding(${k + 1}) var<uniform> p: P;

@compute @workgroup_size(${MAP_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  // Grid-stride loop: the host may launch fewer threads than elements (software adapters pay per
  // workgroup), each thread then handles every stride-th element.
  let stride = nwg.x * nwg.y * ${MAP_WG}u;
  for (var i = ${linearIndexWgsl(MAP_WG)}; i < p.n; i += stride) {
${[...idx, loop, loads].join('\n').split('\n').map((l) => (l ? '  ' + l : l)).join('\n')}
    out[i] = ${s.out}(${s.expr});
  }
}
`;
  return { name: s.name, code, bindings: [...s.inputs.map(() => 'read' as const), 'write', 'uniform'] };
}

/**
 * The same map four elements per thread, for software adapters (a per-thread vec4 load costs little
 * more than a scalar one there, docs/lavapipe-speed.md): every input 'same' or 'scalar', n % 4 == 0.
 * 'same' inputs and the output are read and written as vec4s; the expression runs once per component
 * on scalars named x0..x2 as in mapKernel, so the results are those of mapKernel. p.n counts
 * elements; thread q handles elements 4q .. 4q + 3 (grid-stride over quads).
 */
export function mapVec4Kernel(s: MapSpec): Kernel {
  if (s.inputs.some((i) => i.mode === 'strided')) throw new Error(`${s.name}: the vec4 map takes no strided inputs`);
  const k = s.inputs.length;
  const decl = s.inputs
    .map((inp, i) => `@group(0) @binding(${i}) var<storage, read> in${i}: array<${inp.mode === 'same' ? `vec4<${inp.type}>` : inp.type}>;`)
    .join('\n');
  const scalars = s.inputs.map((inp, i) => (inp.mode === 'scalar' ? `  let x${i} = in${i}[p.off[${i}]];` : '')).filter(Boolean);
  const loads = s.inputs.map((inp, i) => (inp.mode === 'same' ? `    let v${i} = in${i}[q];` : '')).filter(Boolean);
  const lane = (c: number) =>
    `    {\n${s.inputs.map((inp, i) => (inp.mode === 'same' ? `      let x${i} = v${i}[${c}];\n` : '')).join('')}      r[${c}] = ${s.out}(${s.expr});\n    }`;
  const code = `// ${s.name}_vec4
${MAP_STRUCT}
${decl}
@group(0) @binding(${k}) var<storage, read_write> out: array<vec4<${s.out}>>;
@group(0) @binding(${k + 1}) var<uniform> p: P;

@compute @workgroup_size(${MAP_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let stride = nwg.x * nwg.y * ${MAP_WG}u;
  let quads = p.n / 4u;
${scalars.join('\n')}
  for (var q = ${linearIndexWgsl(MAP_WG)}; q < quads; q += stride) {
${loads.join('\n')}
    var r: vec4<${s.out}>;
${[0, 1, 2, 3].map(lane).join('\n')}
    out[q] = r;
  }
}
`;
  return { name: `${s.name}_vec4`, code, bindings: [...s.inputs.map(() => 'read' as const), 'write', 'uniform'] };
}

/**
 * Scatter: writes a contiguous input into a strided window of the output (used by concat and by
 * slice-assignment). out[off + sum_d c_d * st_d] = in[i]. Same tiling as mapKernel.
 */
export function scatterKernel(type: ElemType): Kernel {
  const code = `// scatter_${type}
struct P {
  n: u32, rank: u32, off: u32, _pad: u32,
  shape: array<vec4<u32>, 2>,
  st: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<storage, read> src: array<${type}>;
@group(0) @binding(1) var<storage, read_write> out: array<${type}>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(${MAP_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(MAP_WG)};
  if (i >= p.n) { return; }
  var rem = i;
  var o = p.off;
  for (var d = p.rank; d > 0u; d--) {
    let dd = d - 1u;
    let sz = p.shape[dd / 4u][dd % 4u];
    let c = rem % sz;
    rem = rem / sz;
    o += c * p.st[dd / 4u][dd % 4u];
  }
  out[o] = src[i];
}
`;
  return { name: `scatter_${type}`, code, bindings: ['read', 'write', 'uniform'] };
}
export const SCATTER_PARAM_WORDS = 4 + 8 + 8;

/** WGSL expressions of the unary ops (x0 = input, p.alpha/p.beta = scalar arguments). */
export const UNARY = {
  neg: '-x0',
  abs: 'abs(x0)',
  exp: 'exp(x0)',
  log: 'log(x0)',
  sqrt: 'sqrt(x0)',
  rsqrt: 'inverseSqrt(x0)',
  square: 'x0 * x0',
  reciprocal: '1.0 / x0',
  relu: 'max(x0, 0.0)',
  // Both branches are finite where selected; select() evaluates both, the other may be inf (harmless).
  sigmoid: 'select(exp(x0) / (1.0 + exp(x0)), 1.0 / (1.0 + exp(-x0)), x0 >= 0.0)',
  // Clamped because some drivers compute tanh through exp and return NaN for large |x|.
  tanh: 'tanh(clamp(x0, -15.0, 15.0))',
  sign: 'sign(x0)',
  floor: 'floor(x0)',
  ceil: 'ceil(x0)',
  round: 'round(x0)',
  sin: 'sin(x0)',
  cos: 'cos(x0)',
  leakyRelu: 'select(p.alpha * x0, x0, x0 > 0.0)',
  affine: 'x0 * p.alpha + p.beta',
  powScalar: 'pow(x0, p.alpha)',
  clamp: 'clamp(x0, p.alpha, p.beta)',
  step: 'select(0.0, 1.0, x0 > 0.0)',
  copy: 'x0',
} as const;
export type UnaryOp = keyof typeof UNARY;

/** WGSL expressions of the binary ops; comparisons give 1.0 / 0.0. */
export const BINARY = {
  add: 'x0 + x1',
  sub: 'x0 - x1',
  mul: 'x0 * x1',
  div: 'x0 / x1',
  pow: 'pow(x0, x1)',
  maximum: 'max(x0, x1)',
  minimum: 'min(x0, x1)',
  eq: 'select(0.0, 1.0, x0 == x1)',
  ne: 'select(0.0, 1.0, x0 != x1)',
  lt: 'select(0.0, 1.0, x0 < x1)',
  le: 'select(0.0, 1.0, x0 <= x1)',
  gt: 'select(0.0, 1.0, x0 > x1)',
  ge: 'select(0.0, 1.0, x0 >= x1)',
  /** a * alpha + b * beta (axpby). */
  axpby: 'x0 * p.alpha + x1 * p.beta',
} as const;
export type BinaryOp = keyof typeof BINARY;

export const TERNARY = {
  /** where(cond, a, b): a where cond != 0. */
  where: 'select(x2, x1, x0 != 0.0)',
  /** a + alpha * b * c (addcmul). */
  addcmul: 'x0 + p.alpha * x1 * x2',
} as const;
export type TernaryOp = keyof typeof TERNARY;

// Fused optimizer updates: one dispatch per parameter reads the gradient once and updates the weight
// and its state in place (SGD with momentum/Nesterov/weight decay; Adam; AdamW).
//
// Masked variants take a 0/1 mask and guarantee what pruning needs: a masked weight, its gradient
// contribution and every state buffer are exactly zero after the step, whatever they held before.
// (Other codebases let momentum regrow pruned weights; here a masked entry's weight and state are
// overwritten with +0 on every step.)
//
// Tiling: one thread per element or per 4 consecutive elements as vec4s (parameters of a multiple of
// 4 elements), 256 threads per workgroup, grid1d; memory-bound (reads 3-5 floats, writes 2-3), fast
// for any parameter size. On lavapipe a per-thread vec4 load costs about one
// scalar load, so the vec4 form does a quarter of the loads; both do the same operations per element
// in the same order, so they give the same bits.
import { uniformStruct } from './uniform.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';

export const OPTIM_WG = 256;
export type OptimKind = 'sgd' | 'adam' | 'adamw';

/** The fused update's uniforms: b1/b2 are beta1/beta2 (Adam) or momentum/dampening (SGD). */
export const OPTIM_UNIFORM = uniformStruct([
  ['n', 'u32'], ['step', 'u32'], ['lr', 'f32'], ['wd', 'f32'], ['b1', 'f32'], ['b2', 'f32'],
  ['eps', 'f32'], ['bc1', 'f32'], ['bc2', 'f32'], ['nesterov', 'u32'],
] as const);
/** applyMaskKernel's uniforms. */
export const MASK_UNIFORM = uniformStruct([['n', 'u32']] as const);

/**
 * One fused update per element (vec4 = false) or per 4 consecutive elements (vec4 = true: the same
 * expressions per component; uniform n counts vec4s). A pruned entry is written as +0 outright
 * (select, not multiply): 0 * inf would be NaN and 0 * negative would be -0; pruning promises exact
 * zeros. The scalar kernel returns early for it; the vec4 kernel computes all four lanes and stores a
 * lane whose mask is 0 as +0 (weight and both states), which is what the early return writes.
 */
export function optimKernel(kind: OptimKind, masked: boolean, vec4 = false): Kernel {
  const T = vec4 ? 'vec4<f32>' : 'f32';
  const lanes = masked && vec4;
  const keep = (v: string) => (lanes ? `select(Z, ${v}, keep)` : v);
  const head = !masked
    ? ''
    : vec4
      ? 'let keep = mask[i] != Z;'
      : `if (mask[i] == 0.0) {
    w[i] = 0.0;
    s1[i] = 0.0;
    s2[i] = 0.0;
    return;
  }`;
  const body =
    kind === 'sgd'
      ? `  // torch.optim.SGD: g += wd*w; buf = mom*buf + (1-damp)*g (buf = g on the first step);
  // d = nesterov ? g + mom*buf : buf; w -= lr*d.
  let w0 = w[i];
  var g = grad[i] + p.wd * w0;
  var b = s1[i];
  if (p.b1 != 0.0) {
    b = select(p.b1 * b + (1.0 - p.b2) * g, g, p.step == 1u);
    g = select(b, g + p.b1 * b, p.nesterov != 0u);
  }
  w[i] = ${keep('w0 - p.lr * g')};
  ${lanes ? `s1[i] = ${keep('b')};
  s2[i] = ${keep('s2[i]')};` : 'if (p.b1 != 0.0) { s1[i] = b; }'}`
      : `  // torch.optim.${kind === 'adam' ? 'Adam (L2 weight decay added to the gradient)' : 'AdamW (decoupled weight decay)'}.
  var wi = w[i];
  var g = grad[i];
  ${kind === 'adam' ? 'g = g + p.wd * wi;' : 'wi = wi * (1.0 - p.lr * p.wd);'}
  let m1 = p.b1 * s1[i] + (1.0 - p.b1) * g;
  let m2 = p.b2 * s2[i] + (1.0 - p.b2) * g * g;
  s1[i] = ${keep('m1')};
  s2[i] = ${keep('m2')};
  let denom = sqrt(m2 / p.bc2) + p.eps;
  w[i] = ${keep('wi - p.lr * (m1 / p.bc1) / denom')};`;
  const name = `optim_${kind}${masked ? '_masked' : ''}${vec4 ? '_vec4' : ''}`;
  const code = `// ${name}
${OPTIM_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read_write> w: array<${T}>;
@group(0) @binding(1) var<storage, read> grad: array<${T}>;
@group(0) @binding(2) var<storage, read_write> s1: array<${T}>;
@group(0) @binding(3) var<storage, read_write> s2: array<${T}>;
${masked ? `@group(0) @binding(4) var<storage, read> mask: array<${T}>;` : ''}
@group(0) @binding(${masked ? 5 : 4}) var<uniform> p: P;
const Z = ${T}(0.0);

@compute @workgroup_size(${OPTIM_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(OPTIM_WG)};
  if (i >= p.n) { return; }
  ${head}
${body}
}
`;
  const bindings: Kernel['bindings'] = masked
    ? ['write', 'read', 'write', 'write', 'read', 'uniform']
    : ['write', 'read', 'write', 'write', 'uniform'];
  return { name, code, bindings };
}

/** Multiplies a tensor by a 0/1 mask in place (applying a new mask to weights and state). */
export const APPLY_MASK_KERNEL: Kernel = {
  name: 'apply_mask',
  code: `// apply_mask: x = mask != 0 ? x : +0, in place
${MASK_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> mask: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(${OPTIM_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(OPTIM_WG)};
  if (i >= p.n) { return; }
  x[i] = select(0.0, x[i], mask[i] != 0.0);
}
`,
  bindings: ['write', 'read', 'uniform'],
};

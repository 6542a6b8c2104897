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

/** Where the update body finds one element (or vec4) of each operand, and the step's lr / wd. */
interface UpdateAccess {
  w: string;
  grad: string;
  s1: string;
  s2: string;
  lr: string;
  wd: string;
}

/**
 * The update of one element or vec4 (the same text in every kernel of the family, so the per-tensor
 * and multi-tensor kernels compute the same expressions in the same order: the same bits). `lanes`:
 * every store goes through select(Z, v, keep), the vec4 masked form; otherwise the plain stores.
 */
function updateBody(kind: OptimKind, a: UpdateAccess, lanes: boolean): string {
  const keep = (v: string) => (lanes ? `select(Z, ${v}, keep)` : v);
  return kind === 'sgd'
    ? `  // torch.optim.SGD: g += wd*w; buf = mom*buf + (1-damp)*g (buf = g on the first step);
  // d = nesterov ? g + mom*buf : buf; w -= lr*d.
  let w0 = ${a.w};
  var g = ${a.grad} + ${a.wd} * w0;
  var b = ${a.s1};
  if (p.b1 != 0.0) {
    b = select(p.b1 * b + (1.0 - p.b2) * g, g, p.step == 1u);
    g = select(b, g + p.b1 * b, p.nesterov != 0u);
  }
  ${a.w} = ${keep(`w0 - ${a.lr} * g`)};
  ${lanes ? `${a.s1} = ${keep('b')};
  ${a.s2} = ${keep(a.s2)};` : `if (p.b1 != 0.0) { ${a.s1} = b; }`}`
    : `  // torch.optim.${kind === 'adam' ? 'Adam (L2 weight decay added to the gradient)' : 'AdamW (decoupled weight decay)'}.
  var wi = ${a.w};
  var g = ${a.grad};
  ${kind === 'adam' ? `g = g + ${a.wd} * wi;` : `wi = wi * (1.0 - ${a.lr} * ${a.wd});`}
  let m1 = p.b1 * ${a.s1} + (1.0 - p.b1) * g;
  let m2 = p.b2 * ${a.s2} + (1.0 - p.b2) * g * g;
  ${a.s1} = ${keep('m1')};
  ${a.s2} = ${keep('m2')};
  let denom = sqrt(m2 / p.bc2) + p.eps;
  ${a.w} = ${keep(`wi - ${a.lr} * (m1 / p.bc1) / denom`)};`;
}

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
  const body = updateBody(kind, { w: 'w[i]', grad: 'grad[i]', s1: 's1[i]', s2: 's2[i]', lr: 'p.lr', wd: 'p.wd' }, lanes);
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

// ---------------------------------------------------------------------------------------------
// Multi-tensor update: every parameter of a step in one dispatch (torch's foreach / fused Adam)

/** The multi-tensor kernel's uniform words before its segment table (the step's shared hyper-parameters). */
export const MULTI_HEAD_WORDS = 8;
/** Words per segment: (first workgroup, elements, weight offset, masked), (s1, s2, mask offsets, 0), (lr, wd, 0, 0). */
export const MULTI_SEG_WORDS = 12;

/**
 * The update of `tensors` parameters in one dispatch. Weights, moments and masks live in three arenas
 * (tensor/arena.ts), bound once each; the gradients, which autograd makes as separate tensors, are
 * bound one by one (g0, g1, ...), so a dispatch takes maxStorageBuffersPerShaderStage - 3 parameters
 * at most and the launcher splits longer lists. A uniform table gives each parameter (a segment) its
 * first workgroup, size, offsets in the arenas (in vec4s: arena views start on 256-byte boundaries),
 * whether it is masked, and its own lr and weight decay.
 *
 * Tiling: a thread updates `rows` vec4s of one segment (256 apart, so a workgroup's loads stay
 * contiguous), 256 threads per workgroup, and a workgroup belongs to one segment (segments start on
 * workgroup boundaries), so the segment search (a walk over the table), the switch that picks its
 * gradient binding and every branch are uniform per workgroup. A software adapter runs a switch on
 * a value it cannot prove uniform as every case under a lane mask, so each case only loads its
 * gradient rows (a loop, which does stop when no lane is active); rows = 8 pays that walk once per 8
 * vec4s (lavapipe), rows = 1 gives GPUs a thread per vec4. The update itself is the vec4 masked
 * kernel's text: the same expressions per element, so the same bits as the scalar and vec4 kernels.
 * Lanes past a segment's end (sizes that are not a multiple of 4) are stored as +0 into the arenas'
 * padding and never read back as values. Memory-bound like the per-tensor kernels; it saves their
 * launches (one per parameter), which dominate for thin models (Meso-4: 20 parameters of 8 to 9,000
 * floats).
 */
export function optimMultiKernel(kind: OptimKind, tensors: number, masked: boolean, rows = 1): Kernel {
  const name = `optim_multi_${kind}${masked ? '_masked' : ''}_${tensors}_r${rows}`;
  const grads = Array.from({ length: tensors }, (_, k) => `@group(0) @binding(${k + (masked ? 3 : 2)}) var<storage, read> g${k}: array<vec4<f32>>;`).join('\n');
  const pick = Array.from(
    { length: tensors },
    (_, k) => `    case ${k}u: {
      for (var r = 0u; r < ${rows}u; r++) {
        let q = q0 + r * ${OPTIM_WG}u;
        if (q * 4u >= sg.a.y) { break; }
        gs[r] = g${k}[q];
      }
    }`,
  ).join('\n');
  const body = updateBody(kind, { w: 'W[wv]', grad: 'gs[r]', s1: 'S[s1v]', s2: 'S[s2v]', lr: 'lr', wd: 'wd' }, true)
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
  const code = `// ${name}
struct Seg {
  a: vec4<u32>,
  b: vec4<u32>,
  h: vec4<f32>,
}
struct P {
  nseg: u32, step: u32, b1: f32, b2: f32,
  eps: f32, bc1: f32, bc2: f32, nesterov: u32,
  segs: array<Seg, ${tensors}>,
}
@group(0) @binding(0) var<storage, read_write> W: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> S: array<vec4<f32>>;
${masked ? '@group(0) @binding(2) var<storage, read> M: array<vec4<f32>>;' : ''}
${grads}
@group(0) @binding(${tensors + (masked ? 3 : 2)}) var<uniform> p: P;
const Z = vec4<f32>(0.0);

@compute @workgroup_size(${OPTIM_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let wg = wid.x + wid.y * nwg.x;
  var k = 0u;
  for (var j = 1u; j < p.nseg; j++) {
    if (wg >= p.segs[j].a.x) { k = j; }
  }
  let sg = p.segs[k];
  let q0 = (wg - sg.a.x) * ${OPTIM_WG * rows}u + lid;
  if (q0 * 4u >= sg.a.y) { return; }
  var gs: array<vec4<f32>, ${rows}>;
  switch k {
${pick}
    default: {}
  }
  let lr = sg.h.x;
  let wd = sg.h.y;
  for (var r = 0u; r < ${rows}u; r++) {
    let q = q0 + r * ${OPTIM_WG}u;
    let e = q * 4u;
    if (e >= sg.a.y) { break; }
    var keep = vec4<u32>(e) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(sg.a.y);
    ${masked ? 'if (sg.a.w != 0u) { keep = keep & (M[sg.b.z + q] != Z); }' : ''}
    let wv = sg.a.z + q;
    let s1v = sg.b.x + q;
    let s2v = sg.b.y + q;
${body}
  }
}
`;
  const bindings: Kernel['bindings'] = ['write', 'write', ...(masked ? (['read'] as const) : []), ...Array.from({ length: tensors }, () => 'read' as const), 'uniform'];
  return { name, code, bindings };
}

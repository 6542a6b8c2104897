// Fused losses: BCE-with-logits and its mean in one kernel, where the unfused path runs a map (the
// per-element loss), a reduction and a scaling (three dispatches and two intermediate tensors).
//
// Tiling: ONE workgroup of LOSS_WG threads; thread t sums elements t, t + WG, ... in index order, then
// a fixed tree in workgroup memory combines the 64 partial sums, so the bits depend on n only. Meant
// for a loss over a batch (tens to thousands of logits), where one workgroup is plenty and a second
// dispatch would cost more than the whole sum; large n suits the unfused reduction (the planner's
// `fused.bce` family caps n).
import { uniformStruct } from './uniform.js';
import type { Kernel } from './kernel.js';

export const LOSS_WG = 64;

export const LOSS_UNIFORM = uniformStruct([
  ['n', 'u32'],
  ['scale', 'f32'],
] as const);

/**
 * mean over i of max(x, 0) - x * t + log(1 + exp(-|x|)) (the stable BCE-with-logits, the expression
 * of the unfused map). Bindings: logits, targets, out (one f32), params. Grid: [1, 1, 1].
 */
export function bceMeanKernel(): Kernel {
  const name = 'bce_logits_mean';
  const tree: string[] = [];
  for (let s = LOSS_WG / 2; s >= 1; s /= 2) tree.push(`  if (lid < ${s}u) { red[lid] += red[lid + ${s}u]; }\n  workgroupBarrier();`);
  const code = `// ${name}
${LOSS_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> t: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
var<workgroup> red: array<f32, ${LOSS_WG}>;

@compute @workgroup_size(${LOSS_WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < p.n; i += ${LOSS_WG}u) {
    let x0 = x[i];
    s += max(x0, 0.0) - x0 * t[i] + log(1.0 + exp(-abs(x0)));
  }
  red[lid] = s;
  workgroupBarrier();
${tree.join('\n')}
  if (lid == 0u) { out[0] = red[0] * p.scale; }
}
`;
  return { name, code, bindings: ['read', 'read', 'write', 'uniform'] };
}

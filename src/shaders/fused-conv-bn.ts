// Eval-mode batch norm folded into the convolution before it: with the running statistics fixed,
// BN(conv(x, W) + b) = conv(x, W * s) + (b - mean) * s + beta per output channel, s = gamma /
// sqrt(var + eps). Folding the weights (a few thousand values) once per forward replaces the BN pass
// over the whole activation (a read and a write of N*C*H*W values) by a pass over the weights.
//
// Tiling: a thread per folded value, the weights first (cout * K of them, K = cin/groups * kh * kw)
// then the cout biases; one dispatch writes both. Fast for any conv: the work is the weight count.
import { uniformStruct } from './uniform.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';

export const FOLD_WG = 64;

export const FOLD_UNIFORM = uniformStruct([
  ['k', 'u32'], ['cout', 'u32'], ['eps', 'f32'],
] as const);

/**
 * w2[co * K + j] = w[co * K + j] * s[co] and b2[co] = (b[co] - mean[co]) * s[co] + beta[co], with
 * s = gamma * inverseSqrt(var + eps) (gamma 1 and beta 0 without `affine`; b 0 without `bias`).
 * Bindings: w, [b], mean, var, [gamma, beta], w2, b2, params. Grid: gridFor(cout * (K + 1), FOLD_WG).
 */
export function foldBnKernel(bias: boolean, affine: boolean): Kernel {
  const name = `fold_bn_conv${bias ? '_bias' : ''}${affine ? '_affine' : ''}`;
  const ins = ['w', ...(bias ? ['b'] : []), 'rmean', 'rvar', ...(affine ? ['gamma', 'beta'] : [])];
  const decl = ins.map((v, i) => `@group(0) @binding(${i}) var<storage, read> ${v}: array<f32>;`).join('\n');
  const code = `// ${name}
${FOLD_UNIFORM.wgsl}
${decl}
@group(0) @binding(${ins.length}) var<storage, read_write> w2: array<f32>;
@group(0) @binding(${ins.length + 1}) var<storage, read_write> b2: array<f32>;
@group(0) @binding(${ins.length + 2}) var<uniform> p: P;

fn scale(co: u32) -> f32 {
  return ${affine ? 'gamma[co] * ' : ''}inverseSqrt(rvar[co] + p.eps);
}

@compute @workgroup_size(${FOLD_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(FOLD_WG)};
  let nw = p.cout * p.k;
  if (i < nw) {
    w2[i] = w[i] * scale(i / p.k);
  } else if (i < nw + p.cout) {
    let co = i - nw;
    b2[co] = (${bias ? 'b[co]' : '0.0'} - rmean[co]) * scale(co)${affine ? ' + beta[co]' : ''};
  }
}
`;
  return { name, code, bindings: [...ins.map(() => 'read' as const), 'write', 'write', 'uniform'] };
}

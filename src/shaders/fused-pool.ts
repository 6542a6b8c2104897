// Batch norm (with an optional fused ReLU before or after it) and the max pool that follows it, in
// one pass: each thread computes the BN output of its window's elements as it loads them and keeps
// the maximum, so the full-size normalised activation is never written nor read back (Meso-4 and
// CNN-5 pool every BN output). The batch statistics come first (shaders/norm.ts stage 1 and finalize).
//
// Tiling: 'window', one thread per pooled output over its kh x kw window, as maxPoolForwardKernel; or
// 'quad' (software adapters, where a vec4 load costs about a scalar one), one thread per (plane,
// output row, 4-column quad) as maxPoolQuadKernel, for windows that tile whole vec4 rows. Both are the
// plain pool's walk (the same generators) with a BN load, so they keep its tie rule (first maximum in
// row-major window order) and index (ih * W + iw within the plane, -1 for a window of padding only):
// the backward is the plain max-pool backward followed by the BN backward. Per element the
// expressions are those of bnApplyKernel, so values and argmax equal the unfused chain bit for bit.
import { uniformStruct } from './uniform.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';
import type { NormAct } from './norm.js';
import { quadMaxForwardBody, windowMaxForwardBody } from './pool.js';

export const BN_POOL_WG = 128;

export const BN_POOL_UNIFORM = uniformStruct([
  ['total', 'u32'], ['c', 'u32'], ['h', 'u32'], ['w', 'u32'],
  ['oh', 'u32'], ['ow', 'u32'], ['kh', 'u32'], ['kw', 'u32'],
  ['sh', 'u32'], ['sw', 'u32'], ['pt', 'i32'], ['pl', 'i32'],
  ['eps', 'f32'],
] as const);

/**
 * y[o] = max over o's window of BN(x) (with the fused ReLU), idx[o] = its position. `fromVar`: scale
 * holds the running variance (eval mode), else invstd. `quad`: the row-quad walk (kw = sw in {2, 4},
 * kh = sh, no padding, W % 4 == 0, H % sh == 0; params.total = planes * oh * (W / 4)); else a thread
 * per output (total = outputs). Bindings: x, mean, scale, [gamma, beta], y, idx (i32), params.
 * Grid: gridFor(total, BN_POOL_WG).
 */
export function bnMaxPoolKernel(affine: boolean, fromVar: boolean, act: NormAct, quad: 2 | 4 | null = null): Kernel {
  const name = `bn_max_pool${quad ? `_quad${quad}` : ''}${affine ? '_affine' : ''}${fromVar ? '_var' : ''}${act.pre ? '_prerelu' : ''}${act.post ? '_relu' : ''}`;
  const t = quad ? 'vec4<f32>' : 'f32';
  const zero = quad ? 'vec4<f32>(0.0)' : '0.0';
  const out = affine ? 'xh * g + b' : 'xh';
  // The channel's constants, read once per thread (the quad walk's plane index comes later).
  const consts = (ch: string) => `
  let ch = ${ch};
  let s = ${fromVar ? 'inverseSqrt(scale[ch] + p.eps)' : 'scale[ch]'};
  let m = mean[ch];
  let g = ${affine ? 'gamma[ch]' : '1.0'};
  let b = ${affine ? 'beta[ch]' : '0.0'};`;
  const load = (a: string) => `bnv(x[${a}], m, s, g, b)`;
  const body = quad ? `${consts('(i / (p.oh * (p.w / 4u))) % p.c')}\n${quadMaxForwardBody(quad, load)}` : windowMaxForwardBody(load, consts('pl_ % p.c'));
  const code = `// ${name}
${BN_POOL_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> x: array<${t}>;
@group(0) @binding(1) var<storage, read> mean: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
${affine ? `@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;` : ''}
@group(0) @binding(${affine ? 5 : 3}) var<storage, read_write> y: array<f32>;
@group(0) @binding(${affine ? 6 : 4}) var<storage, read_write> idx: array<i32>;
@group(0) @binding(${affine ? 7 : 5}) var<uniform> p: P;

/** The BN output (with the fused ReLU) of loaded values, given the channel's constants. */
fn bnv(xv: ${t}, m: f32, s: f32, g: f32, b: f32) -> ${t} {
  let xh = (${act.pre ? `max(xv, ${zero})` : 'xv'} - m) * s;
  return ${act.post ? `max(${out}, ${zero})` : out};
}

@compute @workgroup_size(${BN_POOL_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(BN_POOL_WG)};
  if (i >= p.total) { return; }
${body}
}
`;
  const bindings: Kernel['bindings'] = affine
    ? ['read', 'read', 'read', 'read', 'read', 'write', 'write', 'uniform']
    : ['read', 'read', 'read', 'write', 'write', 'uniform'];
  return { name, code, bindings };
}

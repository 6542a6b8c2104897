// Batch norm (with an optional fused ReLU before or after it) and the max pool that follows it, in
// one pass: each thread computes the BN output of its window's elements as it loads them and keeps
// the maximum, so the full-size normalised activation is never written nor read back (Meso-4 and
// CNN-5 pool every BN output). The batch statistics come first (shaders/norm.ts stage 1 and finalize).
//
// Tiling: 'window', one thread per pooled output over its kh x kw window, as maxPoolForwardKernel; or
// 'quad' (software adapters, where a vec4 load costs about a scalar one), one thread per (plane,
// output row, 4-column quad) as maxPoolQuadKernel, for windows that tile whole vec4 rows. Both keep the
// the max pool's tie rule (first maximum in row-major window order) and index (ih * W + iw within the
// plane, -1 for a window of padding only), so the backward is the plain max-pool backward followed
// by the BN backward. Per element the expressions are those of bnApplyKernel, so values and argmax
// equal the unfused BN-then-pool bit for bit.
import { uniformStruct } from './uniform.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';
import type { NormAct } from './norm.js';
import { quadMaxForwardBody } from './pool.js';

export const BN_POOL_WG = 128;

export const BN_POOL_UNIFORM = uniformStruct([
  ['total', 'u32'], ['c', 'u32'], ['h', 'u32'], ['w', 'u32'],
  ['oh', 'u32'], ['ow', 'u32'], ['kh', 'u32'], ['kw', 'u32'],
  ['sh', 'u32'], ['sw', 'u32'], ['pt', 'i32'], ['pl', 'i32'],
  ['eps', 'f32'],
] as const);

/**
 * y[o] = max over o's window of BN(x) (with the fused ReLU), idx[o] = its position. `fromVar`: scale
 * holds the running variance (eval mode), else invstd. Bindings: x, mean, scale, [gamma, beta], y,
 * idx (i32), params (total = outputs). Grid: gridFor(outputs, BN_POOL_WG).
 */
export function bnMaxPoolKernel(affine: boolean, fromVar: boolean, act: NormAct): Kernel {
  const name = `bn_max_pool${affine ? '_affine' : ''}${fromVar ? '_var' : ''}${act.pre ? '_prerelu' : ''}${act.post ? '_relu' : ''}`;
  const out = affine ? 'xh * g + b' : 'xh';
  const code = `// ${name}
${BN_POOL_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> mean: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
${affine ? `@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;` : ''}
@group(0) @binding(${affine ? 5 : 3}) var<storage, read_write> y: array<f32>;
@group(0) @binding(${affine ? 6 : 4}) var<storage, read_write> idx: array<i32>;
@group(0) @binding(${affine ? 7 : 5}) var<uniform> p: P;

@compute @workgroup_size(${BN_POOL_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(BN_POOL_WG)};
  if (i >= p.total) { return; }
  let P_ = p.oh * p.ow;
  let pl_ = i / P_;
  let ch = pl_ % p.c;
  let q = i - pl_ * P_;
  let oy = q / p.ow;
  let ox = q - oy * p.ow;
  let y0 = i32(oy * p.sh) - p.pt;
  let x0 = i32(ox * p.sw) - p.pl;
  let base = pl_ * p.h * p.w;
  let s = ${fromVar ? 'inverseSqrt(scale[ch] + p.eps)' : 'scale[ch]'};
  let m = mean[ch];
${affine ? '  let g = gamma[ch];\n  let b = beta[ch];' : ''}
  var best = -3.4028234663852886e38; // -FLT_MAX: a -inf literal is not a valid WGSL constant
  var bi = -1i;
  for (var ky = 0u; ky < p.kh; ky++) {
    let iy = y0 + i32(ky);
    if (iy < 0 || iy >= i32(p.h)) { continue; }
    for (var kx = 0u; kx < p.kw; kx++) {
      let ix = x0 + i32(kx);
      if (ix < 0 || ix >= i32(p.w)) { continue; }
      let at = iy * i32(p.w) + ix;
      let xv = x[base + u32(at)];
      let xh = (${act.pre ? 'max(xv, 0.0)' : 'xv'} - m) * s;
      let v = ${act.post ? `max(${out}, 0.0)` : out};
      if (bi < 0 || v > best) {
        best = v;
        bi = at;
      }
    }
  }
  y[i] = best;
  idx[i] = bi;
}
`;
  const bindings: Kernel['bindings'] = affine
    ? ['read', 'read', 'read', 'read', 'read', 'write', 'write', 'uniform']
    : ['read', 'read', 'read', 'write', 'write', 'uniform'];
  return { name, code, bindings };
}

/**
 * The row-quad form of bnMaxPoolKernel: kw = sw in {2, 4}, kh = sh, no padding, W % 4 == 0, H % sh == 0
 * (the geometry of the plain quad pool). params.total = planes * oh * (W / 4). Bindings as bnMaxPoolKernel.
 */
export function bnMaxPoolQuadKernel(affine: boolean, fromVar: boolean, act: NormAct, kw: 2 | 4): Kernel {
  const name = `bn_max_pool_quad${kw}${affine ? '_affine' : ''}${fromVar ? '_var' : ''}${act.pre ? '_prerelu' : ''}${act.post ? '_relu' : ''}`;
  const zero = 'vec4<f32>(0.0)';
  const out = affine ? 'xh * g + b' : 'xh';
  const code = `// ${name}
${BN_POOL_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> mean: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
${affine ? `@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;` : ''}
@group(0) @binding(${affine ? 5 : 3}) var<storage, read_write> y: array<f32>;
@group(0) @binding(${affine ? 6 : 4}) var<storage, read_write> idx: array<i32>;
@group(0) @binding(${affine ? 7 : 5}) var<uniform> p: P;

/** The BN output (with the fused ReLU) of one loaded quad of channel constants m, s, g, b. */
fn bnq(xv: vec4<f32>, m: f32, s: f32, g: f32, b: f32) -> vec4<f32> {
  let xh = (${act.pre ? `max(xv, ${zero})` : 'xv'} - m) * s;
  return ${act.post ? `max(${out}, ${zero})` : out};
}

@compute @workgroup_size(${BN_POOL_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(BN_POOL_WG)};
  if (i >= p.total) { return; }
  let ch = (i / (p.oh * (p.w / 4u))) % p.c;
  let s = ${fromVar ? 'inverseSqrt(scale[ch] + p.eps)' : 'scale[ch]'};
  let m = mean[ch];
  let g = ${affine ? 'gamma[ch]' : '1.0'};
  let b = ${affine ? 'beta[ch]' : '0.0'};
${quadMaxForwardBody(kw, (a) => `bnq(x[${a}], m, s, g, b)`)}
}
`;
  const bindings: Kernel['bindings'] = affine
    ? ['read', 'read', 'read', 'read', 'read', 'write', 'write', 'uniform']
    : ['read', 'read', 'read', 'write', 'write', 'uniform'];
  return { name, code, bindings };
}

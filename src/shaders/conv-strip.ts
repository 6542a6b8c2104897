// Row-strip convolution for software adapters (lavapipe): stride 1, dilation 1, input rows a multiple of
// 4 floats wide. Serves conv2d forward and, on the flipped/transposed weights, the input gradient of a
// stride-1 conv (the same correlation over dy with padding kernel-1-padding).
//
// Why: on lavapipe the cost of a kernel is its storage loads (bench/peak.ts: one load, uniform or per
// thread, costs about as much as 20-40 FMAs), and a per-thread vec4 load costs little more than a
// scalar one. The direct kernels (conv.ts) load one input value per (pixel, tap): 0.25 loads per FMA at
// 8 pixels x 8 channels. Here a thread owns PX consecutive output pixels of one row (PX/4 vec4
// accumulators per channel) and BN channels. Per (input channel, kernel row) it loads the input row
// segment it needs once, as aligned vec4s (a quad of 4 columns is inside the row or wholly outside it,
// because the row width is a multiple of 4, so padding is one select per quad), and serves all KW
// taps from it by picking components (free in lavapipe's one-register-per-component layout). Weights
// come pre-packed as [cin][kh][kw][coutPad] so each tap's BN channel weights are BN/4 uniform vec4 loads
// (one vec2 at BN = 2, for a layer of 1-2 filters such as a compacted one, instead of a 4-channel block
// half padding). At PX = 4, BN = 8, KW = 3: 3 per-thread + 6 uniform vec4 loads per 96 FMAs (0.09 per FMA).
//
// KW and the left padding PL are compile-time constants (the component picks depend on them), so
// there is one pipeline per (KW, PL, tile, bias, ReLU); kernel height, top padding and all sizes are
// uniforms.
import { uniformStruct } from './uniform.js';
import { GRID_BUILTINS_WGSL, linearIndexWgsl, type Kernel } from './kernel.js';
import { epilogueSuffix, forwardEpilogueWgsl } from './conv-fragments.js';

export interface StripTile {
  /** Threads per workgroup. */
  wg: number;
  /** Output pixels per thread along a row (4 or 8). */
  px: number;
  /** Output channels per thread (a multiple of 4, or 2 for layers of 1-2 filters); all threads of a workgroup share them. */
  bn: number;
}

export function stripKey(t: StripTile): string {
  return `${t.wg}x${t.px}x${t.bn}`;
}

/** The strip kernel's uniforms (WGSL struct and host packer from one schema). */
export const STRIP_UNIFORM = uniformStruct([
  ['n', 'u32'], ['cin', 'u32'], ['h', 'u32'], ['w', 'u32'],
  ['cout', 'u32'], ['oh', 'u32'], ['ow', 'u32'], ['kh', 'u32'],
  ['pt', 'i32'], ['qpr', 'u32'], ['rows', 'u32'], ['coutPad', 'u32'],
] as const);
const STRIP_STRUCT = STRIP_UNIFORM.wgsl;

const floorDiv = (a: number, b: number) => Math.floor(a / b);

/**
 * The input quads a PX-pixel row piece reads for a KW-wide kernel with left padding PL: the first quad
 * q0 (relative to the piece's first column / 4), their count nq, and WGSL lines defining per quad i its
 * first column cq{i} and whether it lies in the row (cok{i}). Shared with the sparse strip kernels.
 */
export function stripQuads(px: number, kw: number, pl: number): { q0: number; nq: number; lines: string[] } {
  const q0 = floorDiv(-pl, 4);
  const nq = floorDiv(px + kw - 2 - pl, 4) - q0 + 1;
  const lines: string[] = [];
  for (let i = 0; i < nq; i++) {
    lines.push(`  let cq${i} = i32(ow0) + ${4 * (q0 + i)};`);
    lines.push(`  let cok${i} = cq${i} >= 0 && cq${i} < i32(p.w);`);
  }
  return { q0, nq, lines };
}

/** A strip thread's row piece: live, then (nb, oh, ow0) of output piece m over N x OH x qpr pieces of PX pixels. */
export function stripPieceWgsl(wg: number, px: number): string {
  return `  let m = min(${linearIndexWgsl(wg)}, p.rows - 1u);
  let live = ${linearIndexWgsl(wg)} < p.rows;
  let qi = m % p.qpr;
  let r = m / p.qpr;
  let oh = r % p.oh;
  let nb = r / p.oh;
  let ow0 = qi * ${px}u;`;
}

/**
 * y[n, co, oh, ow] = sum over ci, ky, kx of x[n, ci, oh + ky - pt, ow + kx - PL] * wp[ci, ky, kx, co]
 * (+ bias[co], then max(., 0) with `relu`), zero outside the input. Bindings: x (as vec4s), wp (as
 * vec4s), [bias], y (as vec4s with `quadStore`, which needs OW % 4 == 0), params.
 * Grid: (ceil(N*OH*ceil(OW/PX) / wg) over x/y, coutPad / BN on z).
 */
export function convStripKernel(t: StripTile, kw: number, pl: number, bias: boolean, relu = false, quadStore = false): Kernel {
  if (t.px % 4 || t.px < 4 || !(t.bn === 2 || (t.bn >= 4 && t.bn % 4 === 0))) throw new Error(`conv strip: bad tile ${JSON.stringify(t)}`);
  const name = `conv2d_strip_k${kw}p${pl}${epilogueSuffix(bias, relu)}_${stripKey(t)}${quadStore ? '_q4' : ''}`;
  const G = t.px / 4;
  // Weights per uniform load: a vec4 of 4 channels, or for a 2-channel block (a layer of 1-2 filters,
  // a compacted one) a vec2, so no padded channel is loaded or multiplied.
  const V = Math.min(t.bn, 4);
  const vt = V === 4 ? 'vec4<f32>' : 'vec2<f32>';
  const B4 = t.bn / V;
  // Quads (4 input columns) a thread reads per row, relative to its first output column / 4.
  const { q0, nq, lines: L } = stripQuads(t.px, kw, pl);
  // Input column of value v[i] (i over the loaded quads' components) relative to ow0: 4*q0 + i.
  const comp = (j: number, kx: number) => j + kx - pl - 4 * q0; // output pixel j, tap kx -> index in v
  for (let g = 0; g < G; g++) for (let c = 0; c < t.bn; c++) L.push(`  var a${g}_${c} = vec4<f32>(0.0);`);
  const body: string[] = [];
  for (let i = 0; i < nq; i++) {
    body.push(`        let q${i} = select(Z4, x[select(0u, rb + u32(i32(ow0 >> 2u) + ${q0 + i}), ok && cok${i})], ok && cok${i});`);
  }
  const v = (i: number) => `q${Math.floor(i / 4)}[${i % 4}]`;
  for (let kx = 0; kx < kw; kx++) {
    for (let b = 0; b < B4; b++) body.push(`        let w${kx}_${b} = wp[wb + ${kx} * cpq + ${b}u];`);
    for (let g = 0; g < G; g++) {
      const idx = [0, 1, 2, 3].map((j) => comp(g * 4 + j, kx));
      body.push(`        let s${kx}_${g} = vec4<f32>(${idx.map(v).join(', ')});`);
      for (let c = 0; c < t.bn; c++) body.push(`        a${g}_${c} = fma(s${kx}_${g}, vec4<f32>(w${kx}_${Math.floor(c / V)}[${c % V}]), a${g}_${c});`);
    }
  }
  const store: string[] = [];
  for (let c = 0; c < t.bn; c++) {
    store.push(`  if (c0 + ${c}u < p.cout) {`);
    store.push(`    let yb = ((nb * p.cout + c0 + ${c}u) * p.oh + oh) * p.ow + ow0;`);
    for (let g = 0; g < G; g++) {
      const ep = (j: number) => forwardEpilogueWgsl(`a${g}_${c}[${j}]`, bias, relu, `c0 + ${c}u`);
      // Output rows of whole quads: a quad is inside the row or wholly past it, and one per-thread vec4
      // store (the same values) replaces four scalar ones, which on lavapipe are four scatters.
      if (quadStore) store.push(`    if (ow0 + ${4 * g}u < p.ow) { y[(yb >> 2u) + ${g}u] = vec4<f32>(${[0, 1, 2, 3].map(ep).join(', ')}); }`);
      else for (let j = 0; j < 4; j++) store.push(`    if (ow0 + ${g * 4 + j}u < p.ow) { y[yb + ${g * 4 + j}u] = ${ep(j)}; }`);
    }
    store.push('  }');
  }
  const code = `// ${name}: ${t.wg} threads, ${t.px} pixels x ${t.bn} channels per thread, ${nq} vec4 input loads per row
${STRIP_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> wp: array<${vt}>;
${bias ? '@group(0) @binding(2) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(${bias ? 3 : 2}) var<storage, read_write> y: array<${quadStore ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(${bias ? 4 : 3}) var<uniform> p: P;
const Z4 = vec4<f32>(0.0);

@compute @workgroup_size(${t.wg})
fn main(${GRID_BUILTINS_WGSL}) {
${stripPieceWgsl(t.wg, t.px)}
  let c0 = wid.z * ${t.bn}u;
  let w4 = p.w >> 2u;
  let cpq = p.coutPad / ${V}u;
${L.join('\n')}
  for (var ci = 0u; ci < p.cin; ci++) {
    let xb = (nb * p.cin + ci) * p.h;
    for (var ky = 0u; ky < p.kh; ky++) {
      let ih = i32(oh + ky) - p.pt;
      let ok = u32(ih) < p.h;
      let rb = (xb + u32(ih)) * w4;
      let wb = ((ci * p.kh + ky) * ${kw}u) * cpq + c0 / ${V}u;
${body.join('\n')}
    }
  }
  if (!live) { return; }
${store.join('\n')}
}
`;
  return { name, code, bindings: bias ? ['read', 'read', 'read', 'write', 'uniform'] : ['read', 'read', 'write', 'uniform'] };
}

/** The weight-packing kernel's uniforms. */
export const STRIP_PACK_UNIFORM = uniformStruct([['cout', 'u32'], ['cin', 'u32'], ['kh', 'u32'], ['kw', 'u32'], ['pad', 'u32'], ['flip', 'u32'], ['total', 'u32']] as const);
export const STRIP_PACK_WG = 64;

/**
 * Packs conv weights w [cout, cin, kh, kw] for the strip kernel, zero-padding the output channels.
 * flip = 0 (forward): wp[ci, ky, kx, co] = w[co, ci, ky, kx], co < coutPad.
 * flip = 1 (input gradient): the correlation over dy has input channels cout and output channels cin:
 * wp[co, ky, kx, ci] = w[co, ci, kh-1-ky, kw-1-kx], ci < cinPad (coutPad holds cinPad).
 * Bindings: w, wp, params. Grid: one thread per wp element.
 */
export function convStripPackKernel(): Kernel {
  const code = `// conv2d_strip_pack
${STRIP_PACK_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read_write> wp: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(${STRIP_PACK_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(STRIP_PACK_WG)};
  if (i >= p.total) { return; }
  let o = i % p.pad;
  var r = i / p.pad;
  let kx = r % p.kw;
  r = r / p.kw;
  let ky = r % p.kh;
  let a = r / p.kh;
  var v = 0.0;
  if (p.flip == 0u) {
    if (o < p.cout) { v = w[((o * p.cin + a) * p.kh + ky) * p.kw + kx]; }
  } else {
    if (o < p.cin) { v = w[((a * p.cin + o) * p.kh + (p.kh - 1u - ky)) * p.kw + (p.kw - 1u - kx)]; }
  }
  wp[i] = v;
}
`;
  return { name: 'conv2d_strip_pack', code, bindings: ['read', 'write', 'uniform'] };
}

/** The strip weight-gradient kernel's uniforms (cps: quads per split). */
export const STRIP_WGRAD_UNIFORM = uniformStruct([
  ['n', 'u32'], ['cin', 'u32'], ['h', 'u32'], ['w', 'u32'],
  ['cout', 'u32'], ['oh', 'u32'], ['ow', 'u32'], ['kh', 'u32'],
  ['pt', 'i32'], ['red', 'u32'], ['qpl', 'u32'], ['quads', 'u32'],
  ['cps', 'u32'],
] as const);

/**
 * Weight gradient by row strips, one split of the reduction per z index:
 * out[s, co, (ci*KH + ky)*KW + kx] = sum over row pieces l in split s of (n, oh, PX columns from ow)
 * of dy[n, co, oh, ow..] . x[n, ci, oh + ky - pt, ow + kx - PL ..].
 * A thread owns one (ci, ky) pair and all KW taps for BN channels; per piece it loads the input row
 * segment as vec4s (per thread) and BN*PX/4 dy quads (uniform: the walk over (n, oh, piece) is the same
 * in every thread), then does KW*BN*PX/4 vec4 FMAs; the 4 lanes of each accumulator are summed at the
 * end. Needs OW % PX == 0. Bindings: dy (vec4s), x (vec4s), out, params.
 * Grid: (ceil(Cin*KH / wg), ceil(Cout / BN), splits).
 */
export function convStripWgradKernel(t: StripTile, kw: number, pl: number): Kernel {
  if (t.px % 4 || t.px < 4 || t.bn < 1) throw new Error(`conv strip wgrad: bad tile ${JSON.stringify(t)}`);
  const name = `conv2d_strip_wgrad_k${kw}p${pl}_${stripKey(t)}`;
  const G = t.px / 4;
  const q0 = floorDiv(-pl, 4);
  const q1 = floorDiv(t.px + kw - 2 - pl, 4);
  const nq = q1 - q0 + 1;
  const v = (i: number) => `q${Math.floor(i / 4)}[${i % 4}]`;
  const A: string[] = [];
  for (let kx = 0; kx < kw; kx++) for (let c = 0; c < t.bn; c++) A.push(`  var a${kx}_${c} = vec4<f32>(0.0);`);
  const B: string[] = [];
  for (let i = 0; i < nq; i++) {
    B.push(`    let cq${i} = i32(ow) + ${4 * (q0 + i)};`);
    B.push(`    let ok${i} = ok && cq${i} >= 0 && cq${i} < i32(p.w);`);
    B.push(`    let q${i} = select(Z4, x[select(0u, rb + u32(i32(ow >> 2u) + ${q0 + i}), ok${i})], ok${i});`);
  }
  for (let c = 0; c < t.bn; c++)
    for (let g = 0; g < G; g++) B.push(`    let d${c}_${g} = dy[min(dyb + min(c0 + ${c}u, clast) * P4 + ${g}u, dyLast)];`);
  for (let kx = 0; kx < kw; kx++)
    for (let g = 0; g < G; g++) {
      const idx = [0, 1, 2, 3].map((j) => 4 * g + j + kx - pl - 4 * q0);
      B.push(`    let s${kx}_${g} = vec4<f32>(${idx.map(v).join(', ')});`);
      for (let c = 0; c < t.bn; c++) B.push(`    a${kx}_${c} = fma(s${kx}_${g}, d${c}_${g}, a${kx}_${c});`);
    }
  const S: string[] = [];
  for (let c = 0; c < t.bn; c++) {
    S.push(`  if (c0 + ${c}u < p.cout) {`);
    S.push(`    let ob = (split * p.cout + c0 + ${c}u) * p.red + pr * ${kw}u;`);
    for (let kx = 0; kx < kw; kx++) S.push(`    out[ob + ${kx}u] = dot(a${kx}_${c}, vec4<f32>(1.0));`);
    S.push('  }');
  }
  const code = `// ${name}: ${t.wg} threads, one (ci, ky) pair x ${kw} taps x ${t.bn} channels per thread
${STRIP_WGRAD_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
const Z4 = vec4<f32>(0.0);

@compute @workgroup_size(${t.wg})
fn main(${GRID_BUILTINS_WGSL}) {
  let pairs = p.cin * p.kh;
  let pr = min(wid.x * ${t.wg}u + lid, pairs - 1u);
  let live = wid.x * ${t.wg}u + lid < pairs;
  let ci = pr / p.kh;
  let ky = pr - ci * p.kh;
  let c0 = wid.y * ${t.bn}u;
  let clast = p.cout - 1u;
  let split = wid.z;
  let w4 = p.w >> 2u;
  let P4 = (p.oh * p.ow) >> 2u;
  let dyLast = p.n * p.cout * P4 - 1u;
${A.join('\n')}
  let lBeg = min(split * p.cps, p.quads);
  let lEnd = min(lBeg + p.cps, p.quads);
  var nb = lBeg / (p.oh * p.qpl);
  let r0 = lBeg - nb * p.oh * p.qpl;
  var oh = r0 / p.qpl;
  var ow = (r0 - oh * p.qpl) * ${t.px}u;
  for (var l = lBeg; l < lEnd; l++) {
    let ih = i32(oh + ky) - p.pt;
    let ok = u32(ih) < p.h;
    let rb = ((nb * p.cin + ci) * p.h + u32(ih)) * w4;
    let dyb = nb * p.cout * P4 + ((oh * p.ow + ow) >> 2u);
${B.join('\n')}
    ow += ${t.px}u;
    if (ow >= p.ow) {
      ow = 0u;
      oh++;
      if (oh == p.oh) { oh = 0u; nb++; }
    }
  }
  if (!live) { return; }
${S.join('\n')}
}
`;
  return { name, code, bindings: ['read', 'read', 'write', 'uniform'] };
}

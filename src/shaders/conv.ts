// Convolution family: conv2d forward, backward-input and backward-weight, plus the fixed-order split-K
// reduction. NCHW float32, weight [Cout, Cin, KH, KW], groups = 1. Two implementations of each pass:
//
// TILED (for GPUs): implicit GEMMs. A workgroup computes a BM x BN tile of the GEMM result, each of its
// T = (BM/TM)*(BN/TN) threads a TM x TN register block (rows strided by BM/TM, columns by BN/TN, so
// neighbouring threads own neighbouring rows and stores coalesce along the output's innermost axis).
// The reduction runs in chunks of BK: the threads gather a BK x BM slice of A and a BK x BN slice of
// B into workgroup memory (two barriers per chunk), then each thread accumulates BK outer products.
// No im2col is materialised: A is gathered from the image on the fly, with out-of-image taps read as 0.
// The tap decomposition k -> (channel, ky, kx) is done once per chunk into small workgroup tables (see
// TAP_TABLES), so a gathered element costs two adds, one unsigned bounds test and a load. Kernel size,
// stride, dilation and padding are uniforms: one pipeline per tile shape serves every layer (lavapipe
// compiles a pipeline in about a second, a real GPU in tens of milliseconds).
//
//   forward         rows m = (n, oh, ow)   cols co   reduce k = (ci, kh, kw)   A = x patch,  B = w[co, k]
//   backward-input  rows m = (n, ih, iw)   cols ci   reduce k = (co, kh, kw)   A = dy taps,  B = w[co, ci, kh, kw]
//   backward-weight rows k = (ci, kh, kw)  cols co   reduce l = (n, oh, ow)    A = x patch,  B = dy[n, co, oh, ow]
//
// Backward-input works by stride phase (PHASE_WGSL): a workgroup's input pixels share (ih mod sh,
// iw mod sw), so the taps that land on an output are the same for all of them and the others are
// skipped: no work is wasted at stride > 1.
//
// Backward-weight reduces over the whole batch, which is long (N*OH*OW) while its output is small
// (Cout x Cin*KH*KW): the reduction is split into `splits` contiguous ranges of chunks, each written to
// its own slice of a partials buffer [splits, Cout, K]; splitSumKernel then adds the slices in index
// order. Every sum has a fixed order: the bits depend only on the shapes, the implementation and the
// device.
//
// DIRECT (for software adapters such as lavapipe): register-blocked kernels without workgroup memory or
// barriers whose weight (or dy) reads are uniform across the workgroup: shaders/conv-direct.ts.
import { uniformStruct } from './uniform.js';
import { epilogueSuffix, FAR, forwardEpilogueWgsl, indentWgsl, PHASE_WGSL, tapTableEntryWgsl } from './conv-fragments.js';

// Fragments shared with the direct and sparse kernels, from where importers have always found them.
export { FAR, PHASE_WGSL } from './conv-fragments.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';

export interface GemmTile {
  /** Rows per workgroup tile (multiple of TM; T must be a multiple of BM and of BK). */
  bm: number;
  bn: number;
  tm: number;
  tn: number;
  /** Reduction chunk. */
  bk: number;
}

export function tileThreads(t: GemmTile): number {
  return (t.bm / t.tm) * (t.bn / t.tn);
}

/** The conv kernels' uniform struct: the WGSL text and the host packer (ops/conv.ts convParams) from one schema. */
export const CONV_UNIFORM = uniformStruct([
  ['n', 'u32'], ['cin', 'u32'], ['h', 'u32'], ['w', 'u32'],
  ['cout', 'u32'], ['oh', 'u32'], ['ow', 'u32'], ['sh', 'u32'],
  ['sw', 'u32'], ['dh', 'u32'], ['dw', 'u32'], ['pt', 'i32'],
  ['pl', 'i32'], ['rows', 'u32'], ['red', 'u32'], ['cps', 'u32'],
  ['nchunks', 'u32'], ['kh', 'u32'], ['kw', 'u32'], ['la', 'u32'],
  ['lb', 'u32'],
] as const);
export const CONV_STRUCT = CONV_UNIFORM.wgsl;

/**
 * la / lb: gather loads per thread per chunk for A and B (BK*BM/T and BK*BN/T). They are uniforms, not
 * constants, on purpose: with constant trip counts LLVM unrolls the gather loops and lavapipe then
 * spends many seconds compiling each pipeline; a real GPU loses little, the multiply-accumulate loop
 * (constant, unrolled) is where the time goes.
 */
export function gatherLoads(t: GemmTile): [number, number] {
  const T = tileThreads(t);
  return [(t.bk * t.bm) / T, (t.bk * t.bn) / T];
}


function checkTile(t: GemmTile, name: string): void {
  const T = tileThreads(t);
  if (t.bm % t.tm || t.bn % t.tn || T % t.bm || T % t.bk || (t.bk * t.bn) % T || (t.bk * t.bm) % T) {
    throw new Error(`${name}: bad tile ${JSON.stringify(t)}`);
  }
}

function tileConsts(t: GemmTile): string {
  return `const BM = ${t.bm}u;
const BN = ${t.bn}u;
const BK = ${t.bk}u;
const TM = ${t.tm}u;
const TN = ${t.tn}u;
const SM = ${t.bm / t.tm}u;
const SN = ${t.bn / t.tn}u;
const T = ${tileThreads(t)}u;
// Row strides padded by one word: the gathers store down columns (consecutive threads, consecutive
// rows), which with a power-of-two stride would all hit one memory bank on a GPU.
const AS = ${t.bm + 1}u;
const BS = ${t.bn + 1}u;
var<workgroup> As: array<f32, ${t.bk * (t.bm + 1)}>;
var<workgroup> Bs: array<f32, ${t.bk * (t.bn + 1)}>;`;
}

/** The chunk's multiply-accumulate: As [BK][AS], Bs [BK][BS] into acc[TM*TN]. */
function mac(t: GemmTile): string {
  const lines: string[] = [];
  lines.push('    for (var kk = 0u; kk < BK; kk++) {');
  for (let i = 0; i < t.tm; i++) lines.push(`      let a${i} = As[kk * AS + ty + ${i * (t.bm / t.tm)}u];`);
  // With one column group (SN = 1) every thread reads the same B values: a uniform index, which
  // lavapipe turns into one scalar load and a broadcast instead of a per-lane gather.
  const tx = t.bn === t.tn ? '' : 'tx + ';
  for (let j = 0; j < t.tn; j++) lines.push(`      let b${j} = Bs[kk * BS + ${tx}${j * (t.bn / t.tn)}u];`);
  for (let i = 0; i < t.tm; i++)
    for (let j = 0; j < t.tn; j++) lines.push(`      acc[${i * t.tn + j}] = fma(a${i}, b${j}, acc[${i * t.tn + j}]);`);
  lines.push('    }');
  return lines.join('\n');
}

function tileKey(t: GemmTile): string {
  return `${t.bm}x${t.bn}_${t.tm}x${t.tn}_k${t.bk}`;
}

/**
 * Tap tables. The reduction index k of a chunk decomposes into (channel, ky, kx) once per chunk, by
 * BK threads, into workgroup memory; the gathers then cost adds and one bounds test per element.
 * The tables are double-buffered: the next chunk's is written between the current chunk's two
 * barriers, so they add no barrier of their own.
 */
const TAP_TABLES = `var<workgroup> tOff: array<i32, 2u * BK>;
var<workgroup> tDy: array<i32, 2u * BK>;
var<workgroup> tDx: array<i32, 2u * BK>;`;

/**
 * conv2d forward. Bindings: x, w, [bias], y, params. Grid: (row tiles folded over x/y by grid1d,
 * column tiles on z).
 */
export function conv2dForwardKernel(bias: boolean, t: GemmTile, relu = false): Kernel {
  const name = `conv2d_fwd${epilogueSuffix(bias, relu)}_${tileKey(t)}`;
  checkTile(t, name);
  const code = `// ${name}
${CONV_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
${bias ? '@group(0) @binding(2) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(${bias ? 3 : 2}) var<storage, read_write> y: array<f32>;
@group(0) @binding(${bias ? 4 : 3}) var<uniform> p: P;
${tileConsts(t)}
${TAP_TABLES}

/** Table slot s <- tap k: input offset ci*H*W + ky*dh*W + kx*dw and the row/column shifts. */
fn fillTaps(k: u32, s: u32) {
${tapTableEntryWgsl('p.red', 'dy', 'dx')}
  tOff[s] = off;
  tDy[s] = dy;
  tDx[s] = dx;
}

@compute @workgroup_size(${tileThreads(t)})
fn main(${GRID_BUILTINS_WGSL}) {
  let m0 = (wid.x + wid.y * nwg.x) * BM;
  if (m0 >= p.rows) { return; }
  let c0 = wid.z * BN;
  let P_ = p.oh * p.ow;
  // The A row this thread gathers is the same in every chunk (T is a multiple of BM).
  let am = lid % BM;
  let ak = lid / BM;
  let mg = m0 + am;
  var ih0 = ${FAR};
  var iw0 = 0i;
  var xb = 0i;
  if (mg < p.rows) {
    let nb = mg / P_;
    let pp = mg - nb * P_;
    let oh = pp / p.ow;
    let ow = pp - oh * p.ow;
    ih0 = i32(oh * p.sh) - p.pt;
    iw0 = i32(ow * p.sw) - p.pl;
    xb = i32(nb * p.cin * p.h * p.w) + ih0 * i32(p.w) + iw0;
  }
  let ty = lid % SM;
  let tx = lid / SM;
  if (lid < BK) { fillTaps(lid, lid); }
  workgroupBarrier();
  var buf = 0u;
  var acc: array<f32, ${t.tm * t.tn}>;
  for (var k0 = 0u; k0 < p.red; k0 += BK) {
    for (var e = 0u; e < p.la; e++) {
      let kl = ak + e * (T / BM);
      let s = buf + kl;
      let ih = ih0 + tDy[s];
      let iw = iw0 + tDx[s];
      var v = 0.0;
      if (u32(ih) < p.h && u32(iw) < p.w) { v = x[u32(xb + tOff[s])]; }
      As[kl * AS + am] = v;
    }
    for (var e = 0u; e < p.lb; e++) {
      let idx = lid + e * T;
      let kl = idx % BK;
      let nl = idx / BK;
      let k = k0 + kl;
      let co = c0 + nl;
      var v = 0.0;
      if (k < p.red && co < p.cout) { v = wt[co * p.red + k]; }
      Bs[kl * BS + nl] = v;
    }
    workgroupBarrier();
    if (lid < BK) { fillTaps(k0 + BK + lid, (BK - buf) + lid); }
${mac(t)}
    workgroupBarrier();
    buf = BK - buf;
  }
  for (var i = 0u; i < TM; i++) {
    let m = m0 + ty + i * SM;
    if (m >= p.rows) { continue; }
    let nb = m / P_;
    let pp = m - nb * P_;
    for (var j = 0u; j < TN; j++) {
      let co = c0 + tx + j * SN;
      if (co < p.cout) {
        y[(nb * p.cout + co) * P_ + pp] = ${forwardEpilogueWgsl('acc[i * TN + j]', bias, relu)};
      }
    }
  }
}
`;
  return { name, code, bindings: bias ? ['read', 'read', 'read', 'write', 'uniform'] : ['read', 'read', 'write', 'uniform'] };
}


/**
 * conv2d backward with respect to the input, by stride phase (see PHASE_WGSL): a workgroup's rows are
 * pixels of one phase, its reduction runs over the taps valid for that phase only (the valid ky form
 * an arithmetic progression ky0 + j*sty, likewise kx), so no multiply-add is spent on taps that
 * do not land on an output. Bindings: dy, w, dx, params. Grid: (N*ceil(H/sh)*ceil(W/sw) / BM over
 * x/y, ceil(Cin / BN) * sh * sw on z).
 */
export function conv2dBackwardInputKernel(t: GemmTile): Kernel {
  const name = `conv2d_bwd_input_${tileKey(t)}`;
  checkTile(t, name);
  const code = `// ${name}
${CONV_STRUCT}
@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
${tileConsts(t)}
var<workgroup> tOff: array<u32, 2u * BK>;
var<workgroup> tCy: array<i32, 2u * BK>;
var<workgroup> tCx: array<i32, 2u * BK>;
var<workgroup> tW: array<u32, 2u * BK>;

/** The valid taps of a phase along one axis: count, first, step (r = phase, pad, dilation, stride). */
fn validTaps(r: u32, pad: i32, k: u32, d: u32, s: u32) -> vec3<u32> {
  var nv = 0u;
  var k0 = 0u;
  var st = 1u;
  for (var kk = 0u; kk < k; kk++) {
    if ((i32(r) + pad - i32(kk * d)) % i32(s) == 0) {
      if (nv == 0u) { k0 = kk; } else if (nv == 1u) { st = kk - k0; }
      nv++;
    }
  }
  return vec3<u32>(nv, k0, st);
}

/**
 * Table slot s <- the phase's k-th valid tap (co, ky, kx): dy plane offset co*OH*OW, output row and
 * column shifts cy = (ry + pt - ky*dh) / sh (exact), cx likewise, weight offset.
 */
fn fillTaps(k: u32, s: u32, red: u32, vy: vec3<u32>, vx: vec3<u32>, ry: u32, rx: u32) {
  var off = 0u;
  var cy = ${FAR};
  var cx = 0i;
  var wo = 0u;
  if (k < red) {
    let nv = vy.x * vx.x;
    let co = k / nv;
    let r = k - co * nv;
    let jy = r / vx.x;
    let jx = r - jy * vx.x;
    let ky = vy.y + jy * vy.z;
    let kx = vx.y + jx * vx.z;
    cy = (i32(ry) + p.pt - i32(ky * p.dh)) / i32(p.sh);
    cx = (i32(rx) + p.pl - i32(kx * p.dw)) / i32(p.sw);
    off = co * p.oh * p.ow;
    wo = (co * p.cin * p.kh + ky) * p.kw + kx;
  }
  tOff[s] = off;
  tCy[s] = cy;
  tCx[s] = cx;
  tW[s] = wo;
}

@compute @workgroup_size(${tileThreads(t)})
fn main(${GRID_BUILTINS_WGSL}) {
${PHASE_WGSL}
  let m0 = (wid.x + wid.y * nwg.x) * BM;
  if (m0 >= rowsPh) { return; }
  let c0 = cb * BN;
  let HW = p.h * p.w;
  let khw = p.kh * p.kw;
  let vy = validTaps(ry, p.pt, p.kh, p.dh, p.sh);
  let vx = validTaps(rx, p.pl, p.kw, p.dw, p.sw);
  let red = p.cout * vy.x * vx.x;
  let am = lid % BM;
  let ak = lid / BM;
  let mg = m0 + am;
  var ra = ${FAR};
  var rb = 0i;
  var db = 0u;
  if (mg < rowsPh) {
    let nb = mg / (ha * wa);
    let r = mg - nb * ha * wa;
    let a = r / wa;
    ra = i32(a);
    rb = i32(r - a * wa);
    db = nb * p.cout * p.oh * p.ow;
  }
  let ty = lid % SM;
  let tx = lid / SM;
  if (lid < BK) { fillTaps(lid, lid, red, vy, vx, ry, rx); }
  workgroupBarrier();
  var buf = 0u;
  var acc: array<f32, ${t.tm * t.tn}>;
  for (var k0 = 0u; k0 < red; k0 += BK) {
    for (var e = 0u; e < p.la; e++) {
      let kl = ak + e * (T / BM);
      let s = buf + kl;
      let oh = ra + tCy[s];
      let ow = rb + tCx[s];
      var v = 0.0;
      if (u32(oh) < p.oh && u32(ow) < p.ow) { v = dy[db + tOff[s] + u32(oh) * p.ow + u32(ow)]; }
      As[kl * AS + am] = v;
    }
    for (var e = 0u; e < p.lb; e++) {
      let idx = lid + e * T;
      let kl = idx % BK;
      let nl = idx / BK;
      let ci = c0 + nl;
      var v = 0.0;
      if (k0 + kl < red && ci < p.cin) { v = wt[tW[buf + kl] + ci * khw]; }
      Bs[kl * BS + nl] = v;
    }
    workgroupBarrier();
    if (lid < BK) { fillTaps(k0 + BK + lid, (BK - buf) + lid, red, vy, vx, ry, rx); }
${mac(t)}
    workgroupBarrier();
    buf = BK - buf;
  }
  for (var i = 0u; i < TM; i++) {
    let m = m0 + ty + i * SM;
    if (m >= rowsPh) { continue; }
    let nb = m / (ha * wa);
    let r = m - nb * ha * wa;
    let a = r / wa;
    let b = r - a * wa;
    let xo = nb * p.cin * HW + (ry + a * p.sh) * p.w + rx + b * p.sw;
    for (var j = 0u; j < TN; j++) {
      let ci = c0 + tx + j * SN;
      if (ci < p.cin) {
        dx[xo + ci * HW] = acc[i * TN + j];
      }
    }
  }
}
`;
  return { name, code, bindings: ['read', 'read', 'write', 'uniform'] };
}

/**
 * conv2d backward with respect to the weight, one split of the batch reduction per z index.
 * Bindings: dy, x, out ([splits, Cout, K]), params (rows = K, red = N*OH*OW, cps = chunks per split,
 * nchunks = chunks in all). Grid: (row tiles over K, column tiles over Cout, splits).
 */
export function conv2dBackwardWeightKernel(t: GemmTile): Kernel {
  const name = `conv2d_bwd_weight_${tileKey(t)}`;
  checkTile(t, name);
  const code = `// ${name}
${CONV_STRUCT}
@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
${tileConsts(t)}
// The workgroup's rows are fixed taps k = (ci, ky, kx): one table, filled once.
var<workgroup> tOff: array<i32, BM>;
var<workgroup> tDy: array<i32, BM>;
var<workgroup> tDx: array<i32, BM>;

@compute @workgroup_size(${tileThreads(t)})
fn main(${GRID_BUILTINS_WGSL}) {
  let r0 = wid.x * BM;
  let c0 = wid.y * BN;
  let split = wid.z;
  let P_ = p.oh * p.ow;
  let HW = p.h * p.w;
  if (lid < BM) {
    let k = r0 + lid;
${indentWgsl(tapTableEntryWgsl('p.rows', 'dy_', 'dx_'), 4)}
    tOff[lid] = off;
    tDy[lid] = dy_;
    tDx[lid] = dx_;
  }
  workgroupBarrier();
  // The reduction index this thread gathers within a chunk is fixed (T is a multiple of BK).
  let ll = lid % BK;
  let e0 = lid / BK;
  let ty = lid % SM;
  let tx = lid / SM;
  var acc: array<f32, ${t.tm * t.tn}>;
  let cBeg = split * p.cps;
  let cEnd = min(cBeg + p.cps, p.nchunks);
  for (var c = cBeg; c < cEnd; c++) {
    let l = c * BK + ll;
    var ih0 = ${FAR};
    var iw0 = 0i;
    var xb = 0i;
    var db = 0u;
    let lok = l < p.red;
    if (lok) {
      let nb = l / P_;
      let pp = l - nb * P_;
      let oh = pp / p.ow;
      let ow = pp - oh * p.ow;
      ih0 = i32(oh * p.sh) - p.pt;
      iw0 = i32(ow * p.sw) - p.pl;
      xb = i32(nb * p.cin * HW) + ih0 * i32(p.w) + iw0;
      db = nb * p.cout * P_ + pp;
    }
    for (var e = 0u; e < p.la; e++) {
      let kl = e0 + e * (T / BK);
      let ih = ih0 + tDy[kl];
      let iw = iw0 + tDx[kl];
      var v = 0.0;
      if (u32(ih) < p.h && u32(iw) < p.w) { v = x[u32(xb + tOff[kl])]; }
      As[ll * AS + kl] = v;
    }
    for (var e = 0u; e < p.lb; e++) {
      let cl = e0 + e * (T / BK);
      let co = c0 + cl;
      var v = 0.0;
      if (lok && co < p.cout) { v = dy[db + co * P_]; }
      Bs[ll * BS + cl] = v;
    }
    workgroupBarrier();
${mac(t)}
    workgroupBarrier();
  }
  let ob = split * p.cout * p.rows;
  for (var i = 0u; i < TM; i++) {
    let k = r0 + ty + i * SM;
    if (k >= p.rows) { continue; }
    for (var j = 0u; j < TN; j++) {
      let co = c0 + tx + j * SN;
      if (co < p.cout) {
        out[ob + co * p.rows + k] = acc[i * TN + j];
      }
    }
  }
}
`;
  return { name, code, bindings: ['read', 'read', 'write', 'uniform'] };
}

export const SPLIT_SUM_WG = 256;
/** splitSumKernel's uniforms: n (elements per slice), splits. Also the sparse gather/scatter kernels'. */
export const SPLIT_SUM_UNIFORM = uniformStruct([['n', 'u32'], ['splits', 'u32']] as const);

/** out[i] = sum over s = 0..splits-1, in that order, of parts[s * n + i]. Bindings: parts, out, params. */
export function splitSumKernel(): Kernel {
  const code = `// split_sum
${SPLIT_SUM_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(${SPLIT_SUM_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(SPLIT_SUM_WG)};
  if (i >= p.n) { return; }
  var s = 0.0;
  for (var k = 0u; k < p.splits; k++) { s += parts[k * p.n + i]; }
  out[i] = s;
}
`;
  return { name: 'split_sum', code, bindings: ['read', 'write', 'uniform'] };
}

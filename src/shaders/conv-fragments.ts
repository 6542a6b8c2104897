// WGSL fragments shared by the convolution kernels (dense tiled in conv.ts, direct in conv-direct.ts,
// sparse in sparse-conv.ts): how a thread decodes the rows it owns (output pixels, input pixels of one
// stride phase, or taps) and a tap index, and the inner multiply-accumulate walks and stores that the
// direct and sparse kernels have in common. Each is the text of a block of a kernel's `main`, written
// once so the dense and sparse kernels cannot drift apart; the kernels name the uniforms p.*, the
// constants WG/TM/BN and the locals each fragment's comment lists.

/** Sentinel row offset that makes every tap of an out-of-range row or column fail the bounds test. */
export const FAR = '-536870912i';

/**
 * Stride phases for backward-input. Input row ih receives from tap ky exactly when
 * (ih + pt - ky*dh) is a multiple of sh, which depends only on ih mod sh. Rows (and columns) are
 * therefore processed by phase: a workgroup covers pixels ih = ry + sh*a, iw = rx + sw*b of one
 * phase (ry, rx), so which taps contribute is uniform, the others are skipped outright (no wasted
 * multiply-adds at stride > 1), and the source output row is a + (ry + pt - ky*dh) / sh: an exact
 * division of uniform values. PHASE_WGSL defines, from wid.z = column block * sh*sw + phase:
 * cb (column block), ry, rx, ha, wa (phase rows/columns) and rowsPh = n*ha*wa.
 */
export const PHASE_WGSL = `  let nph = p.sh * p.sw;
  let ph = wid.z % nph;
  let cb = wid.z / nph;
  let ry = ph / p.sw;
  let rx = ph - ry * p.sw;
  let ha = select(0u, (p.h - ry + p.sh - 1u) / p.sh, ry < p.h);
  let wa = select(0u, (p.w - rx + p.sw - 1u) / p.sw, rx < p.w);
  let rowsPh = p.n * ha * wa;`;

/** Re-indents a fragment written at two spaces to `spaces` (the nesting of the kernel that uses it). */
export function indentWgsl(text: string, spaces: number): string {
  const pad = ' '.repeat(Math.max(0, spaces - 2));
  return text.replace(/^/gm, pad);
}

/** A register-blocked kernel's lane constants: WG threads, TM rows (or taps) per thread, BN channels. */
export function laneConstsWgsl(t: { wg: number; tm: number; bn: number }): string {
  return `const WG = ${t.wg}u;
const TM = ${t.tm}u;
const BN = ${t.bn}u;`;
}

/**
 * The output pixels a thread owns in a forward kernel: TM rows of N*OH*OW strided by WG from `mb`
 * (its first, from the folded x/y workgroup id); per row the top-left input coordinate of its window
 * (ih0, iw0; FAR past the end) and the batch offset into x (xb). Defines P_ (OH*OW) and HW (H*W).
 */
export function outputRowsWgsl(tm: number): string {
  return `  let P_ = p.oh * p.ow;
  let HW = p.h * p.w;
  let mb = (wid.x + wid.y * nwg.x) * WG * TM + lid;
  var ih0: array<i32, ${tm}>;
  var iw0: array<i32, ${tm}>;
  var xb: array<u32, ${tm}>;
  for (var i = 0u; i < TM; i++) {
    let m = mb + i * WG;
    ih0[i] = ${FAR};
    if (m < p.rows) {
      let nb = m / P_;
      let pp = m - nb * P_;
      let oh = pp / p.ow;
      let ow = pp - oh * p.ow;
      ih0[i] = i32(oh * p.sh) - p.pt;
      iw0[i] = i32(ow * p.sw) - p.pl;
      xb[i] = nb * p.cin * HW;
    }
  }`;
}

/**
 * One tap of a forward kernel: for each of the thread's TM rows, one x load at the tap's shift (dy, dx)
 * in input plane `plane` (an offset expression), BN FMAs with the tap's weights wv into acc.
 */
export function forwardTapWgsl(plane: string): string {
  return `  for (var i = 0u; i < TM; i++) {
    let ih = ih0[i] + dy;
    let iw = iw0[i] + dx;
    var v = 0.0;
    if (u32(ih) < p.h && u32(iw) < p.w) { v = x[xb[i] + ${plane} + u32(ih) * p.w + u32(iw)]; }
    for (var j = 0u; j < BN; j++) { acc[i * BN + j] = fma(v, wv[j], acc[i * BN + j]); }
  }`;
}

/**
 * A forward kernel's output value from its accumulator expression `acc`: + bias[`co`] where there is a
 * bias, then max(., 0) where a ReLU rides in the store (fused.conv-relu). The sum is rounded to f32
 * before the max, as the unfused conv's store and the ReLU kernel's load do, so both give the same bits.
 */
export function forwardEpilogueWgsl(acc: string, bias: boolean, relu: boolean, co = 'co'): string {
  const v = bias ? `${acc} + bias[${co}]` : acc;
  return relu ? `max(${v}, 0.0)` : v;
}

/** Kernel name suffix of the forward epilogue: different kernels must not share a pipeline cache key. */
export function epilogueSuffix(bias: boolean, relu: boolean): string {
  return `${bias ? '_bias' : ''}${relu ? '_relu' : ''}`;
}

/** A forward kernel's store: acc[i * BN + j] (+ bias, then ReLU) to y for the thread's rows and channels c0... */
export function forwardStoreWgsl(bias: boolean, relu = false): string {
  return `  for (var i = 0u; i < TM; i++) {
    let m = mb + i * WG;
    if (m >= p.rows) { continue; }
    let nb = m / P_;
    let pp = m - nb * P_;
    for (var j = 0u; j < BN; j++) {
      let co = c0 + j;
      if (co < p.cout) { y[(nb * p.cout + co) * P_ + pp] = ${forwardEpilogueWgsl('acc[i * BN + j]', bias, relu)}; }
    }
  }`;
}

/**
 * An input-gradient kernel's start: the stride phase (PHASE_WGSL), the thread's first row `mb` (a
 * workgroup past the phase's rows returns), P_ (OH*OW) and HW (H*W).
 */
export const PHASE_PROLOGUE_WGSL = `${PHASE_WGSL}
  let mb = (wid.x + wid.y * nwg.x) * WG * TM + lid;
  if ((wid.x + wid.y * nwg.x) * WG * TM >= rowsPh) { return; }
  let P_ = p.oh * p.ow;
  let HW = p.h * p.w;`;

/**
 * The rows (input pixels of one stride phase, PHASE_WGSL) a thread owns in the input-gradient kernels,
 * dense and sparse alike: TM rows strided by WG from `mb`; per row its phase coordinates (ra, rb; FAR
 * past the end), the batch offset into dy (db) and the pixel's offset into x (xo). Needs P_ and HW.
 */
export function phaseRowsWgsl(tm: number): string {
  return `  var ra: array<i32, ${tm}>;
  var rb: array<i32, ${tm}>;
  var db: array<u32, ${tm}>;
  var xo: array<u32, ${tm}>;
  for (var i = 0u; i < TM; i++) {
    let m = mb + i * WG;
    ra[i] = ${FAR};
    if (m < rowsPh) {
      let nb = m / (ha * wa);
      let r = m - nb * ha * wa;
      let a = r / wa;
      let b = r - a * wa;
      ra[i] = i32(a);
      rb[i] = i32(b);
      db[i] = nb * p.cout * P_;
      xo[i] = nb * p.cin * HW + (ry + a * p.sh) * p.w + rx + b * p.sw;
    }
  }`;
}

/**
 * One tap of an input-gradient kernel: for each of the thread's TM phase rows, one dy load at the
 * output shift (cy, cx) in dy plane `plane` (an offset expression), BN FMAs with the weights wv.
 */
export function inputGradTapWgsl(plane: string): string {
  return `  for (var i = 0u; i < TM; i++) {
    let oh = ra[i] + cy;
    let ow = rb[i] + cx;
    var v = 0.0;
    if (u32(oh) < p.oh && u32(ow) < p.ow) { v = dy[db[i] + ${plane} + u32(oh) * p.ow + u32(ow)]; }
    for (var j = 0u; j < BN; j++) { acc[i * BN + j] = fma(v, wv[j], acc[i * BN + j]); }
  }`;
}

/** An input-gradient kernel's store: acc[i * BN + j] to dx for the thread's phase rows and channels c0... */
export const INPUT_GRAD_STORE_WGSL = `  for (var i = 0u; i < TM; i++) {
    if (mb + i * WG >= rowsPh) { continue; }
    for (var j = 0u; j < BN; j++) {
      let ci = c0 + j;
      if (ci < p.cin) { dx[xo[i] + ci * HW] = acc[i * BN + j]; }
    }
  }`;

/** A dense tap index k of Cin*KH*KW decoded to (ci, ky, kx). Needs khw = KH*KW. */
export function denseTapWgsl(k: string): string {
  return `  let ci = ${k} / khw;
  let r = ${k} - ci * khw;
  let ky = r / p.kw;
  let kx = r - ky * p.kw;`;
}

/**
 * A tiled kernel's tap-table entry for tap k (valid below `limit`): the x offset `off` of the tap's
 * plane and shift, and the shifts `dyName`, `dxName` (FAR for a tap past the end).
 */
export function tapTableEntryWgsl(limit: string, dyName: string, dxName: string): string {
  return `  var off = 0i;
  var ${dyName} = ${FAR};
  var ${dxName} = 0i;
  if (k < ${limit}) {
    let khw = p.kh * p.kw;
${indentWgsl(denseTapWgsl('k'), 4)}
    ${dyName} = i32(ky * p.dh);
    ${dxName} = i32(kx * p.dw);
    off = i32(ci * p.h * p.w) + ${dyName} * i32(p.w) + ${dxName};
  }`;
}

/** A packed sparse tap taps[e] (c << 16 | ky << 8 | kx, shaders/sparse-conv.ts) decoded to (tc, ky, kx). */
export const PACKED_TAP_WGSL = `  let t = taps[e];
  let tc = t >> 16u;
  let ky = (t >> 8u) & 255u;
  let kx = t & 255u;`;

/** Slot i of a weight-gradient kernel's tap table: the tap's row/column shift and its x offset in plane `plane`. */
export function tapShiftWgsl(plane: string): string {
  return `  tdy[i] = i32(ky * p.dh);
  tdx[i] = i32(kx * p.dw);
  toff[i] = i32(${plane} * HW) + tdy[i] * i32(p.w) + tdx[i];`;
}

/**
 * A weight-gradient kernel's tap table: for its `n` taps (slots i < `count`, a WGSL constant), slot i
 * holds tap `slot` = `at` (an expression of i) when that is below `limit`, decoded by `decode` (a
 * fragment defining ky, kx and the plane `plane`), as the shifts tdy, tdx and the x offset toff
 * (tapShiftWgsl); FAR rows past the end. `zero` also clears tdx and toff of such slots.
 */
export function tapTableWgsl(o: { n: number; count: string; slot: string; at: string; limit: string; decode: string; plane: string; zero?: boolean }): string {
  return `  var toff: array<i32, ${o.n}>;
  var tdy: array<i32, ${o.n}>;
  var tdx: array<i32, ${o.n}>;
  for (var i = 0u; i < ${o.count}; i++) {
    let ${o.slot} = ${o.at};
    tdy[i] = ${FAR};${o.zero ? '\n    tdx[i] = 0i;\n    toff[i] = 0i;' : ''}
    if (${o.slot} < ${o.limit}) {
${indentWgsl(o.decode, 6)}
${indentWgsl(tapShiftWgsl(o.plane), 6)}
    }
  }`;
}

/**
 * The weight gradient's reduction over rows l in [lBeg, lEnd) of N*OH*OW, walked with counters (no
 * division per row): per row BN dy loads (channels c0..) and, for each of the `taps` taps in
 * toff/tdy/tdx, one x load and BN FMAs into acc[tap * BN + j]. Dense direct and sparse kernels alike.
 */
export function rowWalkWgsl(taps: string, bn: number): string {
  return `  var nb = lBeg / P_;
  let pp0 = lBeg - nb * P_;
  var oh = pp0 / p.ow;
  var ow = pp0 - oh * p.ow;
  for (var l = lBeg; l < lEnd; l++) {
    let ihb = i32(oh * p.sh) - p.pt;
    let iwb = i32(ow * p.sw) - p.pl;
    let xb = i32(nb * p.cin * HW) + ihb * i32(p.w) + iwb;
    let dyb = nb * p.cout * P_ + oh * p.ow + ow;
    var dv: array<f32, ${bn}>;
    for (var j = 0u; j < BN; j++) { dv[j] = dy[dyb + min(c0 + j, clast) * P_]; }
    for (var i = 0u; i < ${taps}; i++) {
      let ih = ihb + tdy[i];
      let iw = iwb + tdx[i];
      var v = 0.0;
      if (u32(ih) < p.h && u32(iw) < p.w) { v = x[u32(xb + toff[i])]; }
      for (var j = 0u; j < BN; j++) { acc[i * BN + j] = fma(v, dv[j], acc[i * BN + j]); }
    }
    ow++;
    if (ow == p.ow) {
      ow = 0u;
      oh++;
      if (oh == p.oh) { oh = 0u; nb++; }
    }
  }`;
}

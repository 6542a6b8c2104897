// Launchers of the row-strip conv kernels (src/shaders/conv-strip.ts): stride-1 forward and input
// gradient on software adapters. Registered with the planner as the 'strip' candidates of conv.fwd
// and conv.dgrad; ops/conv.ts hands a geometry here when the planner picks one.
import {
  convStripKernel,
  convStripPackKernel,
  convStripWgradKernel,
  stripKey,
  STRIP_PACK_UNIFORM,
  STRIP_PACK_WG,
  STRIP_UNIFORM,
  STRIP_WGRAD_UNIFORM,
  type StripTile,
} from '../../shaders/conv-strip.js';
import { grid1d, gridFor } from '../../shaders/kernel.js';
import { cachedKernel, registerCandidates, type Candidate, type Plan } from '../plan.js';
import { queue } from '../queue.js';
import type { DispatchTag } from '../trace.js';

/** Profile tag of a launch, built only while profiling. */
type Tag = () => DispatchTag;
import { empty, type Tensor } from '../tensor.js';
import type { Conv2dGeometry } from './conv-geometry.js';
import { dispatchSplitSum, splitK, WGRAD_SOFT_TARGET_GROUPS } from './split-sum.js';

/**
 * Register blocks: wg threads x px pixels x bn channels. Measured on a 2-core lavapipe
 * (bench/conv-layers.ts, ms per pass): on Meso-4's 5x5 layers 8 pixels x 4 channels is the fastest
 * and 8 channels runs 1.3-1.5x slower (the wider row pieces and 25 taps crowd out the accumulators);
 * on CNN-5's 3x3 layers 8 x 8 takes 15-20% less time than 8 x 4, and 4 x 8 is the fastest on its
 * 4-wide rows. The 16-pixel blocks (one or two pieces per row of 16-32 pixels) win on some 3x3
 * layers; they are tuning candidates only. The 16- and 8-thread blocks serve small images. The
 * 2-channel blocks serve passes with 1-2 output channels (compacted filter-pruned layers; an input
 * gradient's output channels are the layer's inputs): CPU ms at batch 32, 4 -> 2 channels, forward
 * 8->2 5x5 32 px 7.6-13 -> 3.9, 3->2 3x3 64 px 6.3 -> 4.3, 2->2 5x5 32 px 1.3 -> 0.85; input
 * gradient 2->8 5x5 32 px 7.3 -> 4.4-4.9.
 */
export const STRIP_TILES: readonly StripTile[] = [
  { wg: 64, px: 8, bn: 4 },
  { wg: 16, px: 8, bn: 4 },
  { wg: 64, px: 4, bn: 4 },
  { wg: 8, px: 4, bn: 4 },
  { wg: 16, px: 8, bn: 8 },
  { wg: 16, px: 4, bn: 8 },
  { wg: 16, px: 16, bn: 4 },
  { wg: 16, px: 16, bn: 8 },
  { wg: 64, px: 8, bn: 2 },
  { wg: 16, px: 8, bn: 2 },
  { wg: 64, px: 4, bn: 2 },
];

/** Stride 1, no dilation, padding smaller than the kernel (so the input gradient's padding is >= 0). */
function stripShape(g: Conv2dGeometry): boolean {
  return g.sh === 1 && g.sw === 1 && g.dh === 1 && g.dw === 1 && g.pt < g.kh && g.pb < g.kh && g.pl < g.kw && g.pr < g.kw;
}

/** Forward: the input rows are whole vec4s. */
export function stripSuitsForward(g: Conv2dGeometry): boolean {
  return stripShape(g) && g.w % 4 === 0;
}

/** Input gradient: a correlation over dy, whose rows (OW wide) must be whole vec4s. */
export function stripSuitsBackwardInput(g: Conv2dGeometry): boolean {
  return stripShape(g) && g.ow % 4 === 0;
}

/** Weight gradient: both x rows (W) and dy rows (OW) are whole vec4s. */
export function stripSuitsBackwardWeight(g: Conv2dGeometry, px = 4): boolean {
  return stripShape(g) && g.w % 4 === 0 && g.ow % px === 0;
}

/**
 * Weight-gradient blocks: wg threads (one (ci, ky) pair each) x px pixels per step x bn channels. Four
 * channels (KW*4 vec4 accumulators) measured 1.3-1.8x faster than eight on Meso-4's layers. Two
 * channels serve layers with one or two filters (a compacted filter-pruned layer): on a 2-core
 * lavapipe, CPU ms per pass at batch 32, 4 -> 2 channels: 3->2 3x3 64 px 9.9 -> 6.8, 8->2 5x5 32 px
 * 13.2 -> 4.6, 2->2 5x5 32 px 3.6 -> 1.5 (the four-channel block computes two padded channels, and
 * its 20 vec4 accumulators of a 5-wide kernel crowd the registers).
 */
export const STRIP_WGRAD_TILES: readonly StripTile[] = [
  { wg: 8, px: 4, bn: 4 },
  { wg: 16, px: 4, bn: 4 },
  { wg: 8, px: 8, bn: 4 },
  { wg: 8, px: 4, bn: 8 },
  { wg: 8, px: 4, bn: 2 },
  { wg: 8, px: 8, bn: 2 },
];

/** A strip workgroup should get at least this many row tiles' worth of threads (little waste at the edge). */
const STRIP_MIN_FILL = 4;

/**
 * The static strip block on software adapters. Weight gradient: 8 threads x 4 pixels x 4 channels, 2
 * for layers of at most 2 filters. Forward / input gradient:
 * 8 pixels per thread when the output rows hold whole 8-pixel pieces or are at least 16 wide (else 4,
 * so a 4-wide row is not padded to 8; on 8-wide rows 8 beat 4 for Meso-4 and CNN-5); 8 channels for
 * kernels up to 3 wide, else 4 (measurements at STRIP_TILES), 2 for at most 2 output channels; and
 * the widest workgroup the layer's threads fill STRIP_MIN_FILL times over.
 */
export function stripDefault<C extends Candidate<Conv2dGeometry>>(family: string, g: Conv2dGeometry, cands: readonly C[]): C {
  const of = (pred: (t: StripTile) => boolean) => cands.filter((c) => pred(c.params as unknown as StripTile));
  if (family === 'conv.wgrad') return of((t) => t.wg === 8 && t.px === 4 && t.bn === (g.cout <= 2 ? 2 : 4))[0] ?? cands[0];
  const [oh, ow, outCh] = family === 'conv.dgrad' ? [g.h, g.w, g.cin] : [g.oh, g.ow, g.cout];
  const px = ow >= 16 || ow % 8 === 0 ? 8 : 4;
  const bn = outCh <= 2 ? 2 : g.kw <= 3 && outCh >= 8 ? 8 : 4;
  const fits = of((t) => t.px === px && t.bn === bn).sort((a, b) => (b.params!.wg as number) - (a.params!.wg as number));
  const threads = g.n * oh * Math.ceil(ow / px);
  return fits.find((c) => threads >= STRIP_MIN_FILL * (c.params!.wg as number)) ?? fits[fits.length - 1] ?? cands[0];
}

/** `width`: the pass's output row width (the forward's OW, the input gradient's W). */
function candidates(suits: (g: Conv2dGeometry) => boolean, width: (g: Conv2dGeometry) => number): Candidate<Conv2dGeometry>[] {
  // A 16-pixel piece on a row narrower than 16 computes mostly padding: not worth a tuning trial.
  return STRIP_TILES.map((t) => ({
    variant: 'strip',
    tile: stripKey(t),
    params: { ...t },
    suits: (g, dev) => dev.isSoftware && suits(g) && (t.px < 16 || width(g) >= 16),
  }));
}
registerCandidates<Conv2dGeometry>('conv.fwd', candidates(stripSuitsForward, (g) => g.ow));
registerCandidates<Conv2dGeometry>('conv.dgrad', candidates(stripSuitsBackwardInput, (g) => g.w));
registerCandidates<Conv2dGeometry>(
  'conv.wgrad',
  STRIP_WGRAD_TILES.map((t) => ({ variant: 'strip', tile: stripKey(t), params: { ...t }, suits: (g, dev) => dev.isSoftware && stripSuitsBackwardWeight(g, t.px) })),
);

function tileOf(p: Plan): StripTile {
  return { wg: p.params.wg as number, px: p.params.px as number, bn: p.params.bn as number };
}

const pad4 = (n: number, bn: number) => Math.ceil(n / bn) * bn;

/** wp for the strip kernel (see convStripPackKernel); `outCh` channels padded to a multiple of bn. */
function packWeights(w: Tensor, g: Conv2dGeometry, flip: boolean, bn: number, tag: Tag): Tensor {
  const outCh = flip ? g.cin : g.cout;
  const inCh = flip ? g.cout : g.cin;
  const pad = pad4(outCh, bn);
  const total = inCh * g.kh * g.kw * pad;
  const wp = empty([total]);
  const p = STRIP_PACK_UNIFORM.pack({ cout: g.cout, cin: g.cin, kh: g.kh, kw: g.kw, pad, flip: flip ? 1 : 0, total });
  queue.dispatch(cachedKernel('conv.strip.pack', convStripPackKernel), [{ buffer: w.buf }, { buffer: wp.buf }], p, gridFor(total, STRIP_PACK_WG), () => ({
    ...tag(),
    op: 'conv.strip.pack',
    variant: 'pack',
    flops: 0,
  }));
  return wp;
}

interface StripGeom {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  oh: number;
  ow: number;
  kh: number;
  kw: number;
  pt: number;
  pl: number;
}

function dispatchStrip(x: Tensor, wp: Tensor, bias: Tensor | null, y: Tensor, s: StripGeom, t: StripTile, tag: Tag, relu = false): void {
  const qpr = Math.ceil(s.ow / t.px);
  const rows = s.n * s.oh * qpr;
  const coutPad = pad4(s.cout, t.bn);
  // Output rows of whole quads take vec4 stores (the same values; see convStripKernel).
  const q4 = s.ow % 4 === 0;
  const k = cachedKernel(`conv.strip|${s.kw}|${s.pl}|${!!bias}|${relu ? 'relu|' : ''}${q4 ? 'q4|' : ''}${stripKey(t)}`, () => convStripKernel(t, s.kw, s.pl, !!bias, relu, q4));
  const p = STRIP_UNIFORM.pack({ n: s.n, cin: s.cin, h: s.h, w: s.w, cout: s.cout, oh: s.oh, ow: s.ow, kh: s.kh, pt: s.pt, qpr, rows, coutPad });
  const g = grid1d(Math.ceil(rows / t.wg));
  const bufs = (bias ? [x, wp, bias, y] : [x, wp, y]).map((b) => ({ buffer: b.buf }));
  queue.dispatch(k, bufs, p, [g[0], g[1], coutPad / t.bn], tag);
}

/** conv2d forward by row strips (the planner checked stripSuitsForward); `relu`: max(., 0) in the store. */
export function stripForward(x: Tensor, w: Tensor, bias: Tensor | null, y: Tensor, g: Conv2dGeometry, p: Plan, tag: Tag, relu = false): void {
  const t = tileOf(p);
  const wp = packWeights(w, g, false, t.bn, tag);
  dispatchStrip(x, wp, bias, y, { n: g.n, cin: g.cin, h: g.h, w: g.w, cout: g.cout, oh: g.oh, ow: g.ow, kh: g.kh, kw: g.kw, pt: g.pt, pl: g.pl }, t, tag, relu);
  wp.dispose();
}

/**
 * conv2d input gradient by row strips: dx = the correlation of dy (cout channels, OH x OW) with the
 * flipped, transposed weights and padding (kh-1-pt, kw-1-pl); its output is H x W.
 */
export function stripBackwardInput(dy: Tensor, w: Tensor, dx: Tensor, g: Conv2dGeometry, p: Plan, tag: Tag): void {
  const t = tileOf(p);
  const wp = packWeights(w, g, true, t.bn, tag);
  const s: StripGeom = { n: g.n, cin: g.cout, h: g.oh, w: g.ow, cout: g.cin, oh: g.h, ow: g.w, kh: g.kh, kw: g.kw, pt: g.kh - 1 - g.pt, pl: g.kw - 1 - g.pl };
  dispatchStrip(dy, wp, null, dx, s, t, tag);
  wp.dispose();
}

/** A split reduces at least this many quads (4-pixel row pieces). */
const STRIP_WGRAD_MIN_QUADS = 64;

/** Splits of the reduction over N*OH*OW/4 quads: fixed by the shapes, so results are reproducible. */
export function stripWgradSplits(g: Conv2dGeometry, t: StripTile): { splits: number; perSplit: number; quads: number } {
  const quads = (g.n * g.oh * g.ow) / t.px;
  const tiles = Math.ceil((g.cin * g.kh) / t.wg) * Math.ceil(g.cout / t.bn);
  return { ...splitK(tiles, quads, WGRAD_SOFT_TARGET_GROUPS, STRIP_WGRAD_MIN_QUADS), quads };
}

/** conv2d weight gradient by row strips (the planner checked stripSuitsBackwardWeight). */
export function stripBackwardWeight(dy: Tensor, x: Tensor, dw: Tensor, g: Conv2dGeometry, p: Plan, tag: Tag): void {
  const t = tileOf(p);
  const { splits, perSplit, quads } = stripWgradSplits(g, t);
  const red = g.cin * g.kh * g.kw;
  const k = cachedKernel(`conv.strip.wgrad|${g.kw}|${g.pl}|${stripKey(t)}`, () => convStripWgradKernel(t, g.kw, g.pl));
  const prm = STRIP_WGRAD_UNIFORM.pack({ n: g.n, cin: g.cin, h: g.h, w: g.w, cout: g.cout, oh: g.oh, ow: g.ow, kh: g.kh, pt: g.pt, red, qpl: g.ow / t.px, quads, cps: perSplit });
  const grid: [number, number, number] = [Math.ceil((g.cin * g.kh) / t.wg), Math.ceil(g.cout / t.bn), splits];
  if (splits === 1) {
    queue.dispatch(k, [{ buffer: dy.buf }, { buffer: x.buf }, { buffer: dw.buf }], prm, grid, tag);
    return;
  }
  const parts = empty([splits, g.cout, red]);
  queue.dispatch(k, [{ buffer: dy.buf }, { buffer: x.buf }, { buffer: parts.buf }], prm, grid, tag);
  dispatchSplitSum(parts, dw, splits);
  parts.dispose();
}

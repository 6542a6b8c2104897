// Launchers for the convolution family (src/shaders/conv.ts, conv-direct.ts; row strips in
// conv-strip.ts): the planner's candidates and default rule per pass, tile choice, split-K sizing. Raw
// ops, no autograd: the forward and each backward are separate functions with plain tensor arguments.
// Geometry and padding live in conv-geometry.ts (re-exported here), the split-K sum in split-sum.ts.
import { CONV_UNIFORM, conv2dBackwardInputKernel, conv2dBackwardWeightKernel, conv2dForwardKernel, gatherLoads, type GemmTile } from '../../shaders/conv.js';
import {
  conv2dDirectBackwardInputKernel,
  conv2dDirectBackwardWeightKernel,
  conv2dDirectForwardKernel,
  DIRECT_TILE,
  DIRECT_WGRAD_TILE,
  directKey,
  type DirectTile,
} from '../../shaders/conv-direct.js';
import { grid1d, type Grid, type Kernel } from '../../shaders/kernel.js';
import { cachedKernel, deviceTraits, plan, plan as planKernel, registerCandidates, registerFamily, type BenchCase, type Plan, type RegisteredCandidate } from '../plan.js';
import { queue } from '../queue.js';
import type { DispatchTag } from '../trace.js';
import { empty, type Shape, type Tensor } from '../tensor.js';
import { fill } from './map.js';
import { channelSum } from './norm.js';
import { stripBackwardInput, stripBackwardWeight, stripDefault, stripForward } from './conv-strip.js';
import { conv2dGeometry, convFlops, convShapeClass, shapeStr, type Conv2dGeometry, type Conv2dOptions } from './conv-geometry.js';
import { dispatchSplitSum, splitK, WGRAD_CHUNK, WGRAD_MIN_CHUNKS_PER_SPLIT, WGRAD_TARGET_GROUPS } from './split-sum.js';

// Geometry, and the split-K sum, from where importers have always found them.
export * from './conv-geometry.js';
export { dispatchSplitSum } from './split-sum.js';

// ---------------------------------------------------------------------------------------------
// Candidates: the planner (../plan.ts) picks one per pass and geometry

/**
 * 'tiled': implicit GEMMs with workgroup-memory tiles (for GPUs). 'direct': register-blocked kernels
 * without workgroup memory or barriers, whose weight/dy reads are uniform (for software adapters such
 * as lavapipe, where they run about 5x faster). See src/shaders/conv.ts.
 */
export type ConvImpl = 'tiled' | 'direct';

/** The three conv passes are three planner families: each picks its own kernel. */
export type ConvFamily = 'conv.fwd' | 'conv.dgrad' | 'conv.wgrad';
export const CONV_FAMILIES: readonly ConvFamily[] = ['conv.fwd', 'conv.dgrad', 'conv.wgrad'];

/** Workgroup memory we let a tile use: the device's limit, at most 32 KiB. */
function sharedBudget(): number {
  return Math.min(deviceTraits().sharedBytes, 32768);
}

/** Halves the reduction chunk until the tile fits the workgroup-memory budget. */
function fitTile(t: GemmTile): GemmTile {
  const f = { ...t };
  // Operand tiles plus the tap tables (at most 4 arrays of 2 * bk words, or 3 of bm).
  const bytes = () => f.bk * (f.bm + f.bn + 2) * 4 + Math.max(4 * 2 * f.bk, 3 * f.bm) * 4;
  while (f.bk > 8 && bytes() > sharedBudget()) f.bk /= 2;
  return f;
}

/**
 * Tiles of the tiled variant: BM x BN output tiles with TM x TN per thread, reduction chunk 32 (16 if
 * workgroup memory is short). The 64-row tiles cover 8-64 columns (the static rule takes the smallest
 * that covers the GEMM's columns, 64 beyond); 128-row tiles with 8x4 / 8x8 register blocks are for large
 * GPUs (256 threads, more reuse per load), timed by the tuner and never picked by the static rule.
 */
const TILED_TILES: readonly (GemmTile & { big?: boolean })[] = [
  { bm: 64, bn: 8, tm: 4, tn: 2, bk: 32 },
  { bm: 64, bn: 16, tm: 4, tn: 4, bk: 32 },
  { bm: 64, bn: 32, tm: 4, tn: 4, bk: 32 },
  { bm: 64, bn: 64, tm: 4, tn: 4, bk: 32 },
  { bm: 128, bn: 64, tm: 8, tn: 4, bk: 32, big: true },
  { bm: 128, bn: 128, tm: 8, tn: 8, bk: 32, big: true },
];

function tileOf(p: Plan): GemmTile {
  const t = p.params;
  return fitTile({ bm: t.bm as number, bn: t.bn as number, tm: t.tm as number, tn: t.tn as number, bk: t.bk as number });
}

/**
 * The static tile for a GEMM with `cols` output columns: the smallest of 8/16/32/64 that covers them
 * (64 beyond). The reduction chunk is fixed, so one pipeline per column tile serves every layer, and
 * small reductions just pad the chunk with zeros.
 */
export function pickTile(cols: number): GemmTile {
  const bn = cols <= 8 ? 8 : cols <= 16 ? 16 : cols <= 32 ? 32 : 64;
  return fitTile(TILED_TILES.find((t) => t.bm === 64 && t.bn === bn)!);
}

/** Output columns of a pass's GEMM (the static tile covers them). */
function gemmCols(family: ConvFamily, g: Conv2dGeometry): number {
  return family === 'conv.dgrad' ? g.cin : g.cout;
}

/**
 * Register blocks of the direct variant (wg threads x tm rows x bn channels, see DirectTile). The
 * forward and input gradient shrink the workgroup for layers with few output rows; the weight
 * gradient's rows are taps, which are many exactly when the rows of the other two passes are few.
 */
const DIRECT_TILES: readonly DirectTile[] = [DIRECT_TILE, { wg: 32, tm: 8, bn: 8 }, { wg: 16, tm: 8, bn: 8 }, { wg: 8, tm: 8, bn: 8 }, { wg: 8, tm: 4, bn: 8 }];
const DIRECT_WGRAD_TILES: readonly DirectTile[] = [DIRECT_WGRAD_TILE, { wg: 16, tm: 8, bn: 8 }, { wg: 8, tm: 4, bn: 8 }];

/** Rows of a pass's GEMM that a direct workgroup tiles: output pixels, input pixels per stride phase, or taps. */
function directRows(family: ConvFamily, g: Conv2dGeometry): number {
  if (family === 'conv.fwd') return g.n * g.oh * g.ow;
  if (family === 'conv.dgrad') return g.n * Math.ceil(g.h / g.sh) * Math.ceil(g.w / g.sw);
  return g.cin * g.kh * g.kw;
}

/**
 * The static direct tile on software adapters: the largest row tile (wg * tm) that the layer's rows
 * fill at least DIRECT_MIN_FILL times over, so little of the last tile is wasted; the smallest (8 x 4 =
 * 32 rows) when none does. The weight gradient keeps DIRECT_WGRAD_TILE (its rows are taps, many
 * exactly when the other passes' rows are few), 8 x 4 for kernels of at most 32 taps.
 */
const DIRECT_MIN_FILL = 4;
/** Fewer (input channel, kernel row) pairs than this leave a strip weight-gradient workgroup half idle. */
const STRIP_WGRAD_MIN_PAIRS = 16;
/** At most this many filters, a direct weight-gradient block (8 channels) computes mostly padding. */
const STRIP_WGRAD_FEW_FILTERS = 4;
function directDefault(family: ConvFamily, g: Conv2dGeometry, of: readonly RegisteredCandidate<Conv2dGeometry>[]): RegisteredCandidate<Conv2dGeometry> {
  const rows = directRows(family, g);
  const span = (c: RegisteredCandidate<Conv2dGeometry>) => (c.params!.wg as number) * (c.params!.tm as number);
  if (family === 'conv.wgrad') {
    // Taps are the rows: a 3x3 RGB kernel has 27, which 8 x 4 covers with less waste than 8 x 8.
    const id = rows <= 32 ? 'direct:8x4x8' : `direct:${directKey(DIRECT_WGRAD_TILE)}`;
    return of.find((c) => c.id === id) ?? of[0];
  }
  const bySpan = [...of].sort((a, b) => span(b) - span(a) || (b.params!.tm as number) - (a.params!.tm as number));
  return bySpan.find((c) => rows >= DIRECT_MIN_FILL * span(c)) ?? bySpan[bySpan.length - 1] ?? of[0];
}

for (const family of CONV_FAMILIES) {
  registerFamily<Conv2dGeometry>({
    family,
    about: { 'conv.fwd': 'conv2d forward', 'conv.dgrad': 'conv2d input gradient', 'conv.wgrad': 'conv2d weight gradient' }[family],
    shapeClass: convShapeClass,
    describe: convShapeClass,
    // Software adapters: row strips where they suit (stride 1, rows of whole vec4s; about 2x the direct
    // kernels), else direct blocks sized by the layer's rows (barriers are ruinous there). GPUs: tiled
    // with the smallest covering tile. Among one variant's candidates (an override or the tuner
    // asking), its own rule applies.
    defaultRule: (g, dev, cands) => {
      const strips = cands.filter((c) => c.variant === 'strip');
      // A strip weight-gradient thread owns one (ci, ky) pair: an RGB input layer has 3-9 of them.
      // The direct blocks' 8 channels, though, are mostly padding for a layer of 1-4 filters (a
      // compacted one): there strips pay anyway (3->2 3x3 at 64 px: 7 ms against 17-22, CPU, batch 32).
      const stripsPay = family !== 'conv.wgrad' || g.cin * g.kh >= STRIP_WGRAD_MIN_PAIRS || g.cout <= STRIP_WGRAD_FEW_FILTERS;
      if (dev.isSoftware && strips.length && stripsPay) return stripDefault(family, g, strips);
      const want = dev.isSoftware ? 'direct' : 'tiled';
      const variant = cands.some((c) => c.variant === want) ? want : cands[0].variant;
      if (variant === 'strip') return stripDefault(family, g, strips);
      const of = cands.filter((c) => c.variant === variant);
      if (variant === 'direct') return directDefault(family, g, of);
      const bn = pickTile(gemmCols(family, g)).bn;
      return of.find((c) => c.params?.bm === 64 && c.params?.bn === bn) ?? of[0];
    },
    bench: (g) => convBenchCase(family, g),
  });
  registerCandidates<Conv2dGeometry>(family, [
    ...(family === 'conv.wgrad' ? DIRECT_WGRAD_TILES : DIRECT_TILES).map((t) => ({
      variant: 'direct',
      tile: directKey(t),
      params: { ...t },
    })),
    ...TILED_TILES.map((t) => ({
      variant: 'tiled',
      tile: `${t.bm}x${t.bn}`,
      params: { bm: t.bm, bn: t.bn, tm: t.tm, tn: t.tn, bk: t.bk },
      tags: t.big ? ['big-gpu'] : [],
    })),
  ]);
}

function convBenchCase(family: ConvFamily, g: Conv2dGeometry): BenchCase {
  const opts: Conv2dOptions = { stride: [g.sh, g.sw], dilation: [g.dh, g.dw], padding: [g.pt, g.pl, g.pb, g.pr] };
  const x = fill([g.n, g.cin, g.h, g.w], 0.5);
  const w = fill([g.cout, g.cin, g.kh, g.kw], 0.25);
  const dy = fill([g.n, g.cout, g.oh, g.ow], 1);
  const run = {
    'conv.fwd': () => conv2dForward(x, w, null, opts),
    'conv.dgrad': () => conv2dBackwardInput(dy, w, x.shape, opts),
    'conv.wgrad': () => conv2dBackwardWeight(dy, x, w.shape, opts),
  }[family];
  return {
    run: () => run().dispose(),
    dispose: () => [x, w, dy].forEach((t) => t.dispose()),
  };
}

export function convParams(g: Conv2dGeometry, la: number, lb: number, rows: number, red: number, cps = 0, nchunks = 0): Uint32Array {
  const { n, cin, h, w, cout, oh, ow, sh, sw, dh, dw, pt, pl, kh, kw } = g;
  return CONV_UNIFORM.pack({ n, cin, h, w, cout, oh, ow, sh, sw, dh, dw, pt, pl, rows, red, cps, nchunks, kh, kw, la, lb });
}

function tiledParams(g: Conv2dGeometry, t: GemmTile, rows: number, red: number, cps = 0, nchunks = 0): Uint32Array {
  const [la, lb] = gatherLoads(t);
  return convParams(g, la, lb, rows, red, cps, nchunks);
}

function checkF32(t: Tensor, what: string): void {
  if (t.dtype !== 'f32') throw new Error(`${what} must be f32, got ${t.dtype}`);
}

/** Rows-by-columns tile grid: row tiles folded over x/y, column tiles on z. */
function gemmGrid(rows: number, cols: number, rowsPerGroup: number, colsPerGroup: number): Grid {
  const g = grid1d(Math.ceil(rows / rowsPerGroup));
  return [g[0], g[1], Math.ceil(cols / colsPerGroup)];
}

/** The kernels address with i32 arithmetic. */
const MAX_INDEX = 2 ** 31 - 1;
function checkIndexable(...sizes: number[]): void {
  for (const s of sizes) if (s > MAX_INDEX) throw new Error(`conv2d: ${s} elements exceed i32 indexing`);
}

function directTileOf(p: Plan): DirectTile {
  const t = p.params;
  return { wg: t.wg as number, tm: t.tm as number, bn: t.bn as number };
}

// ---------------------------------------------------------------------------------------------
// Public ops

/** The conv.fwd variants whose kernels can apply a ReLU in their store (fused.conv-relu). */
export const RELU_EPILOGUE_VARIANTS: readonly string[] = ['strip', 'direct', 'tiled'];

/**
 * y = conv2d(x, w) + bias, and with `relu` max(that, 0) applied in the kernel's store (only where the
 * planned conv.fwd variant is one of RELU_EPILOGUE_VARIANTS). x [N, Cin, H, W], w [Cout, Cin, KH, KW],
 * bias [Cout] or null.
 */
export function conv2dForward(x: Tensor, w: Tensor, bias: Tensor | null, opts: Conv2dOptions = {}, relu = false): Tensor {
  checkF32(x, 'conv2d input');
  checkF32(w, 'conv2d weight');
  const g = conv2dGeometry(x.shape, w.shape, opts);
  if (bias) {
    checkF32(bias, 'conv2d bias');
    if (bias.size !== g.cout || bias.rank !== 1) throw new Error(`conv2d: bias ${shapeStr(bias.shape)} must be [${g.cout}]`);
  }
  const y = empty([g.n, g.cout, g.oh, g.ow]);
  const rows = g.n * g.oh * g.ow;
  const red = g.cin * g.kh * g.kw;
  checkIndexable(x.size, y.size, w.size);
  if (y.size === 0) return y;
  const bufs = (bias ? [x, w, bias, y] : [x, w, y]).map((b) => ({ buffer: b.buf }));
  const p = plan('conv.fwd', g);
  const tag = () => convTag('conv.fwd', g, p);
  if (relu && !RELU_EPILOGUE_VARIANTS.includes(p.variant)) throw new Error(`conv2d: the ${p.id} forward kernel has no ReLU epilogue`);
  const ep = `${!!bias}|${relu ? 'relu|' : ''}`;
  if (p.variant === 'strip') {
    stripForward(x, w, bias, y, g, p, tag, relu);
    return y;
  }
  if (p.variant === 'direct') {
    const t = directTileOf(p);
    const k = cachedKernel(`conv.fwd|direct|${ep}${directKey(t)}`, () => conv2dDirectForwardKernel(!!bias, t, relu));
    queue.dispatch(k, bufs, convParams(g, 0, 0, rows, red), gemmGrid(rows, g.cout, t.wg * t.tm, t.bn), tag);
    return y;
  }
  const t = tileOf(p);
  const k = cachedKernel(`conv.fwd|tiled|${ep}${JSON.stringify(t)}`, () => conv2dForwardKernel(!!bias, t, relu));
  queue.dispatch(k, bufs, tiledParams(g, t, rows, red), gemmGrid(rows, g.cout, t.bm, t.bn), tag);
  return y;
}

function convTag(op: ConvFamily, g: Conv2dGeometry, p: Plan): DispatchTag {
  return { op, variant: p.id, shape: convShapeClass(g), flops: convFlops(g), phase: op === 'conv.wgrad' ? 'weight-grad' : undefined };
}

/** dx of conv2d: dy [N, Cout, OH, OW], w [Cout, Cin, KH, KW], xShape [N, Cin, H, W]. */
export function conv2dBackwardInput(dy: Tensor, w: Tensor, xShape: Shape, opts: Conv2dOptions = {}): Tensor {
  checkF32(dy, 'conv2d dy');
  checkF32(w, 'conv2d weight');
  const g = conv2dGeometry(xShape, w.shape, opts);
  const want = [g.n, g.cout, g.oh, g.ow];
  if (dy.shape.join() !== want.join()) throw new Error(`conv2d backward: dy ${shapeStr(dy.shape)} should be ${shapeStr(want)}`);
  const dx = empty(xShape);
  const rows = g.n * g.h * g.w;
  const red = g.cout * g.kh * g.kw;
  checkIndexable(dx.size, dy.size, w.size);
  if (dx.size === 0) return dx;
  const bufs = [{ buffer: dy.buf }, { buffer: w.buf }, { buffer: dx.buf }];
  const p = plan('conv.dgrad', g);
  const tag = () => convTag('conv.dgrad', g, p);
  if (p.variant === 'strip') {
    stripBackwardInput(dy, w, dx, g, p, tag);
    return dx;
  }
  // By stride phase: the grid covers the largest phase's pixels, sh*sw phases per channel block.
  const phaseRows = g.n * Math.ceil(g.h / g.sh) * Math.ceil(g.w / g.sw);
  if (p.variant === 'direct') {
    const t = directTileOf(p);
    const k = cachedKernel(`conv.dgrad|direct|${directKey(t)}`, () => conv2dDirectBackwardInputKernel(t));
    const grid = gemmGrid(phaseRows, g.cin, t.wg * t.tm, t.bn);
    queue.dispatch(k, bufs, convParams(g, 0, 0, rows, red), [grid[0], grid[1], grid[2] * g.sh * g.sw], tag);
    return dx;
  }
  const t = tileOf(p);
  const k = cachedKernel(`conv.dgrad|tiled|${JSON.stringify(t)}`, () => conv2dBackwardInputKernel(t));
  const grid = gemmGrid(phaseRows, g.cin, t.bm, t.bn);
  queue.dispatch(k, bufs, tiledParams(g, t, rows, red), [grid[0], grid[1], grid[2] * g.sh * g.sw], tag);
  return dx;
}

export interface WgradPlan {
  impl: ConvImpl;
  /** The planner's choice this split plan follows. */
  plan: Plan;
  tile: GemmTile | null;
  /** Workgroups per split: row tiles over K times column tiles over Cout. */
  grid: [number, number];
  splits: number;
  chunk: number;
  chunksPerSplit: number;
  nchunks: number;
}

/**
 * How the weight-gradient reduction over N*OH*OW is split: chunks of WGRAD_CHUNK rows, enough
 * splits to reach WGRAD_TARGET_GROUPS workgroups, each split at least WGRAD_MIN_CHUNKS_PER_SPLIT
 * chunks. Depends on the shapes and the implementation only, so results are reproducible.
 */
export function wgradPlan(g: Conv2dGeometry, p: Plan = plan('conv.wgrad', g)): WgradPlan {
  const impl = p.variant as ConvImpl;
  const K = g.cin * g.kh * g.kw;
  const L = g.n * g.oh * g.ow;
  let tile: GemmTile | null = null;
  let grid: [number, number];
  let chunk = WGRAD_CHUNK;
  if (impl === 'tiled') {
    tile = tileOf(p);
    chunk = tile.bk;
    grid = [Math.ceil(K / tile.bm), Math.ceil(g.cout / tile.bn)];
  } else {
    const t = directTileOf(p);
    grid = [Math.ceil(K / (t.wg * t.tm)), Math.ceil(g.cout / t.bn)];
  }
  const nchunks = Math.ceil(L / chunk);
  const { splits, perSplit: chunksPerSplit } = splitK(grid[0] * grid[1], nchunks, WGRAD_TARGET_GROUPS, WGRAD_MIN_CHUNKS_PER_SPLIT);
  return { impl, plan: p, tile, grid, splits, chunk, chunksPerSplit, nchunks };
}

/** dw of conv2d: dy [N, Cout, OH, OW], x [N, Cin, H, W], wShape [Cout, Cin, KH, KW]. */
export function conv2dBackwardWeight(dy: Tensor, x: Tensor, wShape: Shape, opts: Conv2dOptions = {}): Tensor {
  checkF32(dy, 'conv2d dy');
  checkF32(x, 'conv2d input');
  const g = conv2dGeometry(x.shape, wShape, opts);
  const want = [g.n, g.cout, g.oh, g.ow];
  if (dy.shape.join() !== want.join()) throw new Error(`conv2d backward: dy ${shapeStr(dy.shape)} should be ${shapeStr(want)}`);
  const K = g.cin * g.kh * g.kw;
  const L = g.n * g.oh * g.ow;
  checkIndexable(x.size, dy.size);
  if (L === 0) return fill(wShape, 0); // an empty batch contributes nothing
  const dw = empty(wShape);
  if (dw.size === 0) return dw;
  const chosen = planKernel('conv.wgrad', g);
  if (chosen.variant === 'strip') {
    stripBackwardWeight(dy, x, dw, g, chosen, () => convTag('conv.wgrad', g, chosen));
    return dw;
  }
  const plan = wgradPlan(g, chosen);
  let k: Kernel;
  let params: Uint32Array;
  if (plan.impl === 'direct') {
    const t = directTileOf(plan.plan);
    k = cachedKernel(`conv.wgrad|direct|${directKey(t)}`, () => conv2dDirectBackwardWeightKernel(t));
    // The direct kernel reads the chunk length from `la`.
    params = convParams(g, plan.chunk, 0, K, L, plan.chunksPerSplit, plan.nchunks);
  } else {
    const t = plan.tile!;
    k = cachedKernel(`conv.wgrad|tiled|${JSON.stringify(t)}`, () => conv2dBackwardWeightKernel(t));
    params = tiledParams(g, t, K, L, plan.chunksPerSplit, plan.nchunks);
  }
  const grid: Grid = [plan.grid[0], plan.grid[1], plan.splits];
  const tag = () => convTag('conv.wgrad', g, plan.plan);
  if (plan.splits === 1) {
    queue.dispatch(k, [{ buffer: dy.buf }, { buffer: x.buf }, { buffer: dw.buf }], params, grid, tag);
    return dw;
  }
  const parts = empty([plan.splits, g.cout, K]);
  queue.dispatch(k, [{ buffer: dy.buf }, { buffer: x.buf }, { buffer: parts.buf }], params, grid, tag);
  dispatchSplitSum(parts, dw, plan.splits);
  // Safe while the batch is pending: a pooled buffer used by unsubmitted work is only handed to later
  // dispatches of the same queue (ordered after these), never to a host upload.
  parts.dispose();
  return dw;
}

/** db of conv2d: the per-channel sum of dy [N, Cout, OH, OW], shape [Cout]. */
export function conv2dBackwardBias(dy: Tensor): Tensor {
  checkF32(dy, 'conv2d dy');
  if (dy.rank !== 4) throw new Error(`conv2d bias backward: dy must be NCHW, got ${shapeStr(dy.shape)}`);
  return channelSum(dy);
}

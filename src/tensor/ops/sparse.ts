// Sparse conv2d / linear that skip pruned weights (kernels in src/shaders/sparse-conv.ts). Raw ops, no
// autograd: the compressed layout, the gather of surviving values, forward, input-gradient and the
// masked weight-gradient as plain functions.
//
// The 0/1 mask stays the source of truth. A SparseWeight is built from a host mask once per level and
// holds, per block width BN (1 = compressed rows, 8 = blocked; see the shader file), two layouts on the
// GPU: by output-channel block (forward, weight-gradient) and by input-channel block (input-gradient).
// Values are gathered from the dense weight at each use, so they follow every optimizer step.
import {
  gatherKernel,
  scatterSumKernel,
  sparseConvBackwardInputKernel,
  sparseConvBackwardWeightKernel,
  sparseConvBackwardWeightRowsKernel,
  sparseConvForwardKernel,
  SPARSE_MAP_WG,
  SPARSE_NONE,
  type SparseTile,
} from '../../shaders/sparse-conv.js';
import { gridFor, grid1d, type Grid, type Kernel } from '../../shaders/kernel.js';
import { sparseStripCoTileKernel, sparseStripKernel, sparseStripWgradKernel, SPARSE_STRIP_UNIFORM, type SparseStripTile } from '../../shaders/sparse-strip.js';
import { buildCoTiles, COTILE_BN } from './sparse-cotile.js';
import { stripSuitsBackwardInput, stripSuitsBackwardWeight, stripSuitsForward } from './conv-strip.js';
import { CONV_STRUCT, SPLIT_SUM_UNIFORM } from '../../shaders/conv.js';
import { cachedKernel, plan, planKey, registerCandidates, registerFamily, type PlanKey } from '../plan.js';
import { queue } from '../queue.js';
import { empty, fromArray, keep, type Shape, type Tensor } from '../tensor.js';
import { fill } from './map.js';
import { convParams } from './conv.js';
import { conv2dGeometry, convFlops, convShapeClass, type Conv2dGeometry, type Conv2dOptions } from './conv-geometry.js';
import { splitK, WGRAD_CHUNK, WGRAD_MIN_CHUNKS_PER_SPLIT, WGRAD_SOFT_TARGET_GROUPS, WGRAD_TARGET_GROUPS } from './split-sum.js';
import type { DispatchTag } from '../trace.js';

/** Profile tag (built only while profiling: launchers pass a closure): the dense op it replaces, the sparse variant, and nominal (dense) FLOPs. */
function tag(op: 'conv.fwd' | 'conv.dgrad' | 'conv.wgrad', g: Conv2dGeometry, bn: SparseBlock): DispatchTag {
  return { op, variant: bn === 1 ? 'sparse:csr' : 'sparse:blocked', shape: convShapeClass(g), flops: convFlops(g), phase: op === 'conv.wgrad' ? 'weight-grad' : undefined };
}

/** Channels per block of the sparse candidates: 1 = compressed rows, 8 = blocked. */
export type SparseBlock = 1 | 8;
export const SPARSE_BLOCKS: readonly SparseBlock[] = [1, 8];

/** One side of a layout: blocks of `bn` channels, their kept taps and where each value comes from. */
export interface SparseBlocks {
  bn: SparseBlock;
  blocks: number;
  entries: number;
  maxEntries: number;
  /** Taps per block (host copy, for grid sizing). */
  counts: Uint32Array;
  ptr: Tensor;
  taps: Tensor;
  /** Flat index into the dense weight of each (tap, channel) slot, SPARSE_NONE where padded. */
  idx: Tensor;
}

/** Host build of one side. `byOut`: blocks over output channels (taps over ci), else over input channels. */
export function buildBlocks(mask: ArrayLike<number>, wShape: Shape, bn: SparseBlock, byOut: boolean): { ptr: Uint32Array; taps: Uint32Array; idx: Uint32Array } {
  const [cout, cin, kh, kw] = wShape;
  if (cin >= 65536 || cout >= 65536 || kh > 255 || kw > 255) throw new Error(`sparse layout: weight [${wShape.join(', ')}] exceeds the packed tap format`);
  const khw = kh * kw;
  const nc = byOut ? cout : cin; // blocked side
  const oc = byOut ? cin : cout; // the side the taps run over
  const flat = (c: number, o: number, r: number) => (byOut ? (c * cin + o) * khw + r : (o * cin + c) * khw + r);
  const blocks = Math.ceil(nc / bn);
  const ptr = new Uint32Array(blocks + 1);
  const taps: number[] = [];
  const idx: number[] = [];
  for (let b = 0; b < blocks; b++) {
    ptr[b] = taps.length;
    for (let o = 0; o < oc; o++) {
      for (let r = 0; r < khw; r++) {
        let any = false;
        for (let j = 0; j < bn && b * bn + j < nc; j++) if (mask[flat(b * bn + j, o, r)]) any = true;
        if (!any) continue;
        const ky = Math.floor(r / kw);
        taps.push(((o << 16) | (ky << 8) | (r - ky * kw)) >>> 0);
        for (let j = 0; j < bn; j++) {
          const c = b * bn + j;
          idx.push(c < nc && mask[flat(c, o, r)] ? flat(c, o, r) : SPARSE_NONE);
        }
      }
    }
  }
  ptr[blocks] = taps.length;
  return { ptr, taps: Uint32Array.from(taps), idx: Uint32Array.from(idx) };
}

/** What a value gather reads: a layout's entries, values per entry and where each comes from. */
export interface GatherSide {
  bn: number;
  entries: number;
  idx: Tensor;
}

/** The co-tile layout on the GPU (sparse-cotile.ts): tiles of `ct` input channels, kept blocks by (g, ky). */
export interface SparseCoTiles extends GatherSide {
  ct: number;
  tiles: number;
  tptr: Tensor;
  groups: Tensor;
  ents: Tensor;
}

function upload(h: { ptr: Uint32Array; taps: Uint32Array; idx: Uint32Array }, bn: SparseBlock): SparseBlocks {
  const counts = new Uint32Array(h.ptr.length - 1);
  for (let b = 0; b < counts.length; b++) counts[b] = h.ptr[b + 1] - h.ptr[b];
  const maxEntries = Math.max(0, ...counts);
  // Empty lists still bind a buffer: one padding word.
  const nz = (a: Uint32Array) => (a.length ? a : new Uint32Array([SPARSE_NONE]));
  return {
    bn,
    blocks: h.ptr.length - 1,
    entries: h.taps.length,
    maxEntries,
    counts,
    ptr: keep(fromArray(h.ptr, [h.ptr.length], 'u32')),
    taps: keep(fromArray(nz(h.taps), undefined, 'u32')),
    idx: keep(fromArray(nz(h.idx), undefined, 'u32')),
  };
}

/**
 * The compressed forms of one pruned weight [Cout, Cin, KH, KW] (a linear's [out, in] is [out, in, 1, 1]),
 * built lazily per block width from the host mask. Call dispose() when the level ends.
 */
export class SparseWeight {
  readonly wShape: [number, number, number, number];
  readonly kept: number;
  readonly density: number;
  private readonly mask: Uint8Array;
  private readonly sides = new Map<string, SparseBlocks>();
  private readonly coTileSides = new Map<number, SparseCoTiles>();
  constructor(mask: ArrayLike<number>, wShape: Shape) {
    const s = wShape.length === 2 ? [wShape[0], wShape[1], 1, 1] : [...wShape];
    if (s.length !== 4) throw new Error(`sparse layout: weight [${wShape.join(', ')}] is neither conv nor linear`);
    this.wShape = s as [number, number, number, number];
    const n = s[0] * s[1] * s[2] * s[3];
    if (mask.length !== n) throw new Error(`sparse layout: mask of ${mask.length} entries for weight [${wShape.join(', ')}]`);
    this.mask = Uint8Array.from(mask, (v) => (v ? 1 : 0));
    let k = 0;
    for (let i = 0; i < n; i++) k += this.mask[i];
    this.kept = k;
    this.density = n ? k / n : 0;
  }
  side(bn: SparseBlock, byOut: boolean): SparseBlocks {
    const key = `${bn}|${byOut}`;
    let s = this.sides.get(key);
    if (!s) this.sides.set(key, (s = upload(buildBlocks(this.mask, this.wShape, bn, byOut), bn)));
    return s;
  }
  /** The co-tile layout (input-gradient tiles of `ct` input channels over 8-channel output blocks). */
  coTiles(ct: number): SparseCoTiles {
    let s = this.coTileSides.get(ct);
    if (!s) {
      const h = buildCoTiles(this.mask, this.wShape, ct, SPARSE_NONE);
      const nz = (a: Uint32Array) => (a.length ? a : new Uint32Array([SPARSE_NONE]));
      const u32 = (a: Uint32Array) => keep(fromArray(nz(a), undefined, 'u32'));
      s = { bn: COTILE_BN, ct, tiles: h.tiles, entries: h.ents.length, tptr: u32(h.tptr), groups: u32(h.groups), ents: u32(h.ents), idx: u32(h.idx) };
      this.coTileSides.set(ct, s);
    }
    return s;
  }
  dispose(): void {
    for (const s of this.sides.values()) for (const t of [s.ptr, s.taps, s.idx]) t.dispose();
    this.sides.clear();
    for (const s of this.coTileSides.values()) for (const t of [s.tptr, s.groups, s.ents, s.idx]) t.dispose();
    this.coTileSides.clear();
  }
}

function cached(key: string, make: () => Kernel): Kernel {
  return cachedKernel(`sparse|${key}`, make);
}

/**
 * Lanes and rows per lane. Per tap a lane pays BN uniform value loads and TM per-lane input loads for
 * TM*BN FMAs, so TM stays at 8 (as the dense direct kernel's) whenever there are rows for it: 64 x 8
 * for image-sized row counts, 8 lanes x up to 8 rows for a linear's handful of rows.
 */
export function sparseTile(rows: number, bn: SparseBlock): SparseTile {
  if (rows >= 512) return { wg: 64, tm: 8, bn };
  let tm = 1;
  while (tm < 8 && tm * 8 < rows) tm *= 2;
  return { wg: 8, tm, bn };
}
/** The weight gradient's lanes run over a block's taps (as few as a handful): one SIMD register wide. */
export function sparseWgradTile(bn: SparseBlock): SparseTile {
  return { wg: 8, tm: bn === 1 ? 4 : 8, bn };
}

/** cps: blocks per workgroup (forward, input-grad) or rows/chunks per split (weight-grad); nchunks: blocks. */
function params(g: Conv2dGeometry, rows: number, red: number, la = 0, cps = 0, nchunks = 0): Uint32Array {
  return convParams(g, la, 0, rows, red, cps, nchunks);
}

/**
 * How many workgroups a sparse dispatch aims for (the 'sparse.grid' family): 'few:64' walks several
 * blocks per workgroup so that about 64 stay busy (software adapters: enough for every core, few enough
 * that the per-workgroup set-up, pixel decomposition and launch, stays small against the taps), and
 * splits the weight gradient's reduction for 64 workgroups; 'many:512' gives each block its own
 * workgroups and aims the splits at 512 (GPUs: the most parallelism). Both compute the same sums per
 * output; the split count changes the weight gradient's summation order, so runs pin it.
 */
interface SparseGrid {
  groups: number;
  walk: boolean;
}
registerFamily<Record<string, never>>({
  family: 'sparse.grid',
  about: 'sparse conv/linear kernels: workgroups aimed for, blocks walked per workgroup, weight-gradient splits',
  shapeClass: () => 'all',
  defaultRule: (_g, dev, cands) => cands.find((c) => c.variant === (dev.isSoftware ? 'few' : 'many')) ?? cands[0],
});
registerCandidates<Record<string, never>>('sparse.grid', [
  { variant: 'few', tile: `${WGRAD_SOFT_TARGET_GROUPS}`, params: { groups: WGRAD_SOFT_TARGET_GROUPS, walk: true } },
  { variant: 'many', tile: `${WGRAD_TARGET_GROUPS}`, params: { groups: WGRAD_TARGET_GROUPS, walk: false } },
]);

function sparseGrid(): SparseGrid {
  const p = plan<Record<string, never>>('sparse.grid', {}).params;
  return { groups: p.groups as number, walk: p.walk as boolean };
}

/** Blocks each workgroup walks: one, or (walk) as many as keep the grid's workgroups busy, so the pixel set-up is shared by the blocks. */
function blocksPerGroup(rowGroups: number, blocks: number): number {
  const grid = sparseGrid();
  if (!grid.walk) return 1;
  const zGroups = Math.min(blocks, Math.max(1, Math.ceil(grid.groups / Math.max(rowGroups, 1))));
  return Math.ceil(blocks / zGroups);
}

function checkSide(sw: SparseWeight, g: Conv2dGeometry, what: string): void {
  const [co, ci, kh, kw] = sw.wShape;
  if (co !== g.cout || ci !== g.cin || kh !== g.kh || kw !== g.kw) {
    throw new Error(`${what}: sparse weight [${sw.wShape.join(', ')}] does not match the conv [${g.cout}, ${g.cin}, ${g.kh}, ${g.kw}]`);
  }
}

/** Surviving values of the dense weight `w` in the order of a layout side ([entries * bn], +0 where padded). */
export function sparseGather(w: Tensor, side: GatherSide): Tensor {
  const n = side.entries * side.bn;
  const out = empty([Math.max(n, 1)]);
  const k = cached('gather', gatherKernel);
  const p = SPLIT_SUM_UNIFORM.pack({ n, splits: 0 });
  queue.dispatch(k, [{ buffer: w.buf }, { buffer: side.idx.buf }, { buffer: out.buf }], p, gridFor(n, SPARSE_MAP_WG), () => ({ op: 'sparse.gather', variant: `bn${side.bn}`, shape: `${n}`, flops: 0 }));
  return out;
}

function rowGrid(rows: number, t: SparseTile, z: number): Grid {
  const g = grid1d(Math.ceil(rows / (t.wg * t.tm)));
  return [g[0], g[1], z];
}

/** y = conv2d(x, w * mask) + bias with the kept taps only; vals = sparseGather(w, sw.side(bn, true)). */
export function sparseConv2dForward(x: Tensor, sw: SparseWeight, vals: Tensor, bn: SparseBlock, bias: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const g = conv2dGeometry(x.shape, sw.wShape, opts);
  checkSide(sw, g, 'sparse conv2d');
  const y = empty([g.n, g.cout, g.oh, g.ow]);
  if (y.size === 0) return y;
  const side = sw.side(bn, true);
  const form = bn === 8 && side.entries > 0 ? blockedForm('fwd', g) : null;
  if (form?.variant === 'strip') {
    stripLaunch(x, side, vals, bias, y, g, false, form.px);
    return y;
  }
  const rows = g.n * g.oh * g.ow;
  const t = sparseTile(rows, bn);
  const k = cached(`f|${!!bias}|${t.wg}|${t.tm}|${bn}`, () => sparseConvForwardKernel(!!bias, t));
  const bufs = [x, side.ptr, side.taps, vals, ...(bias ? [bias] : []), y].map((b) => ({ buffer: b.buf }));
  const bpg = blocksPerGroup(Math.ceil(rows / (t.wg * t.tm)), side.blocks);
  queue.dispatch(k, bufs, params(g, rows, 0, 0, bpg, side.blocks), rowGrid(rows, t, Math.ceil(side.blocks / bpg)), () => tag('conv.fwd', g, bn));
  return y;
}

// ---------------------------------------------------------------------------------------------
// Blocked layout by row strips (src/shaders/sparse-strip.ts): stride-1 forward and input gradient.

/** What the 'sparse.blocked' family looks at: the pass and the conv geometry. */
interface BlockedForm {
  pass: 'fwd' | 'dgrad';
  g: Conv2dGeometry;
}

/**
 * The kernel form of the blocked (BN = 8) layout in the forward and input gradient (the
 * 'sparse.blocked' family): 'direct' (sparse-conv.ts: lanes over pixels, one load per pixel and tap)
 * or 'strip' (sparse-strip.ts: a row segment per (c, ky) serves every kept kx of it, 8 channels per
 * thread), which needs stride 1 and rows of whole vec4s. Software adapters take the strip where it
 * suits (loads bind there); GPUs keep the direct form.
 */
registerFamily<BlockedForm>({
  family: 'sparse.blocked',
  about: 'blocked sparse conv forward / input gradient: direct pixel lanes, or row strips (stride 1)',
  shapeClass: (f) => `${f.pass} ${convShapeClass(f.g)}`,
  // Forward: 8 pixels a thread. Input gradient: 16 where rows allow (its list is the union of 8 input
  // channels' taps, so nearly every row segment is loaded; more pixels per segment pay there): 1.0-1.5x
  // faster than 8 on Meso-4's block:8 layers at 20%, while 16 made the forward 1.2-2x slower
  // (bench/sparsity.ts --forms).
  defaultRule: (f, dev, cands) => {
    if (!dev.isSoftware) return cands[0];
    const strips = cands.filter((c) => c.variant === 'strip');
    return (f.pass === 'dgrad' ? strips.find((c) => c.tile === 'px16') : undefined) ?? strips.find((c) => c.tile === 'px8') ?? cands[0];
  },
});
// Input and output rows of whole vec4s: the strip loads and stores aligned quads.
const stripSuits = (f: BlockedForm) => (f.pass === 'fwd' ? stripSuitsForward(f.g) : stripSuitsBackwardInput(f.g)) && f.g.w % 4 === 0 && f.g.ow % 4 === 0;
/** The pass's output row width (the forward's OW, the input gradient's W). */
const outWidth = (f: BlockedForm) => (f.pass === 'fwd' ? f.g.ow : f.g.w);
registerCandidates<BlockedForm>('sparse.blocked', [
  { variant: 'direct' },
  // 8 pixels a thread (4 on rows 4 wide); 16 share each row segment between more pixels, for rows of 16 or more.
  { variant: 'strip', tile: 'px8', params: { px: 8 }, suits: stripSuits },
  { variant: 'strip', tile: 'px16', params: { px: 16 }, suits: (f) => stripSuits(f) && outWidth(f) >= 16 },
]);

/**
 * Which layout the blocked input gradient walks (the 'sparse.cotile' family): 'off', the layout by
 * input-channel block in the 'sparse.blocked' form (what every level recorded before this family ran:
 * its legacy), or 'on', the co-tile layout (sparseStripCoTileKernel: 8 input channels x 8 or 16 pixels
 * a thread over the kept blocks grouped by output block), which needs what the strip forms need.
 * Software adapters take it where it suits: under block:8 masks at 20% its list holds the kept blocks
 * where the by-input layout holds 83% of all taps.
 */
registerFamily<Conv2dGeometry>({
  family: 'sparse.cotile',
  about: 'blocked sparse conv input gradient: layout by input-channel block, or kept blocks by output block in tiles of 8 input channels (stride 1)',
  shapeClass: (g) => convShapeClass(g),
  legacy: 'off',
  defaultRule: (g, dev, cands) => {
    if (!dev.isSoftware) return cands[0];
    // 16 pixels a thread where rows allow: 1.3-1.6x faster than 8 on Meso-4's block:8 layers at 20%
    // (bench/sparsity.ts --forms). At 8 pixels a layer of fewer than 8 input channels (an image's 3)
    // fills a tile in part and measured slower than the by-input layout (Meso-4's conv1: 4.9 against 3.8 ms).
    const on = (tile: string) => cands.find((c) => c.variant === 'on' && c.tile === tile);
    return on('px16') ?? (g.cin >= 8 ? on('px8') : undefined) ?? cands[0];
  },
});
const coTileSuits = (g: Conv2dGeometry) => stripSuits({ pass: 'dgrad', g });
registerCandidates<Conv2dGeometry>('sparse.cotile', [
  { variant: 'off' },
  // 8 or 16 pixels x 8 input channels a thread (4 input channels measured 1.0-2.3x slower on Meso-4's
  // layers). A 16-pixel kernel holds 8 dy row segments in registers and takes lavapipe 5-20 s to compile
  // per (KW, padding).
  { variant: 'on', tile: 'px8', params: { px: 8, ct: 8 }, suits: coTileSuits },
  { variant: 'on', tile: 'px16', params: { px: 16, ct: 8 }, suits: (g) => coTileSuits(g) && g.w >= 16 },
]);

function blockedForm(pass: 'fwd' | 'dgrad', g: Conv2dGeometry): { variant: string; px: number } {
  const p = plan<BlockedForm>('sparse.blocked', { pass, g });
  return { variant: p.variant, px: (p.params.px as number | undefined) ?? 8 };
}

/** Pixels per thread: `want` unless the output rows are 4 wide; the widest workgroup the rows fill 4 times. */
function stripTile(rowsOut: number, ow: number, want: number): SparseStripTile {
  const px = ow % 8 === 0 || ow >= 16 ? want : 4;
  const threads = rowsOut * Math.ceil(ow / px);
  return { wg: threads >= 4 * 64 ? 64 : threads >= 4 * 16 ? 16 : 8, px };
}

/** Forward (flip false: src = x, out = y) or input gradient (flip: src = dy, out = dx) on the strip kernel. */
function stripLaunch(src: Tensor, side: SparseBlocks, vals: Tensor, bias: Tensor | null, out: Tensor, g: Conv2dGeometry, flip: boolean, px: number): void {
  const [cx, h, w, cy, oh, ow] = flip ? [g.cout, g.oh, g.ow, g.cin, g.h, g.w] : [g.cin, g.h, g.w, g.cout, g.oh, g.ow];
  const pt = flip ? g.kh - 1 - g.pt : g.pt;
  const pl = flip ? g.kw - 1 - g.pl : g.pl;
  const t = stripTile(g.n * oh, ow, px);
  const qpr = Math.ceil(ow / t.px);
  const rows = g.n * oh * qpr;
  const k = cached(`strip|${g.kw}|${pl}|${flip}|${!!bias}|${t.wg}x${t.px}`, () => sparseStripKernel(t, g.kw, pl, flip, !!bias));
  const groups = Math.ceil(rows / t.wg);
  const bpg = blocksPerGroup(groups, side.blocks);
  const p = SPARSE_STRIP_UNIFORM.pack({ n: g.n, cx, h, w, cy, oh, ow, kh: g.kh, pt, qpr, rows, cps: bpg, nblocks: side.blocks });
  const bufs = [src, side.ptr, side.taps, vals, ...(bias ? [bias] : []), out].map((b) => ({ buffer: b.buf }));
  const g1 = grid1d(groups);
  queue.dispatch(k, bufs, p, [g1[0], g1[1], Math.ceil(side.blocks / bpg)], () => ({ ...tag(flip ? 'conv.dgrad' : 'conv.fwd', g, 8), variant: 'sparse:blocked-strip' }));
}

/** The co-tile input gradient (sparseStripCoTileKernel): dy into dx over the co-tile layout's kept blocks. */
function coTileLaunch(dy: Tensor, w: Tensor, sw: SparseWeight, dx: Tensor, g: Conv2dGeometry, px: number, ct: number): void {
  const side = sw.coTiles(ct);
  const vals = sparseGather(w, side);
  const pl = g.kw - 1 - g.pl;
  const t = stripTile(g.n * g.h, g.w, px);
  const qpr = Math.ceil(g.w / t.px);
  const rows = g.n * g.h * qpr;
  const k = cached(`cotile|${g.kw}|${pl}|${ct}|${t.wg}x${t.px}`, () => sparseStripCoTileKernel(t, g.kw, pl, ct));
  const groups = Math.ceil(rows / t.wg);
  const bpg = blocksPerGroup(groups, side.tiles);
  const p = SPARSE_STRIP_UNIFORM.pack({ n: g.n, cx: g.cout, h: g.oh, w: g.ow, cy: g.cin, oh: g.h, ow: g.w, kh: g.kh, pt: g.kh - 1 - g.pt, qpr, rows, cps: bpg, nblocks: side.tiles });
  const bufs = [dy, side.tptr, side.groups, side.ents, vals, dx].map((b) => ({ buffer: b.buf }));
  const g1 = grid1d(groups);
  queue.dispatch(k, bufs, p, [g1[0], g1[1], Math.ceil(side.tiles / bpg)], () => ({ ...tag('conv.dgrad', g, 8), variant: 'sparse:blocked-cotile' }));
  vals.dispose();
}

/**
 * dx of conv2d(x, w * mask), w the dense weight: the planner's form of the layout decides which values
 * are gathered (the co-tile layout's, or sw.side(bn, false)'s).
 */
export function sparseConv2dBackwardInput(dy: Tensor, sw: SparseWeight, w: Tensor, bn: SparseBlock, xShape: Shape, opts: Conv2dOptions = {}): Tensor {
  const g = conv2dGeometry(xShape, sw.wShape, opts);
  checkSide(sw, g, 'sparse conv2d backward');
  const form = bn === 8 && sw.kept > 0 ? plan<Conv2dGeometry>('sparse.cotile', g) : null;
  if (form?.variant === 'on') {
    checkDy(dy, g);
    const dx = empty(xShape);
    if (dx.size > 0) coTileLaunch(dy, w, sw, dx, g, form.params.px as number, form.params.ct as number);
    return dx;
  }
  const vals = sparseGather(w, sw.side(bn, false));
  const dx = backwardInputByIn(dy, sw, vals, bn, xShape, opts);
  vals.dispose();
  return dx;
}

function checkDy(dy: Tensor, g: Conv2dGeometry): void {
  const want = [g.n, g.cout, g.oh, g.ow];
  if (dy.shape.join() !== want.join()) throw new Error(`sparse conv2d backward: dy [${dy.shape.join(', ')}] should be [${want.join(', ')}]`);
}

/** dx on the layout by input-channel block (direct or row-strip form); vals = sparseGather(w, sw.side(bn, false)). */
export function backwardInputByIn(dy: Tensor, sw: SparseWeight, vals: Tensor, bn: SparseBlock, xShape: Shape, opts: Conv2dOptions = {}): Tensor {
  const g = conv2dGeometry(xShape, sw.wShape, opts);
  checkSide(sw, g, 'sparse conv2d backward');
  checkDy(dy, g);
  const dx = empty(xShape);
  if (dx.size === 0) return dx;
  const side = sw.side(bn, false);
  const form = bn === 8 && side.entries > 0 ? blockedForm('dgrad', g) : null;
  if (form?.variant === 'strip') {
    stripLaunch(dy, side, vals, null, dx, g, true, form.px);
    return dx;
  }
  const phaseRows = g.n * Math.ceil(g.h / g.sh) * Math.ceil(g.w / g.sw);
  const t = sparseTile(phaseRows, bn);
  const k = cached(`bi|${t.wg}|${t.tm}|${bn}`, () => sparseConvBackwardInputKernel(t));
  const bufs = [dy, side.ptr, side.taps, vals, dx].map((b) => ({ buffer: b.buf }));
  const bpg = blocksPerGroup(Math.ceil(phaseRows / (t.wg * t.tm)) * g.sh * g.sw, side.blocks);
  queue.dispatch(k, bufs, params(g, g.n * g.h * g.w, 0, 0, bpg, side.blocks), rowGrid(phaseRows, t, Math.ceil(side.blocks / bpg) * g.sh * g.sw), () => tag('conv.dgrad', g, bn));
  return dx;
}

/**
 * dw of conv2d(x, w * mask) at the kept positions, exact +0 at pruned ones: dy [N, Cout, OH, OW],
 * x [N, Cin, H, W]. The split of the batch reduction depends only on shapes and layout (reproducible).
 */
export function sparseConv2dBackwardWeight(dy: Tensor, x: Tensor, sw: SparseWeight, bn: SparseBlock, opts: Conv2dOptions = {}): Tensor {
  const g = conv2dGeometry(x.shape, sw.wShape, opts);
  checkSide(sw, g, 'sparse conv2d backward');
  const want = [g.n, g.cout, g.oh, g.ow];
  if (dy.shape.join() !== want.join()) throw new Error(`sparse conv2d backward: dy [${dy.shape.join(', ')}] should be [${want.join(', ')}]`);
  const dw = fill(sw.wShape, 0);
  const side = sw.side(bn, true);
  const L = g.n * g.oh * g.ow;
  const n = side.entries * bn;
  if (L === 0 || n === 0) return dw;
  const lanes = plan<WgradLanes>('sparse.wgrad', lanesOf(side, n, g));
  if (lanes.variant === 'strip') {
    stripWgrad(dy, x, side, dw, g, n, lanes.params.wg as number, lanes.params.tt as number);
    return dw;
  }
  const rowsPlan = lanes.variant === 'rows' ? wgradRowsPlan(side, L, n) : null;
  if (rowsPlan) {
    const { t, splits, cps, la } = rowsPlan;
    const parts = empty([splits * t.wg, n]);
    const k = cached(`bwr|${t.wg}|${bn}`, () => sparseConvBackwardWeightRowsKernel(t));
    queue.dispatch(k, [dy, x, side.ptr, side.taps, parts].map((b) => ({ buffer: b.buf })), params(g, side.entries, L, la, cps), [side.blocks, splits, 1], () => tag('conv.wgrad', g, bn));
    scatterSum(parts, side, dw, n, splits * t.wg, bn);
    parts.dispose();
    return dw;
  }
  const t = sparseWgradTile(bn);
  // Tiles that have taps (the grid also holds empty ones: blocks are uneven); a software adapter needs
  // far fewer workgroups than a GPU, and each split costs a pass over its rows' dy.
  let tiles = 0;
  for (const c of side.counts) tiles += Math.ceil(c / (t.wg * t.tm));
  const nchunks = Math.ceil(L / WGRAD_CHUNK);
  const { splits, perSplit: cps } = splitK(tiles, nchunks, sparseGrid().groups, WGRAD_MIN_CHUNKS_PER_SPLIT);
  const parts = empty([splits, n]);
  const k = cached(`bw|${t.wg}|${t.tm}|${bn}`, () => sparseConvBackwardWeightKernel(t));
  const grid: Grid = [Math.ceil(side.maxEntries / (t.wg * t.tm)), side.blocks, splits];
  queue.dispatch(k, [dy, x, side.ptr, side.taps, parts].map((b) => ({ buffer: b.buf })), params(g, side.entries, L, WGRAD_CHUNK, cps), grid, () => tag('conv.wgrad', g, bn));
  scatterSum(parts, side, dw, n, splits, bn);
  parts.dispose();
  return dw;
}

/** Quads (4 pixels of a dy row) per reduction chunk of the strip weight gradient (32 pixels, as WGRAD_CHUNK). */
const STRIP_WGRAD_CHUNK = WGRAD_CHUNK / 4;

/** The blocked weight gradient by quads (sparseStripWgradKernel): lanes over kept taps, split over N*OH*OW/4. */
function stripWgrad(dy: Tensor, x: Tensor, side: SparseBlocks, dw: Tensor, g: Conv2dGeometry, n: number, wg: number, tt: number): void {
  const quads = (g.n * g.oh * g.ow) / 4;
  let tiles = 0;
  for (const c of side.counts) tiles += Math.ceil(c / (wg * tt));
  const { splits, perSplit } = splitK(tiles, Math.ceil(quads / STRIP_WGRAD_CHUNK), sparseGrid().groups, WGRAD_MIN_CHUNKS_PER_SPLIT);
  const cps = perSplit * STRIP_WGRAD_CHUNK;
  const nsplits = Math.ceil(quads / cps);
  const parts = empty([nsplits, n]);
  const k = cached(`bws|${wg}|${tt}`, () => sparseStripWgradKernel(wg, tt, CONV_STRUCT));
  const grid: Grid = [Math.ceil(side.maxEntries / (wg * tt)), side.blocks, nsplits];
  queue.dispatch(k, [dy, x, side.ptr, side.taps, parts].map((b) => ({ buffer: b.buf })), params(g, side.entries, quads, 0, cps), grid, () => ({ ...tag('conv.wgrad', g, 8), variant: 'sparse:blocked-strip' }));
  scatterSum(parts, side, dw, n, nsplits, 8);
  parts.dispose();
}

/** dw[idx[i]] = the fixed-order sum of the `slices` partial slices of slot i (padded slots skipped). */
function scatterSum(parts: Tensor, side: SparseBlocks, dw: Tensor, n: number, slices: number, bn: SparseBlock): void {
  const ks = cached('scatter', scatterSumKernel);
  const p = SPLIT_SUM_UNIFORM.pack({ n, splits: slices });
  queue.dispatch(ks, [parts, side.idx, dw].map((b) => ({ buffer: b.buf })), p, gridFor(n, SPARSE_MAP_WG), () => ({
    op: 'sparse.scatter',
    variant: `bn${bn}`,
    shape: `${slices}x${n}`,
    flops: slices * n,
    phase: 'weight-grad',
  }));
}

/** Partial sums the row-lane weight gradient may write (floats): beyond this the tap-lane kernel runs. */
const WGRAD_ROWS_MAX_PARTS = 1 << 22;

/** The row-lane kernel's lanes per workgroup. */
const ROW_LANES = 8;

/** What the weight gradient's lane choice looks at: the layout's kept taps, blocks with taps, slots. */
interface WgradLanes {
  bn: SparseBlock;
  entries: number;
  busy: number;
  slots: number;
  /** The conv suits the quad kernel (blocked layout, stride 1, no dilation, W and OW multiples of 4). */
  quads: boolean;
}

function lanesClass(g: WgradLanes): string {
  return `bn${g.bn} e${g.entries} b${g.busy} n${g.slots}${g.quads ? ' q' : ''}`;
}

function lanesOf(side: SparseBlocks, n: number, g: Conv2dGeometry): WgradLanes {
  return { bn: side.bn, entries: side.entries, busy: side.counts.filter((c) => c > 0).length, slots: n, quads: side.bn === 8 && stripSuitsBackwardWeight(g) };
}

/**
 * Lanes of the sparse weight gradient (the 'sparse.wgrad' family): 'taps' (sparseConvBackwardWeightKernel,
 * lanes over a block's kept taps) or 'rows' (the row-lane kernel, lanes over rows of N*OH*OW), which
 * suits while one split's per-lane partials stay under WGRAD_ROWS_MAX_PARTS, or 'strip' (blocked layout,
 * stride 1, rows of whole vec4s: sparseStripWgradKernel, lanes over kept taps walking 4-pixel quads,
 * 1, 2, 4 or 8 taps a lane). Software adapters take a strip tile where it suits (by kept taps per block);
 * otherwise the rule takes rows when blocks hold too few taps to fill the tap-lane kernel's lanes (fewer
 * on average than its lanes x taps per lane).
 */
registerFamily<WgradLanes>({
  family: 'sparse.wgrad',
  about: 'sparse conv/linear weight gradient: lanes over kept taps (scalar rows or 4-pixel quads), or over the batch rows for blocks with few taps',
  shapeClass: lanesClass,
  defaultRule: (g, dev, cands) => {
    // Blocks of up to 64 kept taps in one tile of 8 lanes x 8 taps: every lane slot past the list is
    // masked off in all lanes at once, which lavapipe skips, while each further tile repeats the dy
    // loads and the quad walk. On Meso-4's block:8 layers at 20% (5 and 40 taps a block) 8 taps a lane
    // measured 1.2-1.7x faster than 4, and 4 faster than 1 or 2; with more taps a block (80, ResNet's
    // 230) 4 a lane was 1.1-1.3x faster than 8 (bench/sparsity.ts --forms, same runs).
    if (g.quads && dev.isSoftware) {
      const perBlock = g.entries / Math.max(g.busy, 1);
      const tile = perBlock <= 64 ? '8x8' : '8x4';
      return cands.find((c) => c.variant === 'strip' && c.tile === tile) ?? cands[0];
    }
    const tap = sparseWgradTile(g.bn);
    const rows = g.entries / g.busy < tap.wg * tap.tm;
    return cands.find((c) => c.variant === (rows ? 'rows' : 'taps')) ?? cands[0];
  },
});
registerCandidates<WgradLanes>('sparse.wgrad', [
  { variant: 'taps' },
  { variant: 'rows', suits: (g) => g.busy > 0 && ROW_LANES * g.slots <= WGRAD_ROWS_MAX_PARTS },
  { variant: 'strip', tile: '8x1', params: { wg: 8, tt: 1 }, suits: (g) => g.quads },
  { variant: 'strip', tile: '8x2', params: { wg: 8, tt: 2 }, suits: (g) => g.quads },
  { variant: 'strip', tile: '8x4', params: { wg: 8, tt: 4 }, suits: (g) => g.quads },
  { variant: 'strip', tile: '8x8', params: { wg: 8, tt: 8 }, suits: (g) => g.quads },
]);

/**
 * The row-lane weight gradient's splits: enough workgroups (blocks with taps x splits) for the grid's
 * aim, each lane at least 32 rows, per-lane partials under WGRAD_ROWS_MAX_PARTS. Depends only on shapes,
 * layout and the planner's choices (reproducible).
 */
function wgradRowsPlan(side: SparseBlocks, L: number, n: number): { t: SparseTile; splits: number; cps: number; la: number } | null {
  const busy = side.counts.filter((c) => c > 0).length;
  const t: SparseTile = { wg: ROW_LANES, tm: 1, bn: side.bn };
  let splits = Math.max(1, Math.min(Math.ceil(sparseGrid().groups / busy), Math.floor(L / (t.wg * 32)), 65535));
  while (splits > 1 && splits * t.wg * n > WGRAD_ROWS_MAX_PARTS) splits = Math.floor(splits / 2);
  if (splits * t.wg * n > WGRAD_ROWS_MAX_PARTS) return null;
  const cps = Math.ceil(L / splits);
  splits = Math.ceil(L / cps);
  return { t, splits, cps, la: Math.ceil(cps / t.wg) };
}

// ---------------------------------------------------------------------------------------------
// Levels recorded before the row-strip forms

/**
 * The forms of the blocked layout that a conv layer ran before the row-strip forms existed (the
 * 'direct' forward and input gradient, the weight gradient's earlier rule: rows when blocks hold fewer
 * taps than the tap-lane kernel's lanes, else taps), as planner choices. A level recorded then has no
 * 'sparse.blocked' entries in its kernels.json; resuming it with these choices keeps its bits.
 */
export function legacyBlockedChoices(sw: SparseWeight, xShape: Shape, opts: Conv2dOptions): Record<PlanKey, string> {
  const g = conv2dGeometry(xShape, sw.wShape, opts);
  const out: Record<PlanKey, string> = {};
  for (const pass of ['fwd', 'dgrad'] as const) out[planKey('sparse.blocked', `${pass} ${convShapeClass(g)}`)] = 'direct';
  const side = sw.side(8, true);
  const lanes = lanesOf(side, side.entries * 8, g);
  if (lanes.quads && lanes.busy > 0) {
    const tap = sparseWgradTile(8);
    const rows = lanes.entries / lanes.busy < tap.wg * tap.tm && ROW_LANES * lanes.slots <= WGRAD_ROWS_MAX_PARTS;
    out[planKey('sparse.wgrad', lanesClass(lanes))] = rows ? 'rows' : 'taps';
  }
  return out;
}

// Sparse convolution family: conv2d (and linear, as a 1x1 conv on a 1x1 image) that skips pruned
// weights. NCHW float32, weight [Cout, Cin, KH, KW], groups = 1, geometry (stride, padding incl. Keras
// 'same', dilation) exactly as the dense kernels of conv.ts, from the same uniform struct.
//
// Layout (built on the host from the 0/1 mask, once per level; src/tensor/ops/sparse.ts): the channels
// of one side are cut into blocks of BN. A block owns the list of taps kept by ANY of its channels, in
// (channel, ky, kx) order, each tap packed as c << 16 | ky << 8 | kx, and BN values per tap (0 for a
// channel that pruned it):
//
//   ptr  [blocks + 1]   the block's taps are taps[ptr[b] .. ptr[b + 1])
//   taps [entries]      packed (c, ky, kx): c is the input channel by output block, the output channel
//                       by input block
//   vals [entries * BN] surviving weights, gathered from the dense weight by gatherKernel
//
// BN = 1 is a plain compressed-row list (per output channel the surviving (ci, ky, kx)): no padding,
// one FMA per per-lane load. BN = 8 is the blocked candidate: the union of 8 channels' taps, 8 FMAs
// per load (the dense direct kernel's ratio), zeros where a channel pruned a tap its neighbours keep.
// Which one wins depends on density and shape; the planner times them.
//
// Why the kernels look like this (lavapipe, see the DIRECT section of conv.ts): a workgroup walks ONE
// block's list, so every tap/value read is uniform (one scalar load and a broadcast) and control flow
// stays coherent across the SIMD lanes; lanes run over output pixels (forward, input-gradient) or over
// the block's taps (weight-gradient). No workgroup memory, no barriers. On a GPU the same structure
// gives coalesced pixel loads and broadcast weights; tiles for large GPUs are future work.
import { CONV_STRUCT, SPLIT_SUM_UNIFORM } from './conv.js';
import {
  FAR,
  forwardStoreWgsl,
  forwardTapWgsl,
  indentWgsl,
  INPUT_GRAD_STORE_WGSL,
  inputGradTapWgsl,
  laneConstsWgsl,
  outputRowsWgsl,
  PACKED_TAP_WGSL,
  PHASE_PROLOGUE_WGSL,
  phaseRowsWgsl,
  rowWalkWgsl,
  tapShiftWgsl,
  tapTableWgsl,
} from './conv-fragments.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';

/**
 * The start of a forward or input-gradient kernel's walk over its run of `cps` blocks (z: its index
 * among the runs): per block, the block's first channel c0, fresh accumulators, and the loop over the
 * block's taps with each tap decoded (tc, ky, kx). The kernel closes both loops after its tap body and
 * store.
 */
function blockWalkWgsl(z: string, accs: number): string {
  return `  let bEnd = min(${z} * p.cps + p.cps, p.nchunks);
  for (var blk = ${z} * p.cps; blk < bEnd; blk++) {
  let c0 = blk * BN;
  // Explicitly zeroed: a declaration's implicit zero may be hoisted out of the loop by the compiler.
  var acc = array<f32, ${accs}>();
  let eEnd = ptr[blk + 1u];
  for (var e = ptr[blk]; e < eEnd; e++) {
${indentWgsl(PACKED_TAP_WGSL, 4)}`;
}

/** Marks a padded slot of a block (a channel that pruned the tap, or a channel past the last). */
export const SPARSE_NONE = 0xffffffff;

/** Work split of a sparse kernel: WG lanes, TM rows (or taps) per lane, BN channels per block. */
export interface SparseTile {
  wg: number;
  tm: number;
  bn: number;
}

function key(t: SparseTile): string {
  return `wg${t.wg}_tm${t.tm}_bn${t.bn}`;
}

/**
 * Sparse conv2d forward: a workgroup = WG*TM output pixels x a run of `cps` blocks of BN output channels
 * (blocks [wid.z * cps, min(+cps, nchunks))), walking each block's taps in turn. Per tap a lane does TM
 * per-lane loads of x, BN uniform loads of weights and TM*BN FMAs. The pixel decomposition (integer
 * divisions, scalarised on lavapipe) is done once for all the run's blocks: with one block per
 * workgroup it cost more than the taps of a sparse layer. Bindings: x, ptr, taps, vals, [bias], y,
 * params. Grid: (rows / (WG*TM) over x/y, ceil(blocks / cps) on z).
 * Fast for: any conv once density is low enough that (kept taps of a block) * (load cost) beats the
 * dense direct kernel's full walk; BN = 1 below ~20% density, BN = 8 when neighbours share taps.
 */
export function sparseConvForwardKernel(bias: boolean, t: SparseTile): Kernel {
  const name = `sparse_conv_fwd${bias ? '_bias' : ''}_${key(t)}`;
  const code = `// ${name}
${CONV_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> ptr: array<u32>;
@group(0) @binding(2) var<storage, read> taps: array<u32>;
@group(0) @binding(3) var<storage, read> vals: array<f32>;
${bias ? '@group(0) @binding(4) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(${bias ? 5 : 4}) var<storage, read_write> y: array<f32>;
@group(0) @binding(${bias ? 6 : 5}) var<uniform> p: P;
${laneConstsWgsl(t)}

@compute @workgroup_size(${t.wg})
fn main(${GRID_BUILTINS_WGSL}) {
${outputRowsWgsl(t.tm)}
${blockWalkWgsl('wid.z', t.tm * t.bn)}
    let dy = i32(ky * p.dh);
    let dx = i32(kx * p.dw);
    let xo = tc * HW;
    var wv: array<f32, ${t.bn}>;
    for (var j = 0u; j < BN; j++) { wv[j] = vals[e * BN + j]; }
${indentWgsl(forwardTapWgsl('xo'), 4)}
  }
${forwardStoreWgsl(bias)}
  }
}
`;
  return { name, code, bindings: bias ? ['read', 'read', 'read', 'read', 'read', 'write', 'uniform'] : ['read', 'read', 'read', 'read', 'write', 'uniform'] };
}

/**
 * Sparse conv2d backward-input by stride phase (PHASE_WGSL): a workgroup = WG*TM input pixels of one
 * phase x a run of `cps` blocks of BN input channels (as the forward), walking each block's (co, ky, kx)
 * list; taps that do not land on an output for this phase are skipped (a uniform branch). Bindings: dy,
 * ptr, taps, vals, dx, params. Grid: (N*ceil(H/sh)*ceil(W/sw) / (WG*TM) over x/y, ceil(blocks / cps) *
 * sh * sw on z).
 * Fast for: the same densities as the forward; at stride > 1 a block's list is walked once per phase,
 * so each phase pays the decode of every tap (cheap: uniform bit operations).
 */
export function sparseConvBackwardInputKernel(t: SparseTile): Kernel {
  const name = `sparse_conv_bwd_input_${key(t)}`;
  const code = `// ${name}
${CONV_STRUCT}
@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> ptr: array<u32>;
@group(0) @binding(2) var<storage, read> taps: array<u32>;
@group(0) @binding(3) var<storage, read> vals: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
${laneConstsWgsl(t)}

@compute @workgroup_size(${t.wg})
fn main(${GRID_BUILTINS_WGSL}) {
${PHASE_PROLOGUE_WGSL}
  let sh = i32(p.sh);
  let sw = i32(p.sw);
${phaseRowsWgsl(t.tm)}
${blockWalkWgsl('cb', t.tm * t.bn)}
    let ty = i32(ry) + p.pt - i32(ky * p.dh);
    if (ty % sh != 0) { continue; }
    let tx = i32(rx) + p.pl - i32(kx * p.dw);
    if (tx % sw != 0) { continue; }
    let cy = ty / sh;
    let cx = tx / sw;
    let dyo = tc * P_;
    var wv: array<f32, ${t.bn}>;
    for (var j = 0u; j < BN; j++) { wv[j] = vals[e * BN + j]; }
${indentWgsl(inputGradTapWgsl('dyo'), 4)}
  }
${INPUT_GRAD_STORE_WGSL}
  }
}
`;
  return { name, code, bindings: ['read', 'read', 'read', 'read', 'write', 'uniform'] };
}

/**
 * Masked (SDDMM-style) conv2d backward-weight: only the kept taps are computed, each a dot product of
 * dy[:, co] with the tap's shifted x over (n, oh, ow). A workgroup = WG*TM taps of one output block
 * (lanes over taps, per-lane x loads) x BN output channels (uniform dy loads), reducing rows
 * [split * cps * la, ...) of N*OH*OW; results go to parts[split, entries * BN] in the layout's order and
 * scatterSumKernel adds the splits and writes them into the (zeroed) dense gradient. Bindings: dy, x,
 * ptr, taps, parts, params (rows = entries, red = N*OH*OW, la = rows per chunk, cps = chunks per
 * split). Grid: (ceil(max block entries / (WG*TM)), blocks, splits).
 * Fast for: low density (work is proportional to the kept taps). BN = 1 pays one per-lane x load per
 * FMA; BN = 8 amortises it over 8 channels but computes padded slots too. Blocks with few kept taps
 * leave lanes idle (8 lanes x TM taps per workgroup).
 */
export function sparseConvBackwardWeightKernel(t: SparseTile): Kernel {
  const name = `sparse_conv_bwd_weight_${key(t)}`;
  const code = `// ${name}
${CONV_STRUCT}
@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> ptr: array<u32>;
@group(0) @binding(3) var<storage, read> taps: array<u32>;
@group(0) @binding(4) var<storage, read_write> parts: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
${laneConstsWgsl(t)}

@compute @workgroup_size(${t.wg})
fn main(${GRID_BUILTINS_WGSL}) {
  let blk = wid.y;
  let eBeg = ptr[blk] + wid.x * WG * TM;
  let eEnd = ptr[blk + 1u];
  if (eBeg >= eEnd) { return; }
  let P_ = p.oh * p.ow;
  let HW = p.h * p.w;
  let c0 = blk * BN;
  let clast = p.cout - 1u;
  let split = wid.z;
${tapTableWgsl({ n: t.tm, count: 'TM', slot: 'e', at: 'eBeg + lid + i * WG', limit: 'eEnd', decode: PACKED_TAP_WGSL, plane: 'tc' })}
  var acc: array<f32, ${t.tm * t.bn}>;
  let lBeg = min(split * p.cps * p.la, p.red);
  let lEnd = min(lBeg + p.cps * p.la, p.red);
${rowWalkWgsl('TM', t.bn)}
  let ob = split * p.rows * BN;
  for (var i = 0u; i < TM; i++) {
    let e = eBeg + lid + i * WG;
    if (e >= eEnd) { continue; }
    for (var j = 0u; j < BN; j++) { parts[ob + e * BN + j] = acc[i * BN + j]; }
  }
}
`;
  return { name, code, bindings: ['read', 'read', 'read', 'read', 'write', 'uniform'] };
}

/** Taps per pass of the row-lane weight gradient (its register block: TT x BN accumulators). */
export const WGRAD_ROWS_TT = 4;

/**
 * Masked conv2d backward-weight with lanes over the reduction rows, for blocks with few kept taps
 * (low density, small kernels), where the tap-lane kernel above leaves most lanes idle: a workgroup =
 * one block x one split of N*OH*OW; each lane reduces its own contiguous run of rows (counters, no
 * division per row) for WGRAD_ROWS_TT of the block's taps at a time (uniform tap decode), and writes
 * its partial sums to parts[(split * WG + lane), entries * BN]; scatterSumKernel adds the
 * splits * WG slices in a fixed order. Per (row, tap): one per-lane x load and BN FMAs; per row and
 * pass: BN per-lane dy loads. Bindings as sparseConvBackwardWeightKernel (la = rows per lane run,
 * cps = rows per split). Grid: (blocks, splits, 1).
 */
export function sparseConvBackwardWeightRowsKernel(t: SparseTile): Kernel {
  const name = `sparse_conv_bwd_weight_rows_${key(t)}`;
  const TT = WGRAD_ROWS_TT;
  const code = `// ${name}
${CONV_STRUCT}
@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> ptr: array<u32>;
@group(0) @binding(3) var<storage, read> taps: array<u32>;
@group(0) @binding(4) var<storage, read_write> parts: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
${laneConstsWgsl(t)}
const TT = ${TT}u;

@compute @workgroup_size(${t.wg})
fn main(${GRID_BUILTINS_WGSL}) {
  let blk = wid.x;
  let split = wid.y;
  let eBeg = ptr[blk];
  let eEnd = ptr[blk + 1u];
  if (eBeg >= eEnd) { return; }
  let P_ = p.oh * p.ow;
  let HW = p.h * p.w;
  let c0 = blk * BN;
  let clast = p.cout - 1u;
  let lBeg = min(split * p.cps + lid * p.la, p.red);
  let lEnd = min(min(lBeg + p.la, split * p.cps + p.cps), p.red);
  let ob = (split * WG + lid) * p.rows * BN;
  for (var e0 = eBeg; e0 < eEnd; e0 += TT) {
${indentWgsl(tapTableWgsl({ n: TT, count: 'TT', slot: 'e', at: 'e0 + i', limit: 'eEnd', decode: PACKED_TAP_WGSL, plane: 'tc', zero: true }), 4)}
    var acc = array<f32, ${TT * t.bn}>();
${indentWgsl(rowWalkWgsl('TT', t.bn), 4)}
    for (var i = 0u; i < TT; i++) {
      let e = e0 + i;
      if (e >= eEnd) { continue; }
      for (var j = 0u; j < BN; j++) { parts[ob + e * BN + j] = acc[i * BN + j]; }
    }
  }
}
`;
  return { name, code, bindings: ['read', 'read', 'read', 'read', 'write', 'uniform'] };
}

export const SPARSE_MAP_WG = 256;
// gatherKernel / scatterSumKernel take SPLIT_SUM_UNIFORM: n (slots), splits.


/**
 * vals[i] = w[idx[i]], or +0 for a padded slot (idx = SPARSE_NONE). Run after every optimizer step (in
 * practice: at each forward), so the compressed values always follow the dense weight.
 * Bindings: w, idx, vals, params.
 */
export function gatherKernel(): Kernel {
  const code = `// sparse_gather
${SPLIT_SUM_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> vals: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

@compute @workgroup_size(${SPARSE_MAP_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(SPARSE_MAP_WG)};
  if (i >= p.n) { return; }
  let k = idx[i];
  vals[i] = select(0.0, w[min(k, arrayLength(&w) - 1u)], k != ${SPARSE_NONE}u);
}
`;
  return { name: 'sparse_gather', code, bindings: ['read', 'read', 'write', 'uniform'] };
}

/**
 * dw[idx[i]] = sum over s = 0..splits-1, in that order, of parts[s * n + i], for the kept slots (padded
 * slots are skipped). dw is zero-filled beforehand, so pruned positions hold exact +0.
 * Bindings: parts, idx, dw, params.
 */
export function scatterSumKernel(): Kernel {
  const code = `// sparse_scatter_sum
${SPLIT_SUM_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

@compute @workgroup_size(${SPARSE_MAP_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(SPARSE_MAP_WG)};
  if (i >= p.n) { return; }
  let k = idx[i];
  if (k == ${SPARSE_NONE}u) { return; }
  var s = 0.0;
  for (var j = 0u; j < p.splits; j++) { s += parts[j * p.n + i]; }
  dw[k] = s;
}
`;
  return { name: 'sparse_scatter_sum', code, bindings: ['read', 'read', 'write', 'uniform'] };
}

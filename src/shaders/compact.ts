// Compaction family: what a physically smaller network needs beyond the gather and scatter of
// sparse-conv.ts (gatherKernel: out[i] = x[idx[i]]; scatterSumKernel with one split: out[idx[i]] = g[i]).
//
// running_writeback: a compacted batch norm normalises only the kept channels, on gathered copies of
// the running statistics; this writes them back into the full buffers. A channel whose filter was
// removed is exactly 0 in the masked network, whose batch norm then averages mean 0 and variance 0
// into it: r = (1 - m) * r + m * 0, the same f32 expression as bn_stats_finalize, so the full buffers
// hold the masked network's bits. A channel that carries a constant v (a dead filter whose bias or
// batch-norm channel still learns, nn/compact.ts) averages mean v and variance 0 in, as the masked
// network's statistics of a constant map do. A channel removed because nothing reads it keeps its
// statistics.
// One lane per channel of the full layer (a few dozen: one workgroup); no tiling to speak of.
import { GRID_BUILTINS_WGSL, linearIndexWgsl, type Kernel } from './kernel.js';
import { uniformStruct } from './uniform.js';

export const COMPACT_WG = 64;
/** pos[c] of a removed channel whose statistics decay as a zero channel's. */
export const COMPACT_DECAY = 0xffffffff;
/** pos[c] of a removed channel whose statistics stay as they are. */
export const COMPACT_KEEP = 0xfffffffe;
/** pos[c] = COMPACT_CONST + j: a removed channel holding the constant cval[j]. */
export const COMPACT_CONST = 0x80000000;

export const RUNNING_UNIFORM = uniformStruct([['n', 'u32'], ['momentum', 'f32']] as const);

/** Bindings: pos (u32 per full channel: its compact index, or COMPACT_DECAY / COMPACT_KEEP / COMPACT_CONST + j), mean_c, var_c, cval, mean, var, params. */
export function runningWritebackKernel(): Kernel {
  const code = `// compact_running_writeback
${RUNNING_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> pos: array<u32>;
@group(0) @binding(1) var<storage, read> cmean: array<f32>;
@group(0) @binding(2) var<storage, read> cvar: array<f32>;
@group(0) @binding(3) var<storage, read> cval: array<f32>;
@group(0) @binding(4) var<storage, read_write> rmean: array<f32>;
@group(0) @binding(5) var<storage, read_write> rvar: array<f32>;
@group(0) @binding(6) var<uniform> p: P;

@compute @workgroup_size(${COMPACT_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let c = ${linearIndexWgsl(COMPACT_WG)};
  if (c >= p.n) { return; }
  let k = pos[c];
  if (k == ${COMPACT_KEEP}u) { return; }
  if (k == ${COMPACT_DECAY}u) {
    let m = p.momentum;
    rmean[c] = (1.0 - m) * rmean[c] + m * 0.0;
    rvar[c] = (1.0 - m) * rvar[c] + m * 0.0;
    return;
  }
  if (k >= ${COMPACT_CONST}u) {
    let m = p.momentum;
    rmean[c] = (1.0 - m) * rmean[c] + m * cval[k - ${COMPACT_CONST}u];
    rvar[c] = (1.0 - m) * rvar[c] + m * 0.0;
    return;
  }
  rmean[c] = cmean[k];
  rvar[c] = cvar[k];
}
`;
  return { name: 'compact_running_writeback', code, bindings: ['read', 'read', 'read', 'read', 'write', 'write', 'uniform'] };
}

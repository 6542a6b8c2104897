// Compaction's raw ops: gathering kept entries of a tensor into a smaller one, scattering a smaller
// one's gradient back into a zeroed full-size tensor, and writing a compacted batch norm's running
// statistics back (shaders/compact.ts). Index lists are u32 tensors of flat positions built on the host
// once per level. No autograd here (autograd/functional-nn.ts gatherAt).
import { gatherKernel, scatterSumKernel, SPARSE_MAP_WG, SPARSE_NONE } from '../../shaders/sparse-conv.js';
import { COMPACT_WG, RUNNING_UNIFORM, runningWritebackKernel } from '../../shaders/compact.js';
export { COMPACT_CONST, COMPACT_DECAY, COMPACT_KEEP } from '../../shaders/compact.js';
import { SPLIT_SUM_UNIFORM } from '../../shaders/conv.js';
import { gridFor } from '../../shaders/kernel.js';
import { cachedKernel, registerCandidates, registerFamily, plan } from '../plan.js';
import { queue } from '../queue.js';
import { empty, type Shape, type Tensor } from '../tensor.js';
import { fill } from './map.js';

/** out[i] = x[idx[i]] (flat positions), shaped `shape` (its size is idx's). */
export function gatherAt(x: Tensor, idx: Tensor, shape: Shape): Tensor {
  const out = empty(shape);
  const n = out.size;
  if (n !== idx.size) throw new Error(`gatherAt: ${idx.size} positions for a [${shape.join(', ')}] result`);
  if (n === 0) return out;
  const k = cachedKernel('compact|gather', gatherKernel);
  queue.dispatch(k, [x, idx, out].map((t) => ({ buffer: t.buf })), SPLIT_SUM_UNIFORM.pack({ n, splits: 0 }), gridFor(n, SPARSE_MAP_WG), () => ({ op: 'compact.gather', shape: `${n}`, flops: 0 }));
  return out;
}

/**
 * The inverse of distinct flat positions `flat` in a tensor of `size` elements: inv[j] = i where
 * flat[i] = j, else SPARSE_NONE. gatherAt(g, inv, full shape) is then gatherAt's gradient in one
 * dispatch (the gather kernel writes +0 where inv is SPARSE_NONE), instead of a fill and a scatter.
 */
export function inversePositions(flat: readonly number[], size: number): Uint32Array {
  const inv = new Uint32Array(size).fill(SPARSE_NONE);
  flat.forEach((j, i) => {
    if (inv[j] !== SPARSE_NONE) throw new Error(`inversePositions: position ${j} listed twice`);
    inv[j] = i;
  });
  return inv;
}

/** A zeroed tensor of `shape` with out[idx[i]] = g[i] (positions distinct): gatherAt's gradient. */
export function scatterAt(g: Tensor, idx: Tensor, shape: Shape): Tensor {
  const out = fill(shape, 0);
  const n = g.size;
  if (n !== idx.size) throw new Error(`scatterAt: ${idx.size} positions for ${n} values`);
  if (n === 0) return out;
  const k = cachedKernel('compact|scatter', scatterSumKernel);
  queue.dispatch(k, [g, idx, out].map((t) => ({ buffer: t.buf })), SPLIT_SUM_UNIFORM.pack({ n, splits: 1 }), gridFor(n, SPARSE_MAP_WG), () => ({ op: 'compact.scatter', shape: `${n}`, flops: 0 }));
  return out;
}

/**
 * Writes a compacted batch norm's running statistics (mean_c, var_c, updated by its forward) back
 * into the full buffers: pos[c] is channel c's compact index, or COMPACT_DECAY (a zero channel's
 * update at `momentum`), COMPACT_KEEP (left as is) or COMPACT_CONST + j (a constant channel's update
 * toward cval[j]). See shaders/compact.ts.
 */
export function writeBackRunning(pos: Tensor, meanC: Tensor, varC: Tensor, cval: Tensor | null, mean: Tensor, variance: Tensor, momentum: number): void {
  const n = mean.size;
  if (pos.size !== n || variance.size !== n) throw new Error(`writeBackRunning: ${pos.size} positions for ${n} channels`);
  const k = cachedKernel('compact|running', runningWritebackKernel);
  // Empty compact buffers still need a binding: bind the full ones, which the kernel then never reads.
  const mc = meanC.size ? meanC : mean;
  const vc = varC.size ? varC : variance;
  const cv = cval?.size ? cval : mc;
  queue.dispatch(k, [pos, mc, vc, cv, mean, variance].map((t) => ({ buffer: t.buf })), RUNNING_UNIFORM.pack({ n, momentum }), gridFor(n, COMPACT_WG), () => ({ op: 'compact.running', shape: `${n}`, flops: 0 }));
}

/**
 * The planner's 'compaction' family: whether a level whose masks leave whole channels removable runs
 * the masked network ('masked') or the physically smaller one (nn/compact.ts, 'compacted'). One choice
 * per model; the geometry is the channels each compaction site keeps (`conv1 5/8 conv2 3/8 ...`), so
 * the level's kernels.json records it and a resumed level is pinned to it. Default: compacted, which
 * computes the same function on fewer channels.
 */
export type CompactionChoice = 'masked' | 'compacted';
registerFamily<{ sites: string }>({
  family: 'compaction',
  about: 'pruned models with removable channels: the masked network, or a physically smaller dense one',
  shapeClass: (g) => g.sites,
  defaultRule: (_g, _dev, cands) => cands.find((c) => c.id === 'compacted') ?? cands[0],
});
registerCandidates<{ sites: string }>('compaction', [{ variant: 'masked' }, { variant: 'compacted' }]);

/** The planner's choice for a model whose compaction sites keep `sites` (see the family above). */
export function compactionChoice(sites: string): CompactionChoice {
  return plan<{ sites: string }>('compaction', { sites }).id as CompactionChoice;
}

/**
 * The planner's 'fused.compact' family: whether a compacted model's layers ride the fusions a dense
 * model gets (a compacted layer is a plain dense layer on fewer channels): batch norm with its ReLU
 * and max pool in the fused kernels (fused.bn-relu, fused.bn-pool, fused.bn-pool-bwd) on the gathered
 * parameters, and the conv bias's gradient from the BN backward (fused.bn-bias-grad), each still the
 * planner's choice in its own family; or ('unfused') the separate chains compacted layers ran before.
 * The bias's gradient is then summed in another order, so runs recorded before this family ('legacy')
 * keep the chains. Geometry: the compaction sites, as 'compaction'.
 */
registerFamily<{ sites: string }>({
  family: 'fused.compact',
  about: "a compacted model's layers on the fused batch-norm / ReLU / pool kernels and the BN-delivered conv bias gradient, or the separate chains",
  shapeClass: (g) => g.sites,
  defaultRule: (_g, _dev, cands) => cands.find((c) => c.id === 'fused') ?? cands[0],
  legacy: 'unfused',
});
registerCandidates<{ sites: string }>('fused.compact', [{ variant: 'fused' }, { variant: 'unfused' }]);

/** Whether a compacted model whose sites keep `sites` takes the fused paths (the family above). */
export function compactFused(sites: string): boolean {
  return plan<{ sites: string }>('fused.compact', { sites }).variant === 'fused';
}

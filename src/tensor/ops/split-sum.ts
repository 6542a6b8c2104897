// Split-K reductions of the weight gradients (dense, strip and sparse conv): a long reduction over
// N*OH*OW is cut into splits that run as separate workgroups, each writing its own partial slice, and a
// second pass adds the slices in index order. The split count depends only on shapes (and the planner's
// choices), never on timing, so the sum order, and every bit of the result, is reproducible.
import { SPLIT_SUM_UNIFORM, SPLIT_SUM_WG, splitSumKernel } from '../../shaders/conv.js';
import { gridFor } from '../../shaders/kernel.js';
import { cachedKernel } from '../plan.js';
import { queue } from '../queue.js';
import type { DispatchTag } from '../trace.js';
import type { Tensor } from '../tensor.js';

/** Workgroups the split-K weight gradients aim for on GPUs (enough to fill a large one). */
export const WGRAD_TARGET_GROUPS = 512;
/**
 * Workgroups a weight gradient aims for on a software adapter: enough for every core, few enough that
 * each split's pass over its rows of dy and its partial slice stay small against the work.
 */
export const WGRAD_SOFT_TARGET_GROUPS = 64;
/** A split reduces at least this many chunks, so partials stay small against the work. */
export const WGRAD_MIN_CHUNKS_PER_SPLIT = 4;
/** Reduction chunk (rows of N*OH*OW) of the direct and sparse weight gradients. */
export const WGRAD_CHUNK = 32;

/**
 * How a reduction of `chunks` chunks is split when each split runs `tiles` workgroups: enough splits to
 * reach `target` workgroups, each reducing at least `minChunks` chunks, and no split left empty.
 */
export function splitK(tiles: number, chunks: number, target: number, minChunks: number): { splits: number; perSplit: number } {
  let splits = Math.max(1, Math.min(Math.ceil(target / Math.max(tiles, 1)), Math.floor(chunks / minChunks), 65535));
  const perSplit = Math.ceil(chunks / splits);
  splits = Math.ceil(chunks / perSplit);
  return { splits, perSplit };
}

/** out = the index-order sum of the `splits` slices of `parts` ([splits, ...out.shape]). */
export function dispatchSplitSum(parts: Tensor, out: Tensor, splits: number): void {
  const k = cachedKernel('conv.splitsum', splitSumKernel);
  const p = SPLIT_SUM_UNIFORM.pack({ n: out.size, splits });
  const tag = (): DispatchTag => ({ op: 'conv.splitsum', variant: 'splitsum', shape: `${splits}x${out.size}`, flops: splits * out.size, phase: 'weight-grad' });
  queue.dispatch(k, [{ buffer: parts.buf }, { buffer: out.buf }], p, gridFor(out.size, SPLIT_SUM_WG), tag);
}

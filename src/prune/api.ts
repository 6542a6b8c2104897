// One-call pruning for library users, in the spirit of torch.nn.utils.prune.global_unstructured:
//
//   const p = await prune(model, { amount: 0.2 });        // zero 20% of the weights, attach masks
//   await fit({ model, train, val, settings });           // pruned weights stay exactly 0 (masks ride on the model)
//   await prune(model, { amount: 0.2 });                  // another round: 20% of what is left
//   p.removeMasks();                                      // like prune.remove: the zeros stay, masks go
//
// The masks are the layers' own (Conv2d/Linear .mask), so everything that runs the model (forward, fit,
// evaluate, saving) sees them without being told; `removeMasks()` (alias `detach()`) is the only way
// they leave. Magnitude scores and the exact counts are prune/magnitude.ts's, the same as IMP's.
import type { Module } from '../nn/module.js';
import { applyMaskInPlace } from '../tensor/ops/optim.js';
import type { KernelMode } from '../tensor/sparse-plan.js';
import { noGrad } from '../autograd/tape.js';
import { ArgumentError } from '../util/errors.js';
import { attachMasks, detachMasks, onesMasks, prunableWeights, sparsityReport, type HostMasks, type PrunableWeight, type SparsityReport } from './masks.js';
import { magnitudeScores, pruneByRate, type Scope } from './magnitude.js';
import { parseGranularity, type Granularity } from './types.js';

export interface PruneOptions {
  /** Fraction of the still-kept prunable weights to prune, in [0, 1). */
  amount: number;
  /** One threshold over all prunable layers ('global', default) or the same fraction of each ('layer'). */
  scope?: Scope;
  /**
   * What one decision removes (prune/granularity.ts): 'weight' (default), 'block:4|8|16', 'channel' or
   * 'filter'; whole units are scored and counted as IMP does (prune/structured.ts). Under 'filter' only
   * the weights are masked: a pruned filter's bias and batch-norm channel stay as they are (IMP levels
   * also hold those at 0, prune/filter-companions.ts).
   */
  granularity?: Granularity;
  /** Prune the last linear layer (the classifier) too (default false, as IMP). */
  pruneLast?: boolean;
  /** Which kernels the pruned layers run (default 'dense'; nn/sparse.ts). */
  kernels?: KernelMode;
}

/** What prune() returns: the masks now on the model, their sparsity, and the way to take them off. */
export interface PruneHandle {
  readonly weights: readonly PrunableWeight[];
  /** Host copies of the masks (1 = kept), by weight key. */
  readonly masks: HostMasks;
  readonly report: SparsityReport;
  /** Takes the masks off the layers; the pruned weights stay 0 (torch's prune.remove). */
  removeMasks(): void;
  /** Same as removeMasks(). */
  detach(): void;
}

/** The masks the layers carry now (all kept where a layer has none). */
async function currentMasks(ws: readonly PrunableWeight[]): Promise<HostMasks> {
  const out = onesMasks(ws);
  for (const w of ws) {
    if (!w.layer.mask) continue;
    const m = (await w.layer.mask.toArray()) as Float32Array;
    out.set(w.key, Uint8Array.from(m, (v) => (v !== 0 ? 1 : 0)));
  }
  return out;
}

function checkOptions(o: PruneOptions): void {
  if (typeof o !== 'object' || o === null) throw new ArgumentError('prune', 'options', 'must be an object such as { amount: 0.2 }');
  if (!(typeof o.amount === 'number' && o.amount >= 0 && o.amount < 1)) throw new ArgumentError('prune', 'options.amount', `${String(o.amount)} must be a number in [0, 1)`);
  if (o.scope !== undefined && o.scope !== 'global' && o.scope !== 'layer') throw new ArgumentError('prune', 'options.scope', `'${String(o.scope)}' is not one of 'global' or 'layer'`);
  parseGranularity(String(o.granularity ?? 'weight'), 'prune', 'options.granularity');
}

/**
 * Prunes `amount` of the model's still-kept prunable weights by magnitude, zeroes them on the GPU and
 * attaches the masks to the layers (replacing any there: a second call prunes further, never revives).
 */
export async function prune(model: Module, o: PruneOptions): Promise<PruneHandle> {
  checkOptions(o);
  const ws = prunableWeights(model, o.pruneLast ?? false);
  if (!ws.length) throw new ArgumentError('prune', 'model', 'has no prunable (Conv2d or Linear) weights');
  const before = await currentMasks(ws);
  const sd = model.stateDict();
  const weights = new Map<string, Float32Array>();
  for (const w of ws) weights.set(w.key, (await sd.get(w.key)!.toArray()) as Float32Array);
  const g = o.granularity ?? 'weight';
  const structure = g === 'weight' ? undefined : { granularity: g, shapes: new Map(ws.map((w) => [w.key, w.shape])) };
  const masks = pruneByRate(before, magnitudeScores(weights), o.amount, o.scope ?? 'global', structure);
  const gpu = attachMasks(ws, masks, o.kernels ?? 'dense');
  // The stored weights become exactly 0 where pruned, so removing the masks later changes nothing.
  noGrad(() => {
    for (const w of ws) applyMaskInPlace(w.layer.weight, gpu.get(w.key)!);
  });
  const report = sparsityReport(masks, model.parameterCount());
  const removeMasks = () => detachMasks(ws);
  return { weights: ws, masks, report, removeMasks, detach: removeMasks };
}

// Batch-norm re-estimation (`--bn-reestimate N`): recompute every BatchNorm2d's running statistics
// over N training batches before a pruned or transferred model is evaluated. Pruning and transfer
// change the activations' statistics at once, but running statistics follow them only at momentum
// 0.1 per training step, so an evaluation right after (or a short retraining) normalises with stale
// numbers; a 400-image transfer target sat at 50% accuracy, AUC 0.78, until they converged.
//
// Semantics of torch.optim.swa_utils.update_bn: running mean and variance reset to 0 and 1, momentum
// None (a cumulative average: after k batches each running statistic is the plain mean of the k
// batches' statistics; variance unbiased, as in training), no gradient, momentum and modes restored
// afterwards. One difference, on purpose: only the batch-norm layers are put in training mode, so
// dropout stays off and its seeded stream (which a resumed run replays) is not drawn from. In the
// detectors no dropout sits before a batch norm, so the statistics are the same as torch's.
//
// The batches are the training split in a seeded order of their own (epoch BN_EPOCH of the loader,
// no flip), the same ones at every call: re-estimation is a function of the weights alone, so runs
// stay reproducible and resume bit-identically.
import type { Module } from '../nn/module.js';
import { BatchNorm2d } from '../nn/layers.js';
import type { Tensor } from '../tensor/tensor.js';
import { fromArray, tidy } from '../tensor/tensor.js';
import { writeTensor } from '../tensor/io.js';
import { queue } from '../tensor/queue.js';
import { noGrad } from '../autograd/tape.js';
import { DataLoader } from '../data/loader.js';
import type { Dataset } from '../data/datasets.js';

/** The loader epoch whose order re-estimation uses: far from any training epoch. */
export const BN_EPOCH = 0x3fffffff;

/** A batch of NCHW inputs. */
export interface InputBatch {
  x: Float32Array;
  shape: readonly number[];
}

type Forward = Module & { forward(x: Tensor): Tensor };

/** The momentum BatchNorm2d reads at each forward; re-estimation sets it per batch (1/k). */
type MutableMomentum = { momentum: number };

/**
 * Re-estimates the running statistics of `model`'s batch norms from the first `n` batches of
 * `batches` (fewer if it ends). Returns how many batches were used; 0 (and nothing changed) when the
 * model has no batch norm or n is 0.
 */
export async function reestimateBatchNorm(model: Forward, batches: AsyncIterable<InputBatch>, n: number): Promise<number> {
  const bns = [...model.namedModules()].map(([, m]) => m).filter((m): m is BatchNorm2d => m instanceof BatchNorm2d);
  if (!bns.length || n <= 0) return 0;
  const wasTraining = [...model.namedModules()].map(([, m]) => [m, m.training] as const);
  const momenta = bns.map((b) => b.momentum);
  for (const b of bns) {
    writeTensor(b.runningMean, new Float32Array(b.numFeatures));
    writeTensor(b.runningVar, new Float32Array(b.numFeatures).fill(1));
  }
  model.eval();
  for (const b of bns) b.training = true;
  let k = 0;
  try {
    for await (const batch of batches) {
      if (k >= n) break;
      k++;
      // Cumulative average: running <- running + (batch - running) / k.
      for (const b of bns) (b as unknown as MutableMomentum).momentum = 1 / k;
      noGrad(() => tidy(() => void model.forward(fromArray(batch.x, [...batch.shape]))));
      await queue.endStep();
    }
    await queue.sync();
  } finally {
    bns.forEach((b, i) => ((b as unknown as MutableMomentum).momentum = momenta[i]));
    for (const [m, t] of wasTraining) m.training = t;
  }
  return k;
}

/** The batches re-estimation reads from a training split: a seeded order of their own, no flip. */
export function reestimationBatches(ds: Dataset, batch: number, seed: number): AsyncIterable<InputBatch> {
  return new DataLoader(ds, { batchSize: batch, shuffle: true, seed, flip: false }).epoch(BN_EPOCH);
}

// Evaluation: a model's metrics on a dataset (eval mode, no grad), with NaN/Inf weights and logits
// refused rather than turned into plausible-looking numbers.
import type { Detector } from '../nn/models/index.js';
import { fromArray, keep, tidy } from '../tensor/tensor.js';
import { queue } from '../tensor/queue.js';
import { scatterSlice } from '../tensor/ops/layout.js';
import { fill } from '../tensor/ops/map.js';
import { noGrad } from '../autograd/tape.js';
import { DataLoader } from '../data/loader.js';
import type { Dataset } from '../data/datasets.js';
import { firstNonFinite, toHostTensors } from '../nn/checkpoint.js';
import { Progress } from '../util/progress.js';
import { binaryMetrics, type BinaryMetrics } from './metrics.js';

/** Logits (or weights being evaluated) that are NaN/Inf: metrics from them would be meaningless. */
export class NonFiniteError extends Error {
  constructor(what: string, count: number, total: number) {
    super(`${what}: ${count} of ${total} logits are NaN or infinite (the weights hold NaN/Inf, or overflow); no metrics from them`);
    this.name = 'NonFiniteError';
  }
}

/**
 * Evaluates a model on a dataset (eval mode, no grad): logits -> metrics. Weights holding NaN/Inf are an
 * error first (ReLU's max() turns NaN activations into 0, so such a model still prints a plausible
 * accuracy of 50%); `checkWeights: false` skips that readback where the caller has just checked them.
 */
export async function evaluate(model: Detector, ds: Dataset, batch: number, label = 'eval', progress = false, o: { checkWeights?: boolean } = {}): Promise<BinaryMetrics> {
  if (o.checkWeights !== false) {
    const bad = firstNonFinite(Object.entries(await toHostTensors(model.stateDict())).map(([k, t]) => [k, { data: t.data as ArrayLike<number> }]));
    if (bad) throw new Error(`${label}: the model's '${bad.key}' has ${bad.count} of ${bad.total} values NaN/Inf (diverged weights); no metrics from them`);
  }
  const wasTraining = model.training;
  model.eval();
  const loader = new DataLoader(ds, { batchSize: batch, shuffle: false });
  const n = ds.length();
  const logits = keep(fill([n], 0));
  const labels = new Float32Array(n);
  const bar = progress ? new Progress({ total: n, label, unit: 'img' }) : null;
  let at = 0;
  try {
    for await (const b of loader.epoch(0)) {
      noGrad(() =>
        tidy(() => {
          const x = fromArray(b.x, b.shape);
          const y = model.forward(x);
          scatterSlice(logits, y.reshape([b.n]), 0, at);
        }),
      );
      await queue.endStep();
      labels.set(b.y, at);
      at += b.n;
      bar?.tick(b.n);
    }
    const host = (await logits.toArray()) as Float32Array;
    bar?.done();
    if (at === 0) throw new Error(`${ds.name}: no readable image (${n} listed, all skipped or none)`);
    const scores = host.subarray(0, at);
    const bad = countNonFinite(scores);
    if (bad) throw new NonFiniteError(`${label} on ${ds.name}`, bad, at);
    return binaryMetrics(scores, labels.subarray(0, at));
  } finally {
    logits.dispose();
    if (wasTraining) model.train();
  }
}

function countNonFinite(a: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) n++;
  return n;
}

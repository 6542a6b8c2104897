// One detector training step (forward, BCE-with-logits, backward, Adam) on a fixed synthetic batch
// that stays on the device (as PyTorch benchmarks keep theirs): the workload the step benchmarks share.
import { fromArray, keep, tidy, type Tensor } from '../src/tensor/index.js';
import type { Detector } from '../src/nn/models/index.js';
import { Optimizer } from '../src/nn/optim/optimizer.js';
import { backward } from '../src/autograd/tape.js';
import * as F from '../src/autograd/functional.js';

export interface TrainStep {
  step: () => void;
  opt: Optimizer;
  /** The resident input batch (for inference timing). */
  x: Tensor;
  dispose: () => void;
}

export function trainStep(m: Detector, size: number, batch: number): TrainStep {
  const named = [...m.namedParameters()];
  const opt = new Optimizer(named.map(([, t]) => t), { kind: 'adam', lr: 1e-4 }, named.map(([k]) => k));
  const x = keep(fromArray(new Float32Array(batch * 3 * size * size).map((_, i) => Math.sin(i) * 0.5 + 0.5), [batch, 3, size, size]));
  const y = keep(fromArray(new Float32Array(batch).map((_, i) => i % 2), [batch, 1]));
  const step = () =>
    tidy(() => {
      backward(F.bceWithLogits(m.forward(x), y));
      opt.step();
      opt.zeroGrad();
    });
  return {
    step,
    opt,
    x,
    dispose: () => {
      opt.dispose();
      x.dispose();
      y.dispose();
    },
  };
}

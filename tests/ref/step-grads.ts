// One training step's gradients of a masked detector under a given kernel choice: shared by the
// kernel-divergence test (tests/prune/kernel-divergence.test.ts) and its bench (bench/kernel-divergence-step.ts).
import { backward } from '../../src/autograd/tape.js';
import * as F from '../../src/autograd/functional.js';
import type { Detector } from '../../src/nn/models/index.js';
import { attachMasks, detachMasks, prunableWeights, type HostMasks } from '../../src/prune/masks.js';
import { setKernelOverride } from '../../src/tensor/plan.js';
import type { KernelMode } from '../../src/tensor/sparse-plan.js';
import { fromArray, tidy } from '../../src/tensor/index.js';

export interface StepInput {
  /** A fresh model each call (same weights every time). */
  model: () => Promise<Detector>;
  masks: (ws: ReturnType<typeof prunableWeights>) => Promise<HostMasks>;
  pruneLast: boolean;
  xs: Float32Array;
  ys: Float32Array;
  shape: [number, number, number, number];
}

/** Gradient of every parameter after forward + BCE + backward with `mode` and `override` (TICKETLAB_KERNELS syntax). */
export async function stepGradients(inp: StepInput, mode: KernelMode, override: string | null): Promise<Map<string, Float32Array>> {
  setKernelOverride(override);
  const model = await inp.model();
  const ws = prunableWeights(model, inp.pruneLast);
  try {
    attachMasks(ws, await inp.masks(ws), mode);
    model.train(true);
    tidy(() => {
      backward(F.bceWithLogits(model.forward(fromArray(inp.xs, inp.shape)), fromArray(inp.ys, [inp.shape[0], 1])));
    });
    const out = new Map<string, Float32Array>();
    for (const [k, p] of model.stateDict()) if (p.grad) out.set(k, (await p.grad.toArray()) as Float32Array);
    return out;
  } finally {
    detachMasks(ws);
    model.dispose();
    setKernelOverride(null);
  }
}

/** max |a - b| / max |b| (0 when both are all zero). */
export function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return s > 0 ? d / s : d;
}

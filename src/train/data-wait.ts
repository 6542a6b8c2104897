// How much of a training step waits for data: training steps fed by a real DataLoader (bytes to the
// device, converted there, as fit() does), timing the host's wait for each next batch against the
// wall clock of the whole loop. `ticketlab profile --data` prints it beside the kernel profile.
import { backward } from '../autograd/tape.js';
import * as F from '../autograd/functional.js';
import type { Detector } from '../nn/models/index.js';
import { Optimizer } from '../nn/optim/optimizer.js';
import type { DataLoader } from '../data/loader.js';
import { queue } from '../tensor/queue.js';
import { fromArray, tidy } from '../tensor/tensor.js';
import { batchInput } from './batch-input.js';

export interface DataWait {
  steps: number;
  images: number;
  /** wall-clock ms per step, data included */
  stepMs: number;
  /** ms per step the host spent waiting for the loader's next batch */
  waitMs: number;
  /** waitMs / stepMs */
  share: number;
}

/**
 * Runs `warmup` then `steps` training steps (Adam, BCE) on batches from `loader` (epochs wrap around)
 * with the trainer's bound on steps in flight, and times the waits for data.
 */
export async function measureDataWait(model: Detector, loader: DataLoader, steps: number, warmup = 2): Promise<DataWait> {
  const named = [...model.namedParameters()];
  const opt = new Optimizer(named.map(([, t]) => t), { kind: 'adam', lr: 1e-4 }, named.map(([k]) => k));
  model.train();
  let epoch = 0;
  let it = loader.epoch(epoch);
  const next = async () => {
    for (;;) {
      const r = await it.next();
      if (!r.done) return r.value;
      it = loader.epoch(++epoch);
    }
  };
  let wait = 0;
  let images = 0;
  let t0 = 0;
  try {
    for (let s = 0; s < warmup + steps; s++) {
      if (s === warmup) {
        await queue.sync();
        wait = 0;
        images = 0;
        t0 = performance.now();
      }
      const w0 = performance.now();
      const b = await next();
      wait += performance.now() - w0;
      images += b.n;
      tidy(() => {
        backward(F.bceWithLogits(model.forward(batchInput(b)), fromArray(b.y, [b.n, 1])));
        opt.step();
        opt.zeroGrad();
      });
      await queue.endStep();
    }
    await queue.sync();
  } finally {
    await it.return(undefined);
    opt.dispose();
  }
  const stepMs = (performance.now() - t0) / steps;
  return { steps, images, stepMs, waitMs: wait / steps, share: wait / steps / stepMs };
}

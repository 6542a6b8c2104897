// GPU limits checked before a run folder exists. A training step at --size S and --batch B needs storage
// buffers whose size grows with B (activations, their gradients); a buffer above the device's
// maxStorageBufferBindingSize (or maxBufferSize) fails only when the step runs, as a block of Dawn
// validation errors naming no flag. So, before anything is written, one forward + backward pass runs at
// batch 2 and at batch 3 and records every buffer the pool is asked for, in order. Activations are
// linear in the batch, so request k at batch B is r2[k] + (r3[k] - r2[k]) * (B - 2); the pool rounds it
// to its size class (pool.ts), which is what gets bound. The largest such binding is compared with the
// limit, and a refusal names --size, --batch, the buffer and the limit, with the largest batch that fits.
// (Batch 1 is not a base: some ops take other paths for a single image, so its requests differ in number;
// a batch-1 step needs no more than a batch-2 one, which bounds it.)
import { backward } from '../autograd/tape.js';
import * as F from '../autograd/functional.js';
import { createModel, type ModelName } from '../nn/models/index.js';
import { device } from '../tensor/device.js';
import { pool, sizeClass } from '../tensor/pool.js';
import { queue } from '../tensor/queue.js';
import { fromArray, tidy } from '../tensor/tensor.js';

export interface StepBuffers {
  /** Bytes of each buffer request of one step, in order, at batch 2 and at batch 3. */
  batch2: number[];
  batch3: number[];
}

/** Records the buffer requests of one training step (forward, BCE loss, backward) of a fresh model. */
export async function probeStepBuffers(model: ModelName, size: number, seed = 0): Promise<StepBuffers> {
  const [batch2, batch3] = await stepRequests(model, size, [2, 3], seed);
  return { batch2, batch3 };
}

/** The buffer requests (bytes, in order) of one training step at each of `batches`. */
export async function stepRequests(model: ModelName, size: number, batches: number[], seed = 0): Promise<number[][]> {
  const m = createModel(model, { size, seed });
  const run = async (batch: number): Promise<number[]> => {
    const asked: number[] = [];
    const stop = pool.observe((b) => asked.push(b));
    try {
      tidy(() => {
        const x = fromArray(new Float32Array(batch * 3 * size * size), [batch, 3, size, size]);
        const y = fromArray(new Float32Array(batch), [batch, 1]);
        backward(F.bceWithLogits(m.forward(x), y));
      });
      await queue.sync();
    } finally {
      stop();
    }
    return asked;
  };
  try {
    m.train(true);
    // A first step makes one-time buffers (constants, planner state) that later steps do not ask for again.
    await run(batches[0]);
    const out: number[][] = [];
    for (const b of batches) out.push(await run(b));
    return out;
  } finally {
    m.dispose();
  }
}

/** The largest binding one step needs at `batch` (see the file comment), in bytes. */
export function largestBinding(p: StepBuffers, batch: number): number {
  return Math.max(0, ...extrapolate(p, batch).map(sizeClass));
}

/** Each request's bytes at `batch` >= 2 from its bytes at batches 2 and 3 (linear); at batch 1, batch 2's (a bound). */
export function extrapolate(p: StepBuffers, batch: number): number[] {
  if (batch <= 2) return [...p.batch2];
  if (p.batch2.length !== p.batch3.length) {
    // Different kernels at the two batches: scale the largest request, which bounds the rest.
    return [Math.max(...p.batch2, ...p.batch3) * Math.ceil(batch / 2)];
  }
  return p.batch2.map((b2, k) => b2 + (p.batch3[k] - b2) * (batch - 2));
}

const MiB = (n: number) => `${Math.round((n / 2 ** 20) * 10) / 10} MiB`;

/**
 * Throws a one-line error naming --size, --batch and the limit when one training step would need a
 * storage buffer larger than this device allows. Writes nothing; call it before the run folder exists.
 */
export async function checkStepFits(model: ModelName, size: number, batch: number, flags = { size: '--size', batch: '--batch' }): Promise<void> {
  const lim = device().limits;
  const binding = lim.maxStorageBufferBindingSize;
  const buffer = lim.maxBufferSize;
  const [limit, name] = binding !== undefined && (buffer === undefined || binding <= buffer) ? [binding, 'maxStorageBufferBindingSize'] : [buffer, 'maxBufferSize'];
  if (!(limit > 0)) return;
  const p = await probeStepBuffers(model, size);
  const need = largestBinding(p, batch);
  if (need <= limit) return;
  let fits = 0;
  for (let b = batch - 1; b >= 1 && !fits; b--) if (largestBinding(p, b) <= limit) fits = b;
  const advice = fits > 0 ? `use ${flags.batch} ${fits} or less, or a smaller ${flags.size}` : `even ${flags.batch} 1 does not fit: use a smaller ${flags.size}`;
  throw new Error(
    `${flags.size} ${size} with ${flags.batch} ${batch} needs a ${MiB(need)} GPU buffer for one ${model} training step, over this GPU's ${name} of ${MiB(limit)}; ${advice}`,
  );
}

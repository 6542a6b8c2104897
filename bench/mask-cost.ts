// Cost of masking: the same training step with and without pruning masks (forward weight * mask and
// the masked optimizer kernels), interleaved in one run so both see the same machine state.
// Usage: npx tsx bench/mask-cost.ts [model=meso4] [size=64] [batch=32] [steps=10] [rounds=3]
import { initDevice, closeDevice, fromArray, tidy, queue } from '../src/tensor/index.js';
import { createModel } from '../src/nn/models/index.js';
import { Optimizer } from '../src/nn/optim/optimizer.js';
import { backward } from '../src/autograd/tape.js';
import * as F from '../src/autograd/functional.js';
import { attachMasks, detachMasks, onesMasks, prunableWeights } from '../src/prune/masks.js';
import { magnitudeScores, pruneToSparsity } from '../src/prune/magnitude.js';

const [model = 'meso4', sizeS = '64', batchS = '32', stepsS = '10', roundsS = '3'] = process.argv.slice(2);
const [size, batch, steps, rounds] = [sizeS, batchS, stepsS, roundsS].map(Number);
const dev = await initDevice();
const m = createModel(model, { size, seed: 0 });
const named = [...m.namedParameters()];
const ws = prunableWeights(m);
const host = new Map<string, Float32Array>();
for (const w of ws) host.set(w.key, (await m.stateDict().get(w.key)!.toArray()) as Float32Array);
const masks = pruneToSparsity(onesMasks(ws), magnitudeScores(host), 0.8, 'global');
const x = new Float32Array(batch * 3 * size * size).map((_, i) => Math.sin(i) * 0.5 + 0.5);
const y = new Float32Array(batch).map((_, i) => i % 2);

function timeSteps(masked: boolean): Promise<number> {
  const opt = new Optimizer(named.map(([, t]) => t), { kind: 'adam', lr: 1e-4 }, named.map(([k]) => k));
  const gpuMasks = masked ? attachMasks(ws, masks) : null;
  if (gpuMasks) for (const [k, t] of named) if (gpuMasks.has(k)) opt.setMask(t, gpuMasks.get(k)!);
  const step = () =>
    tidy(() => {
      const out = m.forward(fromArray(x, [batch, 3, size, size]));
      backward(F.bceWithLogits(out, fromArray(y, [batch, 1])));
      opt.step();
      opt.zeroGrad();
    });
  return (async () => {
    step();
    await queue.sync();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) step();
    await queue.sync();
    const ms = (performance.now() - t0) / steps;
    if (masked) detachMasks(ws);
    opt.dispose();
    return ms;
  })();
}

const dense: number[] = [];
const masked: number[] = [];
for (let r = 0; r < rounds; r++) {
  dense.push(await timeSteps(false));
  masked.push(await timeSteps(true));
}
const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
const d = med(dense);
const mk = med(masked);
console.log(`${dev.info.device || dev.info.description}: ${model} ${size}x${size} batch ${batch}, 80% pruned masks, median of ${rounds} rounds x ${steps} steps`);
console.log(`  unmasked step ${d.toFixed(2)} ms   masked step ${mk.toFixed(2)} ms   overhead ${(((mk - d) / d) * 100).toFixed(2)}%`);
closeDevice();

// Cost of masking: the same training step with and without pruning masks (forward weight * mask, its
// backward, and the masked optimizer kernels). Two copies of the model (same init) take turns step by
// step, so both see the same machine state; each step is timed between queue syncs and the medians are
// compared. Also prints per-step GPU kernel time of both from timestamp queries (less noisy on a shared
// machine). Usage: npx tsx bench/mask-cost.ts [model=meso4] [size=64] [batch=32] [pairs=20] [sparsity=0.8]
import { initDevice, closeDevice, queue } from '../src/tensor/index.js';
import { createModel, type Detector, parseModelName } from '../src/nn/models/index.js';
import { trainStep } from './step.js';
import { attachMasks, onesMasks, prunableWeights } from '../src/prune/masks.js';
import { magnitudeScores, pruneToSparsity } from '../src/prune/magnitude.js';

const [model = 'meso4', sizeS = '64', batchS = '32', pairsS = '20', spS = '0.8'] = process.argv.slice(2);
const [size, batch, pairs, sparsity] = [sizeS, batchS, pairsS, spS].map(Number);
const dev = await initDevice();

async function setup(masked: boolean): Promise<() => void> {
  const m: Detector = createModel(parseModelName(model), { size, seed: 0 });
  const named = [...m.namedParameters()];
  const { step, opt } = trainStep(m, size, batch);
  if (masked) {
    const ws = prunableWeights(m);
    const host = new Map<string, Float32Array>();
    for (const w of ws) host.set(w.key, (await m.stateDict().get(w.key)!.toArray()) as Float32Array);
    const gpu = attachMasks(ws, pruneToSparsity(onesMasks(ws), magnitudeScores(host), sparsity, 'global'));
    for (const [k, t] of named) if (gpu.has(k)) opt.setMask(t, gpu.get(k)!);
  }
  return step;
}

const steps = { dense: await setup(false), masked: await setup(true) };
const times: Record<'dense' | 'masked', number[]> = { dense: [], masked: [] };
const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
for (const k of ['dense', 'masked'] as const) {
  steps[k]();
  await queue.sync();
}
for (let i = 0; i < pairs; i++) {
  for (const k of (i % 2 ? ['masked', 'dense'] : ['dense', 'masked']) as ('dense' | 'masked')[]) {
    const t0 = performance.now();
    steps[k]();
    await queue.sync();
    times[k].push(performance.now() - t0);
  }
}
const gpuRuns: Record<'dense' | 'masked', number[]> = { dense: [], masked: [] };
for (let i = 0; i < 6; i++) {
  for (const k of (i % 2 ? ['masked', 'dense'] : ['dense', 'masked']) as ('dense' | 'masked')[]) {
    queue.startProfile();
    steps[k]();
    gpuRuns[k].push((await queue.stopProfile()).reduce((s, p) => s + p.ms, 0));
  }
}
const gpuMs = { dense: med(gpuRuns.dense), masked: med(gpuRuns.masked) };
const d = med(times.dense);
const mk = med(times.masked);
console.log(`${dev.info.device || dev.info.description}: ${model} ${size}x${size} batch ${batch}, ${sparsity * 100}% pruned, ${pairs} alternating step pairs`);
console.log(`  wall clock, median step: unmasked ${d.toFixed(2)} ms, masked ${mk.toFixed(2)} ms, overhead ${(((mk - d) / d) * 100).toFixed(2)}%`);
console.log(
  `  GPU kernel time per step (median of 6, alternating): unmasked ${gpuMs.dense.toFixed(2)} ms, masked ${gpuMs.masked.toFixed(2)} ms, overhead ${(((gpuMs.masked - gpuMs.dense) / gpuMs.dense) * 100).toFixed(2)}%`,
);
closeDevice();

// Where a training step spends its GPU time: per-kernel totals from timestamp queries, for one
// detector at one input size and batch, with each kernel's GFLOP/s (dense FLOPs of the calls whose
// launcher reports them, i.e. convolutions and matmuls, over their GPU time; compare with the FMA peak
// that bench/peak.ts measures on the same adapter), and the MiB its bindings move per step (the
// queue's byte count: read-only bindings read, read_write ones written). Usage:
//   npx tsx bench/profile-step.ts [model=meso4] [size=64] [batch=32] [steps=3]
import { initDevice, closeDevice, queue } from '../src/tensor/index.js';
import { createModel, parseModelName } from '../src/nn/models/index.js';
import { trainStep } from './step.js';

const [model = 'meso4', sizeS = '64', batchS = '32', stepsS = '3'] = process.argv.slice(2);
const size = Number(sizeS);
const batch = Number(batchS);
const steps = Number(stepsS);
const dev = await initDevice();
const m = createModel(parseModelName(model), { size, seed: 0 });
const { step } = trainStep(m, size, batch);
step();
await queue.sync();
const t0 = performance.now();
for (let i = 0; i < steps; i++) step();
await queue.sync();
const wall = (performance.now() - t0) / steps;
queue.startProfile();
for (let i = 0; i < steps; i++) step();
const byName = new Map<string, { name: string; calls: number; ms: number; flops: number; bytes: number }>();
for (const r of await queue.stopProfileRows()) {
  const t = byName.get(r.kernel) ?? { name: r.kernel, calls: 0, ms: 0, flops: 0, bytes: 0 };
  t.calls += r.calls;
  t.ms += r.ms;
  t.flops += r.flops;
  t.bytes += r.bytesRead + r.bytesWritten;
  byName.set(r.kernel, t);
}
const prof = [...byName.values()].sort((a, b) => b.ms - a.ms);
const total = prof.reduce((s, p) => s + p.ms, 0);
console.log(`${dev.info.device || dev.info.description}: ${model} ${size}x${size} batch ${batch}: ${wall.toFixed(1)} ms/step (${((batch * 1000) / wall).toFixed(1)} img/s) unprofiled`);
console.log(`GPU time per step by kernel (profiled, ${steps} steps):`);
for (const p of prof.slice(0, 25)) {
  const gflops = p.flops > 0 ? `${(p.flops / p.ms / 1e6).toFixed(2).padStart(7)} GFLOP/s` : '';
  console.log(`  ${p.name.padEnd(36)} ${(p.ms / steps).toFixed(2).padStart(9)} ms  ${((p.ms / total) * 100).toFixed(1).padStart(5)}%  ${(p.calls / steps).toFixed(0).padStart(4)} calls ${(p.bytes / steps / 2 ** 20).toFixed(2).padStart(8)} MiB ${gflops}`);
}
console.log(`  ${'total'.padEnd(36)} ${(total / steps).toFixed(2).padStart(9)} ms`);
closeDevice();

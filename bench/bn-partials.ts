// Batch-norm stage-1 variants side by side: per-channel sums (the conv bias gradient) and a training
// forward (statistics + apply) on Meso-4-like shapes, each variant of planner family 'norm' in turn,
// repeated, wall and CPU time per call. Usage: npx tsx bench/bn-partials.ts [variants=thread,thread4]
import { initDevice, closeDevice, queue } from '../src/tensor/index.js';
import { fill } from '../src/tensor/ops/map.js';
import { channelSum, batchNormTrainForward } from '../src/tensor/ops/norm.js';
import { setKernelOverride } from '../src/tensor/plan.js';
const variants = (process.argv[2] ?? 'thread,thread4').split(',');
await initDevice();
for (const shape of [[32, 8, 64, 64], [32, 16, 32, 32], [32, 16, 16, 16]]) {
  const x = fill(shape, 1.5);
  for (const rep of [0, 1]) for (const v of variants) {
    setKernelOverride(`norm:${v}`);
    for (const [what, f] of [['sum', () => channelSum(x).dispose()], ['stats', () => { const r = batchNormTrainForward(x, null, null, null, null); r.y.dispose(); r.mean.dispose(); r.invstd.dispose(); }]] as const) {
      f(); await queue.sync();
      const c0 = process.cpuUsage(); const t0 = performance.now();
      for (let i = 0; i < 30; i++) f();
      await queue.sync();
      const cu = process.cpuUsage(c0);
      console.log(`${shape} ${v.padEnd(8)} ${what.padEnd(6)} ${((performance.now() - t0) / 30).toFixed(3)} ms  cpu ${((cu.user + cu.system) / 30000).toFixed(3)} ms rep${rep}`);
    }
  }
}
closeDevice();

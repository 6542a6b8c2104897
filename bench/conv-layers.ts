// Every conv layer of a detector's training step, each pass (forward, input gradient, weight gradient)
// timed with every kernel candidate the planner has for it on this adapter: ms, GFLOP/s (dense FLOPs /
// wall time) and GFLOP per CPU-second (on lavapipe the kernels run on this process's threads, so that
// column stays comparable when other processes compete for the cores). `*` marks the static default.
//   npx tsx bench/conv-layers.ts [model=meso4] [size=64] [batch=32] [--family=conv.fwd] [--only=direct]
//                                [--min-seconds=0.3]
import { closeDevice, initDevice, queue } from '../src/tensor/index.js';
import { createModel, parseModelName } from '../src/nn/models/index.js';
import { defaultPlan, familySpec, plannerSeen, resetPlannerRecord, setKernelOverride, suitableCandidates } from '../src/tensor/plan.js';
import { convFlops, type Conv2dGeometry } from '../src/tensor/ops/conv.js';
import { trainStep } from './step.js';
import { table } from './util.js';

const pos = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const opt = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const [model = 'meso4', sizeS = '64', batchS = '32'] = pos;
const minSeconds = Number(opt('min-seconds') ?? 0.3);
const onlyFamily = opt('family');
const onlyVariant = opt('only');

const dev = await initDevice();
const m = createModel(parseModelName(model), { size: Number(sizeS), seed: 0 });
const ts = trainStep(m, Number(sizeS), Number(batchS));
resetPlannerRecord();
ts.step();
await queue.sync();
ts.dispose();
m.dispose();

async function time(run: () => void): Promise<{ ms: number; cpuMs: number }> {
  run();
  await queue.sync();
  let reps = 1;
  for (;;) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) run();
    await queue.sync();
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    if (ms >= minSeconds * 1000 || reps >= 64) return { ms: ms / reps, cpuMs: (c.user + c.system) / 1000 / reps };
    reps = Math.min(64, reps * Math.max(2, Math.ceil((minSeconds * 1000) / Math.max(ms, 1))));
  }
}

const rows: (string | number)[][] = [];
const best = new Map<string, number>();
for (const s of plannerSeen()) {
  if (!s.family.startsWith('conv.') || (onlyFamily && s.family !== onlyFamily)) continue;
  const g = s.geometry as Conv2dGeometry;
  const spec = familySpec(s.family)!;
  const dflt = defaultPlan(s.family, g).id;
  for (const c of suitableCandidates(s.family, g)) {
    if (onlyVariant && c.variant !== onlyVariant) continue;
    if (dev.info.isSoftware && c.variant === 'tiled' && onlyVariant !== 'tiled') continue; // minutes per layer on lavapipe
    setKernelOverride(`${s.family}:${c.id}`);
    const bc = spec.bench!(g, defaultPlan(s.family, g));
    const t = await time(() => bc.run());
    bc.dispose();
    setKernelOverride(null);
    const f = convFlops(g);
    rows.push([s.family, s.shapeClass, `${c.id}${c.id === dflt ? '*' : ''}`, t.ms.toFixed(2), (f / t.ms / 1e6).toFixed(2), (f / t.cpuMs / 1e6).toFixed(2)]);
    const k = `${s.family} ${s.shapeClass}`;
    best.set(k, Math.min(best.get(k) ?? Infinity, t.ms));
  }
}
console.log(`${dev.info.device || dev.info.description}: ${model} ${sizeS}px batch ${batchS}`);
console.log(table(['pass', 'shape', 'kernel', 'ms', 'GFLOP/s', 'GFLOP/cpu-s'], rows));
closeDevice();

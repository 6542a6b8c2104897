// What the fused kernels change, per kernel: GPU time (timestamp queries), MiB moved and dispatches of
// one training step with the planner's kernels (fused) and with `fused:unfused`, profiled alternately
// in one process, R rounds each, keeping each row's least time (the least-disturbed sample on a shared
// machine). Bytes and dispatches are counts, the same every round; last, the same counts for one
// eval-mode forward without gradients (evaluate, infer: where fused.conv-bn folds BN into the conv).
// Usage:
//   npx tsx bench/fusion-profile.ts [model=meso4] [size=64] [batch=32] [rounds=3] [baseline=fused:unfused]
import { initDevice, closeDevice, queue, tidy } from '../src/tensor/index.js';
import { noGrad } from '../src/autograd/tape.js';
import { randomUniform } from '../src/tensor/ops/random.js';
import { createModel, parseModelName } from '../src/nn/models/index.js';
import { setKernelOverride } from '../src/tensor/plan.js';
import { profileTrainStep, type ProfileRow } from '../src/train/profile.js';

const [model = 'meso4', sizeS = '64', batchS = '32', roundsS = '3', baseline = 'fused:unfused'] = process.argv.slice(2);
const size = Number(sizeS);
const batch = Number(batchS);
const rounds = Number(roundsS);
const dev = await initDevice();

interface Agg {
  ms: number;
  mib: number;
  dispatches: number;
}
/** Rows summed per (phase, op), kernels of one op together (e.g. every BN apply). */
function byOp(rows: readonly ProfileRow[]): Map<string, Agg> {
  const m = new Map<string, Agg>();
  for (const r of rows) {
    const k = `${r.phase.padEnd(11)} ${r.op}`;
    const a = m.get(k) ?? { ms: 0, mib: 0, dispatches: 0 };
    a.ms += r.ms;
    a.mib += (r.bytesRead + r.bytesWritten) / 2 ** 20;
    a.dispatches += r.dispatches;
    m.set(k, a);
  }
  return m;
}

const configs = [
  { name: 'fused', spec: null },
  { name: baseline, spec: baseline },
];
const best = configs.map(() => new Map<string, Agg>());
const totals = configs.map(() => ({ gpuMs: Infinity, wallMs: Infinity, dispatches: 0, mib: 0 }));
const m = createModel(parseModelName(model), { size, seed: 0 });
for (let r = 0; r < rounds; r++) {
  for (let c = 0; c < configs.length; c++) {
    setKernelOverride(configs[c].spec);
    const p = await profileTrainStep(m, { size, batch, steps: 2 });
    for (const [k, a] of byOp(p.rows)) {
      const b = best[c].get(k);
      if (!b || a.ms < b.ms) best[c].set(k, a);
    }
    const t = totals[c];
    t.gpuMs = Math.min(t.gpuMs, p.gpuMs);
    t.wallMs = Math.min(t.wallMs, p.wallMs);
    t.dispatches = p.dispatches;
    t.mib = (p.bytesRead + p.bytesWritten) / 2 ** 20;
  }
}
// One eval forward per configuration (counts only: they need no timing).
m.eval();
const evalCounts = configs.map((c) => {
  setKernelOverride(c.spec);
  const x = randomUniform([batch, 3, size, size], { seed: 1, stream: 0 });
  noGrad(() => tidy(() => void m.forward(x))); // compiles and plans first
  queue.startCount();
  noGrad(() => tidy(() => void m.forward(x)));
  const rows = queue.stopCount();
  x.dispose();
  return { dispatches: rows.reduce((s, r) => s + r.calls, 0), mib: rows.reduce((s, r) => s + r.bytesRead + r.bytesWritten, 0) / 2 ** 20 };
});
setKernelOverride(null);
m.dispose();
closeDevice();
const keys = [...new Set([...best[0].keys(), ...best[1].keys()])].sort((a, b) => Math.max(best[1].get(b)?.ms ?? 0, best[0].get(b)?.ms ?? 0) - Math.max(best[1].get(a)?.ms ?? 0, best[0].get(a)?.ms ?? 0));
const cell = (a: Agg | undefined) => (a ? `${a.ms.toFixed(2).padStart(8)} ${a.mib.toFixed(1).padStart(6)} ${String(a.dispatches).padStart(4)}` : `${'-'.padStart(8)} ${'-'.padStart(6)} ${'-'.padStart(4)}`);
console.log(`${dev.info.device || dev.info.description}: ${model} ${size}px b${batch}, per step, least of ${rounds} alternating rounds`);
console.log(`${'phase       op'.padEnd(52)} ${'fused: ms    MiB disp'.padStart(21)} | ${`${baseline}: ms    MiB disp`.padStart(21)}`);
for (const k of keys) console.log(`${k.padEnd(52)} ${cell(best[0].get(k))} | ${cell(best[1].get(k))}`);
for (let c = 0; c < configs.length; c++) {
  const t = totals[c];
  console.log(`${configs[c].name}: GPU ${t.gpuMs.toFixed(1)} ms (sum of kernels), wall ${t.wallMs.toFixed(1)} ms unprofiled, ${t.dispatches} dispatches, ${t.mib.toFixed(1)} MiB per step`);
}
for (let c = 0; c < configs.length; c++) {
  const e = evalCounts[c];
  console.log(`${configs[c].name}: eval forward (no gradients) ${e.dispatches} dispatches, ${e.mib.toFixed(1)} MiB`);
}

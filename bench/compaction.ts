// Compaction's payoff: a Meso-4 64 px batch-32 training (and inference) step under `filter`
// granularity at an IMP level's sparsity, three models stepping in turns: the unpruned network, the
// masked one (dense kernels on weight * mask, dead filters' companions held at 0) and the compacted one
// (nn/compact.ts: the same function on the kept channels only). Masks: global whole-filter magnitude
// pruning of the initial weights, 20% per level (as bench/sparsity.ts's steps).
//
//   npx tsx bench/compaction.ts [--level L] [--steps N] [--granularity G] [--scope global|layer] [--json] [--profile [--ops]]
//                               [--baseline SPEC]
//
// --baseline SPEC: a fourth model, compacted, steps under TICKETLAB_KERNELS-style overrides SPEC in the
// same interleaved rounds (e.g. 'fused.compact:unfused' for the separate chains compacted layers ran
// before), so one run gives a before / after; its column is 'baseline' and the ratio baseline/compacted.
//
// Prints the channels each site keeps and, per step kind, median wall-clock ms and process CPU ms of
// N interleaved steps (order alternating), with dense / compacted and masked / compacted; --profile adds
// the GPU ms per layer and phase of a dense, a masked and a compacted training step (--ops: per kernel,
// with the planner's variant and the shape).
import { closeDevice, initDevice, tidy } from '../src/tensor/index.js';
import { createModel } from '../src/nn/models/index.js';
import { attachMasks, onesMasks, prunableWeights } from '../src/prune/masks.js';
import { magnitudeScores, pruneToSparsity, sparsityAfter } from '../src/prune/magnitude.js';
import { filterCompanions, filterCompanionTensors } from '../src/prune/filter-companions.js';
import { compactLevel } from '../src/prune/compaction.js';
import { parseGranularity } from '../src/prune/granularity.js';
import { noGrad } from '../src/autograd/tape.js';
import { median } from '../src/tensor/tune.js';
import { withKernels } from '../src/tensor/plan.js';
import { interleavedSteps, table } from './util.js';
import { byLayerPhase, profileTrainStep } from '../src/train/profile.js';
import type { Detector } from '../src/nn/models/index.js';
import { trainStep } from './step.js';

const args = process.argv.slice(2);
const flag = (f: string) => {
  const i = args.indexOf(`--${f}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const json = args.includes('--json');
const level = Number(flag('level') ?? 7);
const stepsN = Number(flag('steps') ?? 11);
const granularity = parseGranularity(flag('granularity') ?? 'filter');
const scope = flag('scope') ?? 'global';
if (scope !== 'global' && scope !== 'layer') throw new Error(`--scope '${scope}' is not one of global, layer`);
const log = (s: string) => (json ? console.error(s) : console.log(s));

const dev = await initDevice();
const model = 'meso4';
const size = 64;
const batch = 32;

const ref = createModel(model, { size, seed: 0 });
const ws0 = prunableWeights(ref);
const host = new Map<string, Float32Array>();
for (const w of ws0) host.set(w.key, (await ref.stateDict().get(w.key)!.toArray()) as Float32Array);
const sparsity = sparsityAfter(level, 0.2);
const masks = pruneToSparsity(onesMasks(ws0), magnitudeScores(host), sparsity, scope, { granularity, shapes: new Map(ws0.map((w) => [w.key, w.shape])) });

type Variant = 'dense' | 'masked' | 'compacted' | 'baseline';
const baseline = flag('baseline');
const variants: Variant[] = ['dense', 'masked', 'compacted', ...(baseline ? (['baseline'] as const) : [])];
// The baseline model's steps run under its overrides; the others under none.
const under = (v: Variant, f: () => void) => (v === 'baseline' ? withKernels(baseline!, f) : f());
const runs = new Map<Variant, { train: () => void; infer: () => void; dispose: () => void }>();
const models = new Map<Variant, Detector>();
let sites = '';
for (const v of variants) {
  const m = createModel(model, { size, seed: 0 });
  const ws = prunableWeights(m);
  const ts = trainStep(m, size, batch);
  const extra: { dispose(): void }[] = [];
  if (v !== 'dense') {
    const gpu = attachMasks(ws, masks);
    const comp = granularity === 'filter' ? filterCompanionTensors(m, ws, masks) : new Map();
    for (const [k, t] of m.namedParameters()) {
      const mk = gpu.get(k) ?? comp.get(k);
      if (mk) ts.opt.setMask(t, mk);
    }
    extra.push({ dispose: () => [...gpu.values(), ...comp.values()].forEach((t) => t.dispose()) });
    if (v === 'compacted' || v === 'baseline') {
      const c = compactLevel(m, ws, masks, granularity === 'filter' ? filterCompanions(m, ws, masks) : new Map());
      if (!c.compaction) throw new Error('nothing to compact at this level');
      sites = c.compaction.sites;
      extra.push(c.compaction);
    }
  }
  const infer = () => {
    m.eval();
    noGrad(() => tidy(() => void m.forward(ts.x)));
    m.train();
  };
  models.set(v, m);
  runs.set(v, { train: () => under(v, ts.step), infer: () => under(v, infer), dispose: () => [...extra, ts].forEach((e) => e.dispose()) });
}

const wall = new Map<string, number[]>();
const cpu = new Map<string, number[]>();
for (const kind of ['train', 'infer'] as const) {
  const r = await interleavedSteps(variants, (v) => runs.get(v)![kind](), stepsN);
  for (const v of variants) {
    wall.set(`${kind}|${v}`, r.wall.get(v)!);
    cpu.set(`${kind}|${v}`, r.cpu.get(v)!);
  }
}
if (args.includes('--profile')) {
  for (const v of variants) {
    if (v === 'baseline') continue;
    const p = await profileTrainStep(models.get(v)!, { size, batch, steps: 3 });
    const rows = byLayerPhase(p.rows).sort((a, b) => b.ms - a.ms);
    log(`\n${v}: GPU ms per training step ${p.gpuMs.toFixed(1)}, ${p.dispatches} dispatches, by layer and phase (largest first)`);
    log(table(['layer', 'phase', 'ms', 'ops'], rows.slice(0, 14).map((r) => [r.layer, r.phase, r.ms.toFixed(2), r.op])));
    if (args.includes('--ops')) {
      // Per kernel: which variant / tile the planner gave each shape (compacted layers' small problems).
      const ops = [...p.rows].sort((a, b) => b.ms - a.ms).slice(0, 30);
      log(table(['layer', 'phase', 'op', 'variant', 'shape', 'ms', 'n'], ops.map((r) => [r.layer, r.phase, r.op, r.variant, r.shape, r.ms.toFixed(2), r.dispatches])));
    }
  }
}
for (const r of runs.values()) r.dispose();

log(`${dev.info.device || dev.info.description}; ${model} ${size} px batch ${batch}, level ${level} (${(sparsity * 100).toFixed(1)}% pruned, ${granularity}, ${scope}); sites kept: ${sites}`);
const rows: Record<string, number | string>[] = [];
const out: (string | number)[][] = [];
for (const kind of ['train', 'infer'] as const) {
  const [d, m, c, b] = variants.map((v) => median(wall.get(`${kind}|${v}`)!));
  const [dc, mc, cc, bc] = variants.map((v) => median(cpu.get(`${kind}|${v}`)!));
  rows.push({ kind, level, granularity, scope, sparsity, denseMs: d, maskedMs: m, compactedMs: c, denseCpuMs: dc, maskedCpuMs: mc, compactedCpuMs: cc, sites, ...(baseline ? { baseline, baselineMs: b, baselineCpuMs: bc } : {}) });
  const base = baseline ? [b.toFixed(1), `${(b / c).toFixed(2)} (${(bc / cc).toFixed(2)})`] : [];
  out.push([kind, d.toFixed(1), m.toFixed(1), c.toFixed(1), (d / c).toFixed(2), (m / c).toFixed(2), `${dc.toFixed(0)}/${mc.toFixed(0)}/${cc.toFixed(0)}`, (dc / cc).toFixed(2), ...base]);
}
log(`median of ${stepsN} interleaved steps: wall ms (CPU ms)${baseline ? `; baseline: compacted under ${baseline}` : ''}`);
log(table(['step', 'dense', 'masked', 'compacted', 'dense/compacted', 'masked/compacted', 'CPU d/m/c', 'CPU dense/compacted', ...(baseline ? ['baseline', 'baseline/compacted (CPU)'] : [])], out));
if (json) console.log(JSON.stringify(rows, null, 1));
closeDevice();

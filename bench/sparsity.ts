// Where skipping pruned weights pays: dense vs sparse kernels per layer, phase and density, and whole
// training / inference steps at each level of a (simulated) IMP run.
//
// Layers: forward, input-grad and weight-grad of the conv layers of Meso-4 (256 px), CNN-5 (64 px) and
// ResNet-18's 3x3 convs (64 px; repeated shapes once) at densities 100, 50, 20, 10, 5, 2, 1% under
// random unstructured masks. Each (layer, density) runs dense (weight * mask, then the dense kernel
// the engine picks), compressed rows (csr) and blocked, interleaved round by round (fair ratios on a
// shared machine), median of --reps; `auto` is what the planner picks when it times the layer by itself
// beforehand, measured in the same rounds, so `auto / best` shows what the planner's choice costs.
// Prints the crossover density per layer (the highest density at which the best sparse kernel beats
// dense on forward + both grads).
//
// Steps: Meso-4 64 px batch 32 (the target workload) at IMP levels 0..L (global magnitude pruning of
// the initial weights, 20% per level), one model per kernel mode (dense, sparse, auto) stepping in
// turns; median ms of a training step (forward, BCE, backward, Adam) and of an inference step.
//
// --granularity LIST (e.g. weight,block:8,filter; default weight): the masks' granularity
// (src/prune/granularity.ts): layers get random masks of whole units at each density, steps the
// levels' magnitude masks pruned in whole units; rows gain `granularity`. --densities LIST overrides
// the layer densities (e.g. 1,0.2).
//
// --profile: also prints each mode's GPU time per training step by kernel.
// --scope layer: the steps' masks prune every layer to the level's sparsity (default global).
// --forms 'SPEC;SPEC' replaces the layer section: the blocked candidate under each kernel override
// (e.g. the direct forms against the row-strip forms of the blocked layout) against dense, per phase.
//
//   npx tsx bench/sparsity.ts [--quick] [--json] [--reps N] [--steps N] [--levels L] [--no-layers] [--no-steps] [--granularity LIST] [--densities LIST] [--scope global|layer] [--profile] [--forms 'SPEC;SPEC']
// --quick: Meso-4 layers at 100/10/1% and ResNet-18's layer2 shape, steps at levels 0 and 7 (< 3 min on
// a 2-core lavapipe). --json: one JSON array of rows {model, layer, phase, density, denseMs, sparseMs,
// sparseKernel, autoMs, autoKernel} (steps: layer '(step)', phase 'train' | 'infer').
import { closeDevice, initDevice, queue, tidy, fromArray, keep } from '../src/tensor/index.js';
import { createModel, type Detector, parseModelName } from '../src/nn/models/index.js';
import { attachMasks, onesMasks, prunableWeights, type HostMasks } from '../src/prune/masks.js';
import { magnitudeScores, pruneToSparsity, sparsityAfter, type Scope } from '../src/prune/magnitude.js';
import { layerProblems, planKernels } from '../src/nn/sparse.js';
import { noGrad } from '../src/autograd/tape.js';
import { SparseWeight } from '../src/tensor/ops/sparse.js';
import { conv2dGeometry } from '../src/tensor/ops/conv.js';
import { defaultMetric, median, timeInterleaved } from '../src/tensor/tune.js';
import { withKernels } from '../src/tensor/plan.js';
import type { Tensor } from '../src/tensor/tensor.js';
import {
  disposeOperands,
  planLayer,
  randomOperands,
  runPhase,
  timeLayer,
  PHASES,
  type KernelMode,
  type KernelVariant,
  type LayerProblem,
  type Phase,
} from '../src/tensor/sparse-plan.js';
import { parseGranularity, unitLayout, type Granularity } from '../src/prune/granularity.js';
import { interleavedSteps, table } from './util.js';
import { trainStep } from './step.js';

const args = process.argv.slice(2);
const has = (f: string) => args.includes(`--${f}`);
const flag = (f: string) => {
  const i = args.indexOf(`--${f}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const quick = has('quick');
const json = has('json');
const reps = Number(flag('reps') ?? (quick ? 3 : 5));
const stepPairs = Number(flag('steps') ?? (quick ? 5 : 9));
const maxLevel = Number(flag('levels') ?? (quick ? 7 : 8));
const SCOPE: Scope = flag('scope') === 'layer' ? 'layer' : 'global';
const GRANULARITIES: Granularity[] = (flag('granularity') ?? 'weight').split(',').map((g) => parseGranularity(g.trim()));
const log = (s: string) => {
  if (!json) console.log(s);
  else console.error(s);
};

const dev = await initDevice();
const soft = dev.info.isSoftware;

export interface Row {
  model: string;
  granularity: Granularity;
  layer: string;
  phase: Phase | 'train' | 'infer';
  density: number;
  denseMs: number;
  sparseMs: number;
  sparseKernel: string;
  autoMs: number;
  autoKernel: string;
}
const rows: Row[] = [];

interface LayerWork {
  model: string;
  size: number;
  batch: number;
  filter: (name: string, p: LayerProblem) => boolean;
}

const DENSITIES = flag('densities')?.split(',').map(Number) ?? (quick ? [1, 0.1, 0.01] : [1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01]);
const LAYER_WORK: LayerWork[] = quick
  ? [
      { model: 'meso4', size: 256, batch: 1, filter: (_n, p) => p.kind === 'conv' },
      { model: 'resnet18', size: 64, batch: 2, filter: (n) => n === 'layer2.1.conv1' },
    ]
  : [
      { model: 'meso4', size: 256, batch: soft ? 2 : 32, filter: (_n, p) => p.kind === 'conv' },
      { model: 'cnn5', size: 64, batch: soft ? 8 : 128, filter: (_n, p) => p.kind === 'conv' },
      { model: 'resnet18', size: 64, batch: soft ? 2 : 32, filter: (_n, p) => p.kind === 'conv' && p.wShape[2] === 3 },
    ];

/** A 0/1 mask with round(density * n) ones at seeded positions. */
function randomMask(n: number, density: number, seed: number): Uint8Array {
  let s = seed >>> 0 || 1;
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = s % (i + 1);
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  const m = new Uint8Array(n);
  for (let i = 0; i < Math.round(density * n); i++) m[idx[i]] = 1;
  return m;
}

/** A random mask of whole units of `g`: round(density * units) units kept, seeded. */
function randomUnitMask(shape: readonly number[], density: number, seed: number, g: Granularity): Uint8Array {
  const l = unitLayout(shape, g);
  const units = randomMask(l.units, density, seed);
  return Uint8Array.from(l.unitOf, (u) => units[u]);
}

function bestSparse(t: Partial<Record<KernelVariant, number>>): [KernelVariant, number] {
  const c = t.csr ?? Infinity;
  const b = t.blocked ?? Infinity;
  return c <= b ? ['csr', c] : ['blocked', b];
}

async function layerSection(): Promise<void> {
  for (const w of LAYER_WORK) {
    const model = createModel(parseModelName(w.model), { size: w.size, seed: 0 });
    const ws = prunableWeights(model, true);
    attachMasks(ws, onesMasks(ws), 'sparse');
    const problems = layerProblems(model, [w.batch, 3, w.size, w.size]);
    const seen = new Set<string>();
    const summary: (string | number)[][] = [];
    for (const [name, p] of problems) {
      if (!w.filter(name, p)) continue;
      const key = JSON.stringify(conv2dGeometry(p.xShape, p.wShape, p.opts)); // repeated shapes once
      if (seen.has(key)) continue;
      seen.add(key);
      const label = `${name} ${p.wShape[1]}->${p.wShape[0]} ${p.wShape[2]}x${p.wShape[3]} @${p.xShape[2]}`;
      for (const g of GRANULARITIES) {
        const glabel = GRANULARITIES.length > 1 ? `${label} [${g}]` : label;
        let crossover: number | null = null;
        for (const density of DENSITIES) {
          const mask = randomUnitMask(p.wShape, density, 7 + Math.round(density * 1000), g);
          const sw = new SparseWeight(mask, p.wShape);
          const maskT = keep(fromArray(Float32Array.from(mask), p.wShape));
          const auto = await planLayer(p, sw, maskT, 3);
          const o = randomOperands(p, sw, maskT, 5);
          const t = await timeLayer(p, o, ['dense', 'csr', 'blocked'], reps);
          disposeOperands(o);
          sw.dispose();
          maskT.dispose();
          let dSum = 0;
          let sSum = 0;
          let aSum = 0;
          for (const phase of PHASES) {
            const [sk, sms] = bestSparse(t[phase]);
            const ak = auto.kernels[phase];
            const row: Row = {
              model: w.model,
              granularity: g,
              layer: name,
              phase,
              density,
              denseMs: t[phase].dense!,
              sparseMs: sms,
              sparseKernel: sk,
              autoMs: t[phase][ak]!,
              autoKernel: ak,
            };
            rows.push(row);
            dSum += row.denseMs;
            sSum += row.sparseMs;
            aSum += row.autoMs;
            summary.push([glabel, `${density * 100}%`, phase, row.denseMs.toFixed(2), row.sparseMs.toFixed(2), sk, (row.denseMs / row.sparseMs).toFixed(2), ak, (row.autoMs / Math.min(row.denseMs, row.sparseMs)).toFixed(3)]);
          }
          summary.push([glabel, `${density * 100}%`, 'fwd+grads', dSum.toFixed(2), sSum.toFixed(2), '', (dSum / sSum).toFixed(2), '', (aSum / Math.min(dSum, sSum)).toFixed(3)]);
          if (sSum < dSum && (crossover === null || density > crossover)) crossover = density;
        }
        summary.push([glabel, 'crossover', crossover === null ? 'sparse never wins' : `sparse wins at <= ${crossover * 100}% density`, '', '', '', '', '', '']);
        log(`  ${glabel}: ${crossover === null ? 'sparse never wins' : `crossover at ${crossover * 100}% density`}`);
      }
    }
    log(`\n${w.model} ${w.size} px batch ${w.batch}: ${defaultMetric() === 'cpu' ? 'CPU' : 'wall-clock'} ms per pass (fastest of ${reps} interleaved samples)`);
    log(table(['layer', 'density', 'phase', 'dense', 'sparse', 'kernel', 'dense/sparse', 'auto', 'auto/best'], summary));
  }
}

/**
 * --forms 'SPEC;SPEC': the blocked candidate under each kernel override (TICKETLAB_KERNELS syntax,
 * e.g. 'sparse.blocked:direct,sparse.wgrad:taps;sparse.blocked:strip,sparse.wgrad:strip:8x2'),
 * interleaved with dense per phase on the same operands: which form of the blocked kernels pays.
 */
async function formsSection(specs: string[]): Promise<void> {
  for (const w of LAYER_WORK) {
    const model = createModel(parseModelName(w.model), { size: w.size, seed: 0 });
    const ws = prunableWeights(model, true);
    attachMasks(ws, onesMasks(ws), 'sparse');
    const problems = layerProblems(model, [w.batch, 3, w.size, w.size]);
    const summary: (string | number)[][] = [];
    const seen = new Set<string>();
    for (const [name, p] of problems) {
      if (!w.filter(name, p)) continue;
      const key = JSON.stringify(conv2dGeometry(p.xShape, p.wShape, p.opts));
      if (seen.has(key)) continue;
      seen.add(key);
      for (const g of GRANULARITIES) {
        for (const density of DENSITIES) {
          const mask = randomUnitMask(p.wShape, density, 7 + Math.round(density * 1000), g);
          const sw = new SparseWeight(mask, p.wShape);
          const maskT = keep(fromArray(Float32Array.from(mask), p.wShape));
          const o = randomOperands(p, sw, maskT, 5);
          const sums = new Map<string, number>();
          const phasesRun = new Map<string, number>();
          for (const phase of PHASES) {
            const runs = new Map<string, () => Tensor>([['dense', () => runPhase(p, phase, 'dense', o)]]);
            // A form that does not suit the layer (e.g. 16 pixels a thread on 8-pixel rows) is left out.
            const suited = specs.filter((spec) => {
              try {
                withKernels(spec, () => runPhase(p, phase, 'blocked', o)).dispose();
                return true;
              } catch (e) {
                log(`  ${name} ${phase}: '${spec}' left out: ${(e as Error).message.split('\n')[0]}`);
                return false;
              }
            });
            for (const spec of suited) runs.set(spec, () => withKernels(spec, () => runPhase(p, phase, 'blocked', o)));
            const t = await timeInterleaved(runs, reps);
            const d = t.get('dense')!;
            sums.set('dense', (sums.get('dense') ?? 0) + d);
            for (const spec of suited) {
              sums.set(spec, (sums.get(spec) ?? 0) + t.get(spec)!);
              phasesRun.set(spec, (phasesRun.get(spec) ?? 0) + 1);
              summary.push([`${name} [${g}]`, `${density * 100}%`, phase, spec, d.toFixed(2), t.get(spec)!.toFixed(2), (d / t.get(spec)!).toFixed(2)]);
            }
          }
          // fwd+grads only for the forms that ran in every phase.
          for (const spec of specs.filter((x) => phasesRun.get(x) === PHASES.length)) summary.push([`${name} [${g}]`, `${density * 100}%`, 'fwd+grads', spec, sums.get('dense')!.toFixed(2), sums.get(spec)!.toFixed(2), (sums.get('dense')! / sums.get(spec)!).toFixed(2)]);
          disposeOperands(o);
          sw.dispose();
          maskT.dispose();
        }
      }
    }
    log(`\n${w.model} ${w.size} px batch ${w.batch}: blocked forms, ${defaultMetric() === 'cpu' ? 'CPU' : 'wall-clock'} ms per pass (fastest of ${reps} interleaved samples)`);
    log(table(['layer', 'density', 'phase', 'blocked under', 'dense', 'blocked', 'dense/blocked'], summary));
  }
}

/** --profile: GPU ms per training step by kernel (timestamp queries over 3 steps), the 12 largest. */
async function profileSteps(what: string, step: () => void): Promise<void> {
  step();
  queue.startProfile();
  for (let i = 0; i < 3; i++) step();
  const by = new Map<string, number>();
  // By kernel and layer: which layer a dense kernel in a sparse mode's step serves; and per layer, what
  // a step spends outside the pruned convs (the part sparse kernels cannot shrink).
  const byLayer = new Map<string, number>();
  for (const r of await queue.stopProfileRows()) {
    const k = `${r.kernel} ${r.layer || r.shape}`;
    by.set(k, (by.get(k) ?? 0) + r.ms / 3);
    const l = r.layer || '(no layer)';
    byLayer.set(l, (byLayer.get(l) ?? 0) + r.ms / 3);
  }
  log(`${what}: GPU ms per step by layer: ${[...byLayer].sort((a, b) => b[1] - a[1]).map(([l, ms]) => `${l} ${ms.toFixed(1)}`).join(', ')}`);
  const total = [...by.values()].reduce((a, b) => a + b, 0);
  const top = [...by.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12);
  log(`\n${what}: ${total.toFixed(1)} GPU ms per step`);
  log(table(['kernel', 'ms', '%'], top.map(([k, ms]) => [k, ms.toFixed(2), ((ms / total) * 100).toFixed(1)])));
}

async function stepSection(): Promise<void> {
  const model = 'meso4';
  const size = 64;
  const batch = 32;
  const modes: KernelMode[] = ['dense', 'sparse', 'auto'];
  // The levels' masks: global magnitude pruning of the initial weights (what IMP at 20%/level keeps
  // when training barely moves the weights; the densities per layer are what matter here).
  const ref = createModel(model, { size, seed: 0 });
  const ws0 = prunableWeights(ref);
  const host = new Map<string, Float32Array>();
  for (const w of ws0) host.set(w.key, (await ref.stateDict().get(w.key)!.toArray()) as Float32Array);
  const scores = magnitudeScores(host);
  const levels = quick ? [0, maxLevel] : Array.from({ length: maxLevel + 1 }, (_, k) => k);
  const summary: (string | number)[][] = [];
  const shapes = new Map(ws0.map((w) => [w.key, w.shape]));
  for (const [g, level] of GRANULARITIES.flatMap((g) => levels.filter((l) => g === GRANULARITIES[0] || l > 0).map((l) => [g, l] as const))) {
    const sparsity = sparsityAfter(level, 0.2);
    const masks: HostMasks = pruneToSparsity(onesMasks(ws0), scores, sparsity, SCOPE, { granularity: g, shapes });
    const steps = new Map<KernelMode, { train: () => void; infer: () => void; dispose: () => void }>();
    const plans: string[] = [];
    for (const mode of modes) {
      const m: Detector = createModel(model, { size, seed: 0 });
      const ws = prunableWeights(m);
      const gpu = attachMasks(ws, masks, mode);
      const ts = trainStep(m, size, batch);
      for (const [k, t] of m.namedParameters()) if (gpu.has(k)) ts.opt.setMask(t, gpu.get(k)!);
      if (mode !== 'dense') {
        const plan = await planKernels(m, [batch, 3, size, size], mode);
        if (mode === 'auto') {
          for (const r of plan.layers) {
            plans.push(`${r.layer}:${r.kernels.forward[0]}${r.kernels['input-grad'][0]}${r.kernels['weight-grad'][0]}`);
            for (const phase of PHASES) {
              const [sk, sms] = bestSparse(r.ms![phase]);
              rows.push({ model, granularity: g, layer: r.layer, phase, density: r.density, denseMs: r.ms![phase].dense!, sparseMs: sms, sparseKernel: sk, autoMs: r.ms![phase][r.kernels[phase]]!, autoKernel: r.kernels[phase] });
            }
          }
        }
      }
      const infer = () => {
        m.eval();
        noGrad(() => tidy(() => m.forward(ts.x)));
        m.train();
      };
      steps.set(mode, { train: ts.step, infer, dispose: ts.dispose });
    }
    if (has('profile')) for (const mode of modes) await profileSteps(`level ${level} ${g} ${mode}`, steps.get(mode)!.train);
    const times = new Map<string, number[]>();
    const cpu = new Map<string, number[]>();
    for (const kind of ['train', 'infer'] as const) {
      const r = await interleavedSteps(modes, (mode) => steps.get(mode)![kind](), stepPairs);
      for (const mode of modes) {
        times.set(`${kind}|${mode}`, r.wall.get(mode)!);
        cpu.set(`${kind}|${mode}`, r.cpu.get(mode)!);
      }
    }
    for (const s of steps.values()) s.dispose();
    const density = masks.size ? [...masks.values()].reduce((s, m) => s + m.reduce((a, b) => a + b, 0), 0) / [...masks.values()].reduce((s, m) => s + m.length, 0) : 1;
    for (const kind of ['train', 'infer'] as const) {
      const [d, s, a] = modes.map((mode) => median(times.get(`${kind}|${mode}`)!));
      const [dc, sc, ac] = modes.map((mode) => median(cpu.get(`${kind}|${mode}`)!));
      rows.push({ model, granularity: g, layer: '(step)', phase: kind, density, denseMs: d, sparseMs: s, sparseKernel: 'sparse', autoMs: a, autoKernel: 'auto' });
      summary.push([
        GRANULARITIES.length > 1 ? `${level} ${g}` : level,
        `${((1 - density) * 100).toFixed(1)}%`,
        kind,
        d.toFixed(1),
        s.toFixed(1),
        a.toFixed(1),
        (d / s).toFixed(2),
        (d / a).toFixed(2),
        `${dc.toFixed(0)}/${sc.toFixed(0)}/${ac.toFixed(0)}`,
        (dc / ac).toFixed(2),
        kind === 'train' ? plans.join(' ') : '',
      ]);
    }
  }
  log(`\n${model} ${size} px batch ${batch}: whole steps per IMP level (${SCOPE}, 20%/level), median wall-clock ms of ${stepPairs} (and process CPU ms), modes interleaved`);
  log(table(['level', 'pruned', 'step', 'dense', 'sparse', 'auto', 'dense/sparse', 'dense/auto', 'CPU d/s/a', 'CPU dense/auto', 'auto kernels (fwd,in,wt: d/c/b)'], summary));
}

log(`${dev.info.device || dev.info.description}${soft ? ' (software)' : ''}; ${quick ? 'quick' : 'full'} run`);
const t0 = performance.now();
const forms = flag('forms');
if (forms) await formsSection(forms.split(';').map((x) => x.trim()).filter(Boolean));
else if (!has('no-layers')) await layerSection();
if (!has('no-steps')) await stepSection();
log(`\ntook ${((performance.now() - t0) / 1000).toFixed(0)} s`);
if (json) console.log(JSON.stringify(rows, null, 1));
closeDevice();

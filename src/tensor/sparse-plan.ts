// Kernel choice for pruned layers: per layer and phase (forward, input-gradient, weight-gradient),
// the dense kernel on the masked weight or one of the sparse candidates of src/shaders/sparse-conv.ts.
// The choice is the planner's (plan.ts): three families, 'pruned.fwd', 'pruned.dgrad', 'pruned.wgrad',
// whose geometry is the layer problem AND its weight density (density is part of the shape class), and
// whose candidates serve the 'sparse' weight format:
//   dense           conv2d / matmul of ops/conv.ts, ops/matmul.ts on w * mask (the planner picks their
//                   own variant in turn): every tap, whatever the density
//   sparse:csr      BN = 1 compressed rows: one channel's kept taps, no padding; wins at low density
//   sparse:blocked  BN = 8: the union of 8 channels' taps, the dense direct kernel's arithmetic
//                   intensity; wins when neighbouring channels keep the same taps (moderate density)
// The static rule (`--kernels sparse`) takes csr below 30% density, blocked above. `auto` times the
// three on the layer's shapes under its mask (planLayer) and installs the fastest as the tuned choice;
// TICKETLAB_KERNELS=pruned.fwd:dense (or pruned:sparse:csr, ...) overrides, as for every family.
import { queue } from './queue.js';
import { device } from './device.js';
import { plan, planKey, registerCandidates, registerFamily, setTunedChoices, type BenchCase, type Plan } from './plan.js';
import { withPhase } from './trace.js';
import { empty, fromArray, tidy, type Shape, type Tensor } from './tensor.js';
import { binary } from './ops/map.js';
import { randomUniform } from './ops/random.js';
import { conv2dBackwardInput, conv2dBackwardWeight, conv2dForward, conv2dGeometry, type Conv2dOptions } from './ops/conv.js';
import { matmul } from './ops/matmul.js';
import {
  SparseWeight,
  sparseConv2dBackwardInput,
  sparseConv2dBackwardWeight,
  sparseConv2dForward,
  sparseGather,
  sparseLinearBackwardInput,
  sparseLinearBackwardWeight,
  sparseLinearForward,
  type SparseBlock,
} from './ops/sparse.js';

export type KernelMode = 'dense' | 'sparse' | 'auto';
export const KERNEL_MODES: readonly KernelMode[] = ['dense', 'sparse', 'auto'];
export type KernelVariant = 'dense' | 'csr' | 'blocked';
export const KERNEL_VARIANTS: readonly KernelVariant[] = ['dense', 'csr', 'blocked'];
export type Phase = 'forward' | 'input-grad' | 'weight-grad';
export const PHASES: readonly Phase[] = ['forward', 'input-grad', 'weight-grad'];

/** The kernel of each phase of one layer. */
export type LayerKernels = Record<Phase, KernelVariant>;

/** The planner family of each phase. */
export const PHASE_FAMILY: Readonly<Record<Phase, string>> = { forward: 'pruned.fwd', 'input-grad': 'pruned.dgrad', 'weight-grad': 'pruned.wgrad' };
const VARIANT_ID: Readonly<Record<KernelVariant, string>> = { dense: 'dense', csr: 'sparse:csr', blocked: 'sparse:blocked' };

export function variantOfPlan(p: Plan): KernelVariant {
  return p.id === 'dense' ? 'dense' : p.tile === 'csr' ? 'csr' : 'blocked';
}

export function blockOf(v: Exclude<KernelVariant, 'dense'>): SparseBlock {
  return v === 'csr' ? 1 : 8;
}

/** Below this density `--kernels sparse` uses compressed rows, above it the blocked layout. */
export const SPARSE_CSR_BELOW = 0.3;

/** `--kernels sparse` without timing: the sparse candidate suited to the density, in every phase. */
export function sparseDefault(density: number): LayerKernels {
  const v: KernelVariant = density < SPARSE_CSR_BELOW ? 'csr' : 'blocked';
  return { forward: v, 'input-grad': v, 'weight-grad': v };
}

/** A pruned layer as the planner sees it: its problem and its weight density. */
export interface PrunedGeometry {
  p: LayerProblem;
  density: number;
}

/** One pruned layer's problem: a conv on input xShape, or a linear ([N, in] input). */
export interface LayerProblem {
  kind: 'conv' | 'linear';
  xShape: Shape;
  wShape: Shape;
  opts: Conv2dOptions;
}

export function outputShape(p: LayerProblem): number[] {
  if (p.kind === 'linear') return [p.xShape[0], p.wShape[0]];
  const g = conv2dGeometry(p.xShape, p.wShape, p.opts);
  return [g.n, g.cout, g.oh, g.ow];
}

/** Operands of a layer's phases: x (forward, weight-grad), dy (the grads), the dense weight, its mask. */
export interface PhaseOperands {
  x?: Tensor;
  dy?: Tensor;
  w: Tensor;
  mask: Tensor;
  sw: SparseWeight;
  /** Added by the forward phase. */
  bias?: Tensor | null;
}

function need(t: Tensor | undefined, what: string, phase: Phase): Tensor {
  if (!t) throw new Error(`${phase}: no ${what} given`);
  return t;
}

/**
 * Runs one phase of a pruned layer with the given variant; the result equals the dense masked path's
 * within float32 rounding (weight-grad: exact +0 at pruned positions either way).
 */
export function runPhase(p: LayerProblem, phase: Phase, v: KernelVariant, o: PhaseOperands): Tensor {
  return tidy(() => {
    const lin = p.kind === 'linear';
    const bias = o.bias ?? null;
    if (phase === 'forward') {
      const x = need(o.x, 'input', phase);
      if (v === 'dense') {
        const wm = binary('mul', o.w, o.mask);
        return lin ? matmul(x, wm, { transB: true, bias: bias ?? undefined }) : conv2dForward(x, wm, bias, p.opts);
      }
      const bn = blockOf(v);
      const vals = sparseGather(o.w, o.sw.side(bn, true));
      return lin ? sparseLinearForward(x, o.sw, vals, bn, bias) : sparseConv2dForward(x, o.sw, vals, bn, bias, p.opts);
    }
    const dy = need(o.dy, 'output gradient', phase);
    if (phase === 'input-grad') {
      if (v === 'dense') {
        const wm = binary('mul', o.w, o.mask);
        return lin ? matmul(dy, wm) : conv2dBackwardInput(dy, wm, p.xShape, p.opts);
      }
      const bn = blockOf(v);
      const vals = sparseGather(o.w, o.sw.side(bn, false));
      return lin ? sparseLinearBackwardInput(dy, o.sw, vals, bn, p.xShape) : sparseConv2dBackwardInput(dy, o.sw, vals, bn, p.xShape, p.opts);
    }
    const x = need(o.x, 'input', phase);
    return withPhase('weight-grad', () => {
      if (v === 'dense') {
        const full = lin ? matmul(dy, x, { transA: true }) : conv2dBackwardWeight(dy, x, p.wShape, p.opts);
        return binary('mul', full, o.mask);
      }
      const bn = blockOf(v);
      return lin ? sparseLinearBackwardWeight(dy, x, o.sw, bn) : sparseConv2dBackwardWeight(dy, x, o.sw, bn, p.opts);
    });
  });
}

/** Random operands of a layer problem (uniform values; the mask comes from the SparseWeight). */
export function randomOperands(p: LayerProblem, sw: SparseWeight, mask: Tensor, seed = 1): PhaseOperands {
  return {
    x: randomUniform(p.xShape, { seed, stream: 1 }, -1, 1),
    dy: randomUniform(outputShape(p), { seed, stream: 2 }, -1, 1),
    w: randomUniform(p.wShape, { seed, stream: 3 }, -1, 1),
    mask,
    sw,
  };
}

export function disposeOperands(o: PhaseOperands): void {
  o.x?.dispose();
  o.dy?.dispose();
  o.w.dispose();
}

/**
 * What a timing measures. 'wall': elapsed ms. 'cpu': this process's CPU ms (user + system, all
 * threads). A software adapter (lavapipe) runs the kernels on this process's threads, so its CPU time
 * is the work done and stays meaningful when other processes compete for the cores, where wall-clock
 * samples of a few ms swing by several times; on a GPU only wall-clock means anything.
 */
export type TimeMetric = 'wall' | 'cpu';

export function defaultMetric(): TimeMetric {
  return device().info.isSoftware ? 'cpu' : 'wall';
}

/** ms per run of `fn`, run `n` times back to back (work submitted and finished), in `metric`. */
export async function timeRuns(fn: () => Tensor, n = 1, metric: TimeMetric = defaultMetric()): Promise<number> {
  await queue.sync();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn().dispose();
  await queue.sync();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return (metric === 'cpu' ? (c.user + c.system) / 1000 : wall) / n;
}

/** A timed sample lasts at least this long (short kernels are repeated), so timer and submit noise stay small. */
const SAMPLE_MS = 15;

export type PhaseTimes = Record<Phase, Partial<Record<KernelVariant, number>>>;

/**
 * Times every (phase, variant) of a layer: one untimed run each (pipeline compile, and the repeat
 * count for a sample of >= SAMPLE_MS), then `reps` rounds in which the variants run interleaved. Each
 * variant keeps its fastest sample: on a shared machine other work only ever adds time, so the
 * minimum is the estimate least disturbed by it, and interleaving keeps the ratios fair.
 */
export async function timeLayer(
  p: LayerProblem,
  o: PhaseOperands,
  variants: readonly KernelVariant[] = KERNEL_VARIANTS,
  reps = 3,
  metric: TimeMetric = defaultMetric(),
): Promise<PhaseTimes> {
  const out = { forward: {}, 'input-grad': {}, 'weight-grad': {} } as PhaseTimes;
  for (const phase of PHASES) {
    const runs = new Map<KernelVariant, number>();
    const best = new Map<KernelVariant, number>();
    for (const v of variants) {
      const fn = () => runPhase(p, phase, v, o);
      await timeRuns(fn, 1, metric);
      const ms = await timeRuns(fn, 1, metric);
      runs.set(v, Math.max(1, Math.min(32, Math.ceil(SAMPLE_MS / Math.max(ms, 0.01)))));
      best.set(v, ms);
    }
    for (let r = 0; r < reps; r++) {
      const order = r % 2 ? [...variants].reverse() : variants;
      for (const v of order) best.set(v, Math.min(best.get(v)!, await timeRuns(() => runPhase(p, phase, v, o), runs.get(v)!, metric)));
    }
    for (const v of variants) out[phase][v] = best.get(v)!;
  }
  return out;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * A sparse kernel replaces the dense one only when it was timed at least this much faster. The layer
 * timings are isolated samples; in a step a sparse layer also pays its value gather after every
 * optimizer update, and near-ties go either way with machine noise, so ties go to dense.
 */
export const SPARSE_MARGIN = 0.05;

/** Per phase: dense, unless the fastest sparse variant beats it by SPARSE_MARGIN. */
export function fastest(t: PhaseTimes): LayerKernels {
  const pick = (ph: Phase): KernelVariant => {
    const dense = t[ph].dense ?? Infinity;
    let best: KernelVariant = 'dense';
    let bestMs = Infinity;
    for (const [v, ms] of Object.entries(t[ph]) as [KernelVariant, number][]) if (v !== 'dense' && ms < bestMs) [best, bestMs] = [v, ms];
    return bestMs < dense * (1 - SPARSE_MARGIN) ? best : 'dense';
  };
  return { forward: pick('forward'), 'input-grad': pick('input-grad'), 'weight-grad': pick('weight-grad') };
}

export function shapeClass(p: LayerProblem, density: number): string {
  const o = p.opts;
  return `${p.kind} x${p.xShape.join('x')} w${p.wShape.join('x')} s${JSON.stringify(o.stride ?? 1)} p${JSON.stringify(o.padding ?? 0)} d${JSON.stringify(o.dilation ?? 1)} density${Math.round(density * 1000) / 10}%`;
}

function benchCase(phase: Phase, g: PrunedGeometry, pl: Plan): BenchCase {
  const n = g.p.wShape.reduce((a, b) => a * b, 1);
  const keep = Math.round(g.density * n);
  // Kept positions spread evenly: the tuner needs the density, not a particular mask.
  const mask = Uint8Array.from({ length: n }, (_, i) => (Math.floor(((i + 1) * keep) / n) > Math.floor((i * keep) / n) ? 1 : 0));
  const sw = new SparseWeight(mask, g.p.wShape);
  const maskT = fromArray(Float32Array.from(mask), g.p.wShape);
  const o = randomOperands(g.p, sw, maskT);
  const v = variantOfPlan(pl);
  return {
    run: () => runPhase(g.p, phase, v, o).dispose(),
    dispose: () => {
      disposeOperands(o);
      maskT.dispose();
      sw.dispose();
    },
  };
}

for (const phase of PHASES) {
  const family = PHASE_FAMILY[phase];
  registerFamily<PrunedGeometry>({
    family,
    about: `pruned conv/linear ${phase}: dense kernel on weight * mask, or a sparse kernel skipping pruned weights`,
    shapeClass: (g) => shapeClass(g.p, g.density),
    defaultRule: (g, _dev, cands) => cands.find((c) => c.id === VARIANT_ID[sparseDefault(g.density)[phase]]) ?? cands[0],
    bench: (g, pl) => benchCase(phase, g, pl),
  });
  registerCandidates<PrunedGeometry>(family, [
    { variant: 'dense', formats: ['sparse'] },
    { variant: 'sparse', tile: 'csr', params: { bn: 1 }, formats: ['sparse'] },
    { variant: 'sparse', tile: 'blocked', params: { bn: 8 }, formats: ['sparse'] },
  ]);
}

/** The planner's kernel for one phase of a pruned layer (override, pins, tuned, then the density rule). */
export function planPhase(p: LayerProblem, density: number, phase: Phase): KernelVariant {
  return variantOfPlan(plan<PrunedGeometry>(PHASE_FAMILY[phase], { p, density }, { format: 'sparse', density }));
}

export function planPhases(p: LayerProblem, density: number): LayerKernels {
  return { forward: planPhase(p, density, 'forward'), 'input-grad': planPhase(p, density, 'input-grad'), 'weight-grad': planPhase(p, density, 'weight-grad') };
}

/** Installs per-phase choices for a layer problem as the planner's tuned choices. */
export function installChoices(p: LayerProblem, density: number, k: LayerKernels): void {
  const choices: Record<string, string> = {};
  for (const ph of PHASES) choices[planKey(PHASE_FAMILY[ph], shapeClass(p, density), { format: 'sparse', density })] = VARIANT_ID[k[ph]];
  setTunedChoices(choices);
}

/** Timings already taken in this process, by planner key (a level meets the same shapes again). */
const timed = new Map<string, PhaseTimes>();

/**
 * `auto` for one layer: times dense and both sparse candidates on random data of the layer's shapes
 * under its real mask (CPU time on a software adapter, see TimeMetric), once per shape class and
 * process, installs the fastest per phase as the planner's tuned choice and returns what the planner
 * then resolves (an override still wins) with the timings.
 */
export async function planLayer(p: LayerProblem, sw: SparseWeight, mask: Tensor, reps = 3): Promise<{ kernels: LayerKernels; times: PhaseTimes }> {
  const key = shapeClass(p, sw.density);
  let times = timed.get(key);
  if (!times) {
    const o = randomOperands(p, sw, mask);
    try {
      times = await timeLayer(p, o, KERNEL_VARIANTS, reps);
    } finally {
      disposeOperands(o);
    }
    timed.set(key, times);
  }
  installChoices(p, sw.density, fastest(times));
  return { kernels: planPhases(p, sw.density), times };
}

// Kernel choice for pruned layers: per layer and phase (forward, input-gradient, weight-gradient),
// the dense kernel on the masked weight or one of the sparse candidates of src/shaders/sparse-conv.ts.
// Every masked conv/linear layer runs through here (autograd/functional-nn.ts prunedLayer); the choice
// is the planner's (plan.ts): three families, 'pruned.fwd', 'pruned.dgrad', 'pruned.wgrad', whose
// geometry is the layer problem and, when the layer has a compressed layout, its weight density (then
// part of the shape class). Candidates:
//   dense           conv2d / matmul of ops/conv.ts, ops/matmul.ts on w * mask (the planner picks their
//                   own variant in turn): every tap, whatever the density; serves both weight formats
//   sparse:csr      BN = 1 compressed rows: one channel's kept taps, no padding; wins at low density
//   sparse:blocked  BN = 8: the union of 8 channels' taps, the dense direct kernel's arithmetic
//                   intensity; wins when neighbouring channels keep the same taps (moderate density)
// The sparse candidates serve the 'sparse' weight format only: a layer whose mask has no compressed
// layout (KernelMode 'dense': nn/sparse.ts builds none) asks with format 'dense' and gets dense. With
// a layout the static rule takes csr below 30% density, blocked above (`--kernels sparse`); `auto`
// times the three on the layer's shapes under its mask (planLayer, with tune.ts's interleaved timer)
// and installs the fastest as the tuned choice; TICKETLAB_KERNELS=pruned.fwd:dense (or
// pruned:sparse:csr, ...) overrides, as for every family.
import { plan, planKey, registerCandidates, registerFamily, setTunedChoices, type BenchCase, type Plan, type PlanQuery } from './plan.js';
import { timeInterleaved, type TimeMetric } from './tune.js';
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
  type SparseBlock,
} from './ops/sparse.js';
import { sparseLinearBackwardInput, sparseLinearBackwardWeight, sparseLinearForward } from './ops/sparse-linear.js';

/**
 * Which kernels a model's pruned layers may run (the CLI's --kernels): 'dense' builds no compressed
 * layouts, so the planner can only pick the dense candidate; 'sparse' builds them and takes the
 * planner's rule; 'auto' also times the candidates per layer at the start of a level (planLayer).
 */
export type KernelMode = 'dense' | 'sparse' | 'auto';
export const KERNEL_MODES: readonly KernelMode[] = ['dense', 'sparse', 'auto'];

export function parseKernelMode(raw: string, flag = '--kernels'): KernelMode {
  if (!(KERNEL_MODES as readonly string[]).includes(raw)) throw new Error(`${flag} '${raw}' is not one of ${KERNEL_MODES.join(', ')}`);
  return raw as KernelMode;
}
export type KernelVariant = 'dense' | 'csr' | 'blocked';
export const KERNEL_VARIANTS: readonly KernelVariant[] = ['dense', 'csr', 'blocked'];
export type Phase = 'forward' | 'input-grad' | 'weight-grad';
export const PHASES: readonly Phase[] = ['forward', 'input-grad', 'weight-grad'];

/** The kernel of each phase of one layer. */
export type LayerKernels = Record<Phase, KernelVariant>;

/** The planner family of each phase. */
export const PHASE_FAMILY: Readonly<Record<Phase, string>> = { forward: 'pruned.fwd', 'input-grad': 'pruned.dgrad', 'weight-grad': 'pruned.wgrad' };
const VARIANT_ID: Readonly<Record<KernelVariant, string>> = { dense: 'dense', csr: 'sparse:csr', blocked: 'sparse:blocked' };

/** The planner candidate id of a variant ('dense', 'sparse:csr', 'sparse:blocked'). */
export function variantId(v: KernelVariant): string {
  return VARIANT_ID[v];
}

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

/** A pruned layer as the planner sees it: its problem and, when it has a compressed layout, its weight density. */
export interface PrunedGeometry {
  p: LayerProblem;
  density: number | null;
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
  /** The compressed layout (null: none built; only the dense candidate can run). */
  sw: SparseWeight | null;
  /** w * mask when the caller already has it (the dense forward and input gradient share it). */
  wm?: Tensor;
  /** Added by the forward phase. */
  bias?: Tensor | null;
}

function need<T>(t: T | undefined | null, what: string, phase: Phase): T {
  if (!t) throw new Error(`${phase}: no ${what} given`);
  return t;
}

function masked(o: PhaseOperands): Tensor {
  return o.wm ?? binary('mul', o.w, o.mask);
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
        const wm = masked(o);
        return lin ? matmul(x, wm, { transB: true, bias: bias ?? undefined }) : conv2dForward(x, wm, bias, p.opts);
      }
      const bn = blockOf(v);
      const sw = need(o.sw, 'compressed layout', phase);
      const vals = sparseGather(o.w, sw.side(bn, true));
      return lin ? sparseLinearForward(x, sw, vals, bn, bias) : sparseConv2dForward(x, sw, vals, bn, bias, p.opts);
    }
    const dy = need(o.dy, 'output gradient', phase);
    if (phase === 'input-grad') {
      if (v === 'dense') {
        const wm = masked(o);
        return lin ? matmul(dy, wm) : conv2dBackwardInput(dy, wm, p.xShape, p.opts);
      }
      const bn = blockOf(v);
      const sw = need(o.sw, 'compressed layout', phase);
      if (!lin) return sparseConv2dBackwardInput(dy, sw, o.w, bn, p.xShape, p.opts);
      return sparseLinearBackwardInput(dy, sw, sparseGather(o.w, sw.side(bn, false)), bn, p.xShape);
    }
    const x = need(o.x, 'input', phase);
    return withPhase('weight-grad', () => {
      if (v === 'dense') {
        const full = lin ? matmul(dy, x, { transA: true }) : conv2dBackwardWeight(dy, x, p.wShape, p.opts);
        return binary('mul', full, o.mask);
      }
      const bn = blockOf(v);
      const sw = need(o.sw, 'compressed layout', phase);
      return lin ? sparseLinearBackwardWeight(dy, x, sw, bn) : sparseConv2dBackwardWeight(dy, x, sw, bn, p.opts);
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

export type PhaseTimes = Record<Phase, Partial<Record<KernelVariant, number>>>;

/** Times every (phase, variant) of a layer, the variants of a phase interleaved (tune.ts timeInterleaved). */
export async function timeLayer(p: LayerProblem, o: PhaseOperands, variants: readonly KernelVariant[] = KERNEL_VARIANTS, reps = 3, metric?: TimeMetric): Promise<PhaseTimes> {
  const out = { forward: {}, 'input-grad': {}, 'weight-grad': {} } as PhaseTimes;
  for (const phase of PHASES) {
    const best = await timeInterleaved(new Map(variants.map((v) => [v, () => runPhase(p, phase, v, o)])), reps, metric);
    for (const v of variants) out[phase][v] = best.get(v)!;
  }
  return out;
}

/**
 * A sparse kernel replaces the dense one only when it was timed at least this much faster. The layer
 * timings are isolated samples; in a step a sparse layer also pays its value gather after every
 * optimizer update, and near-ties go either way with machine noise, so ties go to dense.
 */
export const SPARSE_MARGIN = 0.05;

/**
 * `auto` runs a layer that keeps more than this share of its weights dense, whatever the timings: a
 * sparse layout there does the dense work plus a value gather per step, so a sparse win in the isolated
 * timing is noise or a better-tiled kernel, not skipped weights (at IMP level 0, 100% density, `auto`
 * once took the blocked forward and weight gradient for Meso-4's conv1).
 */
export const SPARSE_MAX_DENSITY = 0.9;

/** Per phase: dense, unless the fastest sparse variant beats it by SPARSE_MARGIN (and the layer is at most SPARSE_MAX_DENSITY dense). */
export function fastest(t: PhaseTimes, density = 0): LayerKernels {
  const pick = (ph: Phase): KernelVariant => {
    if (density > SPARSE_MAX_DENSITY) return 'dense';
    const dense = t[ph].dense ?? Infinity;
    let best: KernelVariant = 'dense';
    let bestMs = Infinity;
    for (const [v, ms] of Object.entries(t[ph]) as [KernelVariant, number][]) if (v !== 'dense' && ms < bestMs) [best, bestMs] = [v, ms];
    return bestMs < dense * (1 - SPARSE_MARGIN) ? best : 'dense';
  };
  return { forward: pick('forward'), 'input-grad': pick('input-grad'), 'weight-grad': pick('weight-grad') };
}

/** The tuning key of a pruned layer; with a compressed layout (density not null) its density is part of it. */
export function shapeClass(p: LayerProblem, density: number | null): string {
  const o = p.opts;
  const base = `${p.kind} x${p.xShape.join('x')} w${p.wShape.join('x')} s${JSON.stringify(o.stride ?? 1)} p${JSON.stringify(o.padding ?? 0)} d${JSON.stringify(o.dilation ?? 1)}`;
  return density === null ? base : `${base} density${Math.round(density * 1000) / 10}%`;
}

/** The planner query of a pruned layer: the sparse weight format when it has a compressed layout. */
function prunedQuery(density: number | null): PlanQuery {
  return density === null ? {} : { format: 'sparse', density };
}

function benchCase(phase: Phase, g: PrunedGeometry, pl: Plan): BenchCase {
  const n = g.p.wShape.reduce((a, b) => a * b, 1);
  const keep = Math.round((g.density ?? 1) * n);
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
    // Without a layout only 'dense' suits; with one, the density decides (sparseDefault).
    defaultRule: (g, _dev, cands) => (g.density === null ? undefined : cands.find((c) => c.id === VARIANT_ID[sparseDefault(g.density!)[phase]])) ?? cands[0],
    bench: (g, pl) => benchCase(phase, g, pl),
  });
  registerCandidates<PrunedGeometry>(family, [
    { variant: 'dense', formats: ['dense', 'sparse'] },
    { variant: 'sparse', tile: 'csr', params: { bn: 1 }, formats: ['sparse'] },
    { variant: 'sparse', tile: 'blocked', params: { bn: 8 }, formats: ['sparse'] },
  ]);
}

/**
 * The planner's kernel for one phase of a pruned layer (override, pins, tuned, then the rule); density
 * null: the layer has no compressed layout.
 */
export function planPhase(p: LayerProblem, density: number | null, phase: Phase): KernelVariant {
  return variantOfPlan(plan<PrunedGeometry>(PHASE_FAMILY[phase], { p, density }, prunedQuery(density)));
}

export function planPhases(p: LayerProblem, density: number | null): LayerKernels {
  return { forward: planPhase(p, density, 'forward'), 'input-grad': planPhase(p, density, 'input-grad'), 'weight-grad': planPhase(p, density, 'weight-grad') };
}

/** The planner keys of a pruned layer's three phases (what kernels.json records them under). */
export function phaseKeys(p: LayerProblem, density: number | null): Record<Phase, string> {
  const key = (ph: Phase) => planKey(PHASE_FAMILY[ph], shapeClass(p, density), prunedQuery(density));
  return { forward: key('forward'), 'input-grad': key('input-grad'), 'weight-grad': key('weight-grad') };
}

/** The kernels recorded for a layer in a planner record (kernels.json), or null when one phase is missing. */
export function recordedKernels(record: Readonly<Record<string, string>>, p: LayerProblem, density: number | null): LayerKernels | null {
  const keys = phaseKeys(p, density);
  const out = {} as LayerKernels;
  for (const ph of PHASES) {
    const id = record[keys[ph]];
    const v = (Object.keys(VARIANT_ID) as KernelVariant[]).find((k) => VARIANT_ID[k] === id);
    if (!v) return null;
    out[ph] = v;
  }
  return out;
}

/** Installs per-phase choices for a layer problem as the planner's tuned choices. */
export function installChoices(p: LayerProblem, density: number, k: LayerKernels): void {
  const keys = phaseKeys(p, density);
  setTunedChoices(Object.fromEntries(PHASES.map((ph) => [keys[ph], VARIANT_ID[k[ph]]])));
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
  installChoices(p, sw.density, fastest(times, sw.density));
  return { kernels: planPhases(p, sw.density), times };
}

// Pruned layers on sparse kernels: which kernels a model's masked conv/linear layers run (`--kernels
// dense|sparse|auto`, the planner's weight-format policy), the compressed layouts built from the host
// masks, and the per-level plan.
//
//   dense   the masked dense path (weight * mask, then the dense kernel): no layout is built
//   sparse  pruned layers ask the planner (tensor/sparse-plan.ts) per phase; its static rule takes
//           sparse kernels: compressed rows below 30% density, blocked above
//   auto    at the start of a level each pruned layer's three candidates (dense, compressed rows,
//           blocked) are timed on its shapes and mask and the fastest per phase becomes the planner's
//           tuned choice; choices are logged and recorded per level (sparse-kernels.json)
import type { Module } from './module.js';
import { Conv2d, Linear, type Prunable } from './layers.js';
import { SparseWeight } from '../tensor/ops/sparse.js';
import { fill } from '../tensor/ops/map.js';
import { noGrad } from '../autograd/tape.js';
import { tidy } from '../tensor/tensor.js';
import { setWeightFormatPolicy, weightFormatPolicy } from '../tensor/plan.js';
import {
  installChoices,
  KERNEL_MODES,
  planLayer,
  planPhases,
  type KernelMode,
  type LayerKernels,
  type LayerProblem,
  type PhaseTimes,
} from '../tensor/sparse-plan.js';

/** Sets the process's kernel mode (the CLI's --kernels): the planner's weight-format policy. */
export function setKernelMode(m: KernelMode): void {
  setWeightFormatPolicy(m);
}

export function kernelMode(): KernelMode {
  return weightFormatPolicy();
}

export function parseKernelMode(raw: string, flag = '--kernels'): KernelMode {
  if (!(KERNEL_MODES as readonly string[]).includes(raw)) throw new Error(`${flag} '${raw}' is not one of ${KERNEL_MODES.join(', ')}`);
  return raw as KernelMode;
}

/** Builds the compressed layout of a layer's mask (once per level) unless the mode is dense. */
export function attachSparse(layer: Prunable, hostMask: ArrayLike<number>, m: KernelMode = kernelMode()): void {
  detachSparse(layer);
  if (m === 'dense') return;
  layer.sparse = { sw: new SparseWeight(hostMask, layer.weight.shape) };
}

export function detachSparse(layer: Prunable): void {
  layer.sparse?.sw.dispose();
  layer.sparse = null;
}

/** One layer's recorded choice (sparse-kernels.json of a level). */
export interface LayerKernelRecord {
  layer: string;
  kind: LayerProblem['kind'];
  density: number;
  /** The shapes the choice was made for. */
  problem: LayerProblem;
  kernels: LayerKernels;
  /** auto: the timed candidates, ms per phase and variant (CPU ms on a software adapter). */
  ms?: PhaseTimes;
}

export interface KernelPlan {
  mode: KernelMode;
  input: number[];
  layers: LayerKernelRecord[];
}

function sparseLayers(model: Module): [string, Prunable & Module, LayerProblem['kind']][] {
  const out: [string, Prunable & Module, LayerProblem['kind']][] = [];
  for (const [name, m] of model.namedModules()) {
    if (m instanceof Conv2d && m.sparse) out.push([name, m, 'conv']);
    else if (m instanceof Linear && m.sparse) out.push([name, m, 'linear']);
  }
  return out;
}

/** Each pruned layer's problem at model input `input`: one forward without gradients, in eval mode. */
export function layerProblems(model: Module, input: readonly number[]): Map<string, LayerProblem> {
  const wasTraining = model.training;
  model.eval();
  try {
    noGrad(() => tidy(() => model.forward(fill(input, 0))));
  } finally {
    model.train(wasTraining);
  }
  const out = new Map<string, LayerProblem>();
  for (const [name, l, kind] of sparseLayers(model)) {
    if (!l.lastInput) continue;
    out.set(name, { kind, xShape: [...l.lastInput], wShape: [...l.weight.shape], opts: l instanceof Conv2d ? l.opts : {} });
  }
  return out;
}

/**
 * The kernels of every pruned layer at model input `input`: `auto` times the candidates (planLayer,
 * once per shape class and density in a process) and makes the fastest the planner's choice; `sparse`
 * takes the planner's rule. Returns what the planner resolves, for the level's record and log.
 */
export async function planKernels(model: Module, input: readonly number[], m: KernelMode = kernelMode()): Promise<KernelPlan> {
  const layers: LayerKernelRecord[] = [];
  const problems = layerProblems(model, input);
  for (const [name, l, kind] of sparseLayers(model)) {
    const p = problems.get(name);
    if (!p) throw new Error(`kernel plan: layer '${name}' was not reached by a forward pass`);
    const sw = l.sparse!.sw;
    if (m === 'auto') {
      const r = await planLayer(p, sw, l.mask!);
      layers.push({ layer: name, kind, density: sw.density, problem: p, kernels: r.kernels, ms: r.times });
    } else {
      layers.push({ layer: name, kind, density: sw.density, problem: p, kernels: planPhases(p, sw.density) });
    }
  }
  return { mode: m, input: [...input], layers };
}

/** Re-installs recorded choices in the planner (a resumed level runs the kernels it started with). */
export function applyKernelPlan(model: Module, plan: KernelPlan, what: string): void {
  const names = new Set(sparseLayers(model).map(([n]) => n));
  for (const r of plan.layers) {
    if (!names.has(r.layer)) throw new Error(`${what}: layer '${r.layer}' has no pruned weight in this model`);
    installChoices(r.problem, r.density, r.kernels);
  }
}

/** One line per layer: `conv2 (12.0% kept): forward csr, input-grad dense, weight-grad csr`. */
export function describePlan(plan: KernelPlan): string[] {
  return plan.layers.map(
    (r) => `${r.layer} (${(r.density * 100).toFixed(1)}% kept): forward ${r.kernels.forward}, input-grad ${r.kernels['input-grad']}, weight-grad ${r.kernels['weight-grad']}`,
  );
}

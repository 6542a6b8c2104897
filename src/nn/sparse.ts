// Pruned layers on sparse kernels: which kernels a model's masked conv/linear layers run (`--kernels
// dense|sparse|auto`), the compressed layouts built from the host masks, and the per-layer plan.
//
//   dense   the masked dense path (weight * mask, then the dense kernel): no layout is built
//   sparse  every phase of every pruned layer on a sparse kernel (compressed rows below 30% density,
//           blocked above; sparse-plan.ts sparseDefault)
//   auto    per layer and phase the fastest of dense / compressed rows / blocked, timed on the layer's
//           shapes and density (sparse-plan.ts planLayer); choices are logged and recorded per level
import type { Module } from './module.js';
import { Conv2d, Linear, type Prunable } from './layers.js';
import { SparseWeight } from '../tensor/ops/sparse.js';
import { fill } from '../tensor/ops/map.js';
import { noGrad } from '../autograd/tape.js';
import { tidy } from '../tensor/tensor.js';
import {
  ALL_DENSE,
  KERNEL_MODES,
  planLayer,
  sparseDefault,
  type KernelMode,
  type LayerKernels,
  type LayerProblem,
  type PhaseTimes,
} from '../tensor/sparse-plan.js';

let mode: KernelMode = 'dense';

/** The process-wide kernel mode (the CLI's --kernels); masks attached afterwards follow it. */
export function setKernelMode(m: KernelMode): void {
  mode = m;
}

export function kernelMode(): KernelMode {
  return mode;
}

export function parseKernelMode(raw: string, flag = '--kernels'): KernelMode {
  if (!(KERNEL_MODES as readonly string[]).includes(raw)) throw new Error(`${flag} '${raw}' is not one of ${KERNEL_MODES.join(', ')}`);
  return raw as KernelMode;
}

/** Builds the compressed layout of a layer's mask (once per level) unless the mode is dense. */
export function attachSparse(layer: Prunable, hostMask: ArrayLike<number>, m: KernelMode = mode): void {
  detachSparse(layer);
  if (m === 'dense') return;
  const sw = new SparseWeight(hostMask, layer.weight.shape);
  // auto starts dense and is planned by planKernels once the layer's input shape is known.
  layer.sparse = { sw, kernels: m === 'sparse' ? sparseDefault(sw.density) : { ...ALL_DENSE } };
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
  kernels: LayerKernels;
  /** auto: the timed candidates, ms per phase and variant. */
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
    out.set(name, { kind, xShape: l.lastInput, wShape: l.weight.shape, opts: l instanceof Conv2d ? l.opts : {} });
  }
  return out;
}

/**
 * Chooses the kernels of every pruned layer for the current mode: `auto` times the candidates on the
 * layer's shapes at model input `input` (cached per shape class and density), `sparse` takes the
 * density rule. Returns what was chosen, for the level's record and log.
 */
export async function planKernels(model: Module, input: readonly number[], m: KernelMode = mode): Promise<KernelPlan> {
  const layers: LayerKernelRecord[] = [];
  const problems = m === 'auto' ? layerProblems(model, input) : new Map<string, LayerProblem>();
  for (const [name, l, kind] of sparseLayers(model)) {
    const st = l.sparse!;
    if (m === 'auto') {
      const p = problems.get(name);
      if (!p) throw new Error(`kernel plan: layer '${name}' was not reached by a forward pass`);
      const r = await planLayer(p, st.sw, l.mask!);
      st.kernels = r.kernels;
      layers.push({ layer: name, kind, density: st.sw.density, kernels: r.kernels, ms: r.times });
    } else {
      layers.push({ layer: name, kind, density: st.sw.density, kernels: st.kernels });
    }
  }
  return { mode: m, input: [...input], layers };
}

/** Re-applies recorded choices (a resumed level runs the kernels it started with). */
export function applyKernelPlan(model: Module, plan: KernelPlan, what: string): void {
  const byName = new Map(sparseLayers(model).map(([n, l]) => [n, l]));
  for (const r of plan.layers) {
    const l = byName.get(r.layer);
    if (!l) throw new Error(`${what}: layer '${r.layer}' has no pruned weight in this model`);
    l.sparse!.kernels = { ...r.kernels };
  }
}

/** One line per layer: `conv2 (12.0% kept): forward csr, input-grad dense, weight-grad csr`. */
export function describePlan(plan: KernelPlan): string[] {
  return plan.layers.map(
    (r) => `${r.layer} (${(r.density * 100).toFixed(1)}% kept): forward ${r.kernels.forward}, input-grad ${r.kernels['input-grad']}, weight-grad ${r.kernels['weight-grad']}`,
  );
}

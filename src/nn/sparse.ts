// Pruned layers on sparse kernels: which kernels a model's masked conv/linear layers may run (`--kernels
// dense|sparse|auto`, tensor/sparse-plan.ts KernelMode), the compressed layouts built from the host
// masks, and the kernels of a level.
//
//   dense   no layout is built: the planner's only candidate for a masked layer is the dense kernel on
//           weight * mask
//   sparse  layouts are built; pruned layers ask the planner (tensor/sparse-plan.ts) per phase, and its
//           static rule takes sparse kernels: compressed rows below 30% density, blocked above
//   auto    as sparse, and at the start of a level each pruned layer's three candidates (dense,
//           compressed rows, blocked) are timed on its shapes and mask; the fastest per phase becomes
//           the planner's tuned choice
//
// The mode is an argument, passed from the command down to the level, not process state. A level's
// choices have one record: the planner record in its kernels.json (the keys of the pruned.* families),
// which fit() pins on --resume. Beside it sparse-kernels.json keeps what the report shows: the mode,
// the layers' problems and densities, and auto's timings. Older runs also wrote the choices there; a
// level resumed from such a folder without them in kernels.json installs them from that file.
import * as fs from 'node:fs';
import type { Module } from './module.js';
import { Conv2d, Linear, type Prunable } from './layers.js';
import { legacyBlockedChoices, SparseWeight } from '../tensor/ops/sparse.js';
import { familyOfKey, setTunedChoices } from '../tensor/plan.js';
import { fill } from '../tensor/ops/map.js';
import { noGrad } from '../autograd/tape.js';
import { tidy } from '../tensor/tensor.js';
import { readJson, writeJsonAtomic } from '../io/atomic.js';
import { runFile } from '../io/run-paths.js';
import {
  installChoices,
  phaseKeys,
  planLayer,
  planPhases,
  recordedKernels,
  variantId,
  PHASES,
  type KernelMode,
  type LayerKernels,
  type LayerProblem,
  type PhaseTimes,
} from '../tensor/sparse-plan.js';

/** Builds the compressed layout of a layer's mask (once per level) unless the mode is dense. */
export function attachSparse(layer: Prunable, hostMask: ArrayLike<number>, m: KernelMode): void {
  detachSparse(layer);
  if (m === 'dense') return;
  layer.sparse = { sw: new SparseWeight(hostMask, layer.weight.shape) };
}

export function detachSparse(layer: Prunable): void {
  layer.sparse?.sw.dispose();
  layer.sparse = null;
}

/** One layer's kernels (sparse-kernels.json of a level holds all but `kernels`, which kernels.json records). */
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

/** Masked conv/linear layers with a compressed layout, by name. */
function sparseLayers(model: Module): [string, Prunable & Module, LayerProblem['kind']][] {
  const out: [string, Prunable & Module, LayerProblem['kind']][] = [];
  for (const [name, m] of model.namedModules()) {
    if (m instanceof Conv2d && m.sparse) out.push([name, m, 'conv']);
    else if (m instanceof Linear && m.sparse) out.push([name, m, 'linear']);
  }
  return out;
}

/**
 * Each pruned layer's problem at model input `input`: one forward without gradients, in eval mode,
 * with a forward hook on each layer reading the shape of its input.
 */
export function layerProblems(model: Module, input: readonly number[]): Map<string, LayerProblem> {
  const out = new Map<string, LayerProblem>();
  const handles = sparseLayers(model).map(([name, l, kind]) =>
    l.registerForwardHook((_m, x) => {
      out.set(name, { kind, xShape: [...x.shape], wShape: [...l.weight.shape], opts: l instanceof Conv2d ? l.opts : {} });
    }),
  );
  const wasTraining = model.training;
  model.eval();
  try {
    noGrad(() => tidy(() => model.forward(fill(input, 0))));
  } finally {
    model.train(wasTraining);
    for (const h of handles) h.remove();
  }
  return out;
}

/**
 * The kernels of every pruned layer at model input `input`: `auto` times the candidates (planLayer,
 * once per shape class and density in a process) and makes the fastest the planner's choice; `sparse`
 * takes the planner's rule. Returns what the planner resolves, for the level's record and log.
 */
export async function planKernels(model: Module, input: readonly number[], m: KernelMode): Promise<KernelPlan> {
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

/** A level's sparse-kernels.json as read back: a plan whose layers may lack `kernels` (they are in kernels.json). */
export interface KernelPlanFile {
  mode: KernelMode;
  input: number[];
  layers: (Omit<LayerKernelRecord, 'kernels'> & { kernels?: LayerKernels })[];
}

/** Reads a sparse-kernels.json (one-line error naming the file). */
export function readKernelPlanFile(file: string): KernelPlanFile {
  let plan: KernelPlanFile;
  try {
    plan = JSON.parse(fs.readFileSync(file, 'utf8')) as KernelPlanFile;
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!plan || typeof plan !== 'object' || !Array.isArray(plan.layers)) throw new Error(`${file}: not a kernel plan (no 'layers' list)`);
  return plan;
}

/**
 * The plan of a level folder: each layer's kernels from the file itself where it holds them (runs
 * before the planner record held them, and `ticketlab profile`'s auto plans), else from the level's
 * planner record (kernels.json); null when a layer has neither.
 */
export function levelPlan(dir: string): KernelPlan | null {
  const file = runFile(dir, 'sparseKernels');
  return fs.existsSync(file) ? planWithKernels(readKernelPlanFile(file), dir) : null;
}

/** A level's sparse-kernels.json, read, with each layer's kernels (see levelPlan). */
export function planWithKernels(plan: KernelPlanFile, dir: string): KernelPlan | null {
  if (!plan || typeof plan !== 'object' || !Array.isArray(plan.layers)) return null;
  const rec = fs.existsSync(runFile(dir, 'kernels')) ? (JSON.parse(fs.readFileSync(runFile(dir, 'kernels'), 'utf8')) as Record<string, string>) : {};
  const layers: LayerKernelRecord[] = [];
  for (const l of plan.layers) {
    const kernels = l.kernels ?? recordedKernels(rec, l.problem, l.density);
    if (!kernels) return null;
    layers.push({ ...l, kernels });
  }
  return { mode: plan.mode, input: plan.input, layers };
}

export interface LevelKernelsOptions {
  mode: KernelMode;
  /** The model input the layers' shapes follow from ([batch, 3, size, size]). */
  input: readonly number[];
  /**
   * The level's folder: the choices go into its kernels.json (which fit() pins), the layers and timings
   * into sparse-kernels.json, and a level that has them already (--resume) reuses them untimed.
   */
  dir?: string;
  /** Prefix of the log line, e.g. the level's label. */
  label: string;
  log: (line: string) => void;
}

/**
 * The kernels of a model's pruned layers for one level, in one place for every command: nothing to do
 * for `dense`; otherwise the choices a level folder already records, or planned now (auto: timed),
 * logged, and recorded in the folder. Returns the plan (null for dense).
 */
export async function levelKernels(model: Module, o: LevelKernelsOptions): Promise<KernelPlan | null> {
  if (o.mode === 'dense') return null;
  if (o.dir) {
    const have = await recordedPlan(model, o.dir, o.mode);
    if (have) return have;
  }
  const t0 = performance.now();
  const plan = await planKernels(model, o.input, o.mode);
  const took = o.mode === 'auto' ? ` (timed in ${((performance.now() - t0) / 1000).toFixed(1)} s)` : '';
  o.log(`${o.label}: kernels ${o.mode}${took}`);
  for (const line of describePlan(plan)) o.log(`  ${line}`);
  if (o.dir) await recordPlan(o.dir, plan);
  return plan;
}

/**
 * A resumed level's plan in this mode: its planner record (kernels.json) already holds every pruned
 * layer's choices (fit() pins them), or an older run's sparse-kernels.json holds them (installed here as
 * the planner's choices; the level's first checkpoint then records them in kernels.json).
 */
async function recordedPlan(model: Module, dir: string, mode: KernelMode): Promise<KernelPlan | null> {
  const file = runFile(dir, 'sparseKernels');
  if (!fs.existsSync(file)) return null;
  const plan = readKernelPlanFile(file);
  if (plan.mode !== mode) return null;
  const full = levelPlan(dir);
  if (!full) return null;
  const names = new Set(sparseLayers(model).map(([n]) => n));
  if (full.layers.length !== names.size || full.layers.some((l) => !names.has(l.layer))) return null;
  applyKernelPlan(model, full, file);
  const recFile = runFile(dir, 'kernels');
  const rec = fs.existsSync(recFile) ? await readJson<Record<string, string>>(recFile) : {};
  if (!Object.keys(rec).some((k) => familyOfKey(k) === 'sparse.blocked')) installLegacyForms(model, full);
  return full;
}

/**
 * A level recorded before the row-strip forms of the blocked layout existed resumes on the forms it
 * ran (legacyBlockedChoices), as tuned choices: its record pins nothing for those families.
 */
function installLegacyForms(model: Module, plan: KernelPlan): void {
  const layers = new Map(sparseLayers(model).map(([n, l]) => [n, l]));
  for (const r of plan.layers) {
    if (r.kind !== 'conv') continue;
    const sw = layers.get(r.layer)?.sparse?.sw;
    if (sw) setTunedChoices(legacyBlockedChoices(sw, r.problem.xShape, r.problem.opts));
  }
}

/** Writes a level's choices into its planner record and its layers (and timings) into sparse-kernels.json. */
async function recordPlan(dir: string, plan: KernelPlan): Promise<void> {
  const recFile = runFile(dir, 'kernels');
  const rec = fs.existsSync(recFile) ? await readJson<Record<string, string>>(recFile) : {};
  for (const l of plan.layers) {
    const keys = phaseKeys(l.problem, l.density);
    for (const ph of PHASES) rec[keys[ph]] = variantId(l.kernels[ph]);
  }
  await writeJsonAtomic(recFile, Object.fromEntries(Object.entries(rec).sort(([a], [b]) => (a < b ? -1 : 1))));
  await writeJsonAtomic(runFile(dir, 'sparseKernels'), { ...plan, layers: plan.layers.map(({ kernels: _k, ...l }) => l) });
}

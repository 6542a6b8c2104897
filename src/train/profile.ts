// Per-layer kernel profile of one training step (forward, loss, backward, optimizer), and the shape
// discovery that `ticketlab tune` runs before timing candidates.
//
// Every dispatch of the step is stamped with its layer (module scopes, src/nn/module.ts), phase
// (forward / input-grad / weight-grad / optimizer, src/tensor/trace.ts), op, planner variant and shape;
// the queue's profiler times each with timestamp queries. Rows are per (layer, phase, op, variant,
// shape), in ms per step, with nominal GFLOP/s = dense FLOPs / time (pruned weights still count: the
// dense kernels do that work; sparse kernels show as a higher nominal rate), and the dispatches and
// bytes read / written per step (the queue's counting; no timestamps needed for those).
import { backward } from '../autograd/tape.js';
import * as F from '../autograd/functional.js';
import type { Detector } from '../nn/models/index.js';
import { Optimizer } from '../nn/optim/optimizer.js';
import { device } from '../tensor/device.js';
import { plannerSeen, resetPlannerRecord, type SeenQuery } from '../tensor/plan.js';
import { queue, type DispatchCount } from '../tensor/queue.js';
import { fromArray, keep, tidy, type Tensor } from '../tensor/tensor.js';
import type { Phase } from '../tensor/trace.js';

/** One row of a profile; exactly the fields of `ticketlab profile --json`. */
export interface ProfileRow {
  layer: string;
  phase: Phase;
  op: string;
  variant: string;
  shape: string;
  /** Weight density of the layer (kept / total), null for layers without a prunable weight. */
  density: number | null;
  /** GPU ms per step. */
  ms: number;
  /** Nominal GFLOP/s: dense FLOPs / GPU time (0 where the op's FLOPs are not counted). */
  gflops: number;
  /** Dispatches per step. */
  dispatches: number;
  /** Bytes per step of the read-only storage bindings (tensor/queue.ts says how bytes are counted). */
  bytesRead: number;
  /** Bytes per step of the read_write storage bindings. */
  bytesWritten: number;
}

/** What `level_<k>/profile.json` holds (ticketlab profile --run; read by the run report). */
export interface LevelProfileFile {
  model: string;
  size: number;
  batch: number;
  level: number;
  adapter: string;
  gpuMs: number;
  wallMs: number;
  rows: ProfileRow[];
}

export interface StepProfile {
  rows: ProfileRow[];
  /** Sum of the rows' GPU ms per step (0 when only counted). */
  gpuMs: number;
  /** Wall-clock ms per step without profiling (a few steps in flight, as training runs; 0 when only counted). */
  wallMs: number;
  /** Sums of the rows per step: dispatches and bytes moved. */
  dispatches: number;
  bytesRead: number;
  bytesWritten: number;
  steps: number;
  adapter: string;
  /** True when the step was only counted (dispatches and bytes; no timing, no timestamp queries). */
  countOnly: boolean;
}

export interface ProfileOptions {
  size: number;
  batch: number;
  /** Profiled steps (rows are per-step means; default 2). */
  steps?: number;
  /** Weight density by layer name ('layer1.0.conv1'), e.g. from a pruning level's masks. */
  densities?: ReadonlyMap<string, number>;
  /** Count dispatches and bytes only: no timing, works without timestamp queries. */
  countOnly?: boolean;
}

/** Phases in step order, for sorting rows. */
export const PHASES: readonly Phase[] = ['forward', 'input-grad', 'weight-grad', 'optimizer', 'other'];

export interface SyntheticStep {
  step: () => void;
  opt: Optimizer;
  /** The resident input batch (for inference timing). */
  x: Tensor;
  dispose: () => void;
}

/**
 * One training step (forward, BCE-with-logits, backward, Adam) over a fixed synthetic batch that
 * stays on the device, as PyTorch benchmarks keep theirs: what profiles, tuning and bench/ time.
 */
export function syntheticStep(model: Detector, size: number, batch: number): SyntheticStep {
  const named = [...model.namedParameters()];
  const opt = new Optimizer(named.map(([, t]) => t), { kind: 'adam', lr: 1e-4 }, named.map(([k]) => k));
  const x = keep(fromArray(new Float32Array(batch * 3 * size * size).map((_, i) => Math.sin(i) * 0.5 + 0.5), [batch, 3, size, size]));
  const y = keep(fromArray(new Float32Array(batch).map((_, i) => i % 2), [batch, 1]));
  const step = () =>
    tidy(() => {
      backward(F.bceWithLogits(model.forward(x), y));
      opt.step();
      opt.zeroGrad();
    });
  return {
    step,
    opt,
    x,
    dispose: () => {
      opt.dispose();
      x.dispose();
      y.dispose();
    },
  };
}

/** Runs one training step so the planner meets every (family, shape class) of the model. */
export async function discoverShapes(model: Detector, size: number, batch: number): Promise<SeenQuery[]> {
  resetPlannerRecord();
  const s = syntheticStep(model, size, batch);
  try {
    s.step();
    await queue.sync();
  } finally {
    s.dispose();
  }
  return plannerSeen();
}

/** Per-step rows from the queue's raw rows of `steps` steps (time is 0 for counted rows). */
function perStepRows(raw: readonly (DispatchCount & { ms?: number })[], steps: number, densities: ReadonlyMap<string, number> | undefined): ProfileRow[] {
  const merged = new Map<string, ProfileRow & { flops: number }>();
  for (const r of raw) {
    const layer = r.layer || '(model)';
    const key = `${layer}|${r.phase}|${r.op}|${r.variant}|${r.shape}`;
    let m = merged.get(key);
    if (!m) {
      const density = densities?.get(layer) ?? null;
      merged.set(key, (m = { layer, phase: r.phase, op: r.op, variant: r.variant, shape: r.shape, density, ms: 0, gflops: 0, dispatches: 0, bytesRead: 0, bytesWritten: 0, flops: 0 }));
    }
    m.ms += (r.ms ?? 0) / steps;
    m.flops += r.flops / steps;
    m.dispatches += r.calls / steps;
    m.bytesRead += r.bytesRead / steps;
    m.bytesWritten += r.bytesWritten / steps;
  }
  return [...merged.values()].map(({ flops, ...row }) => ({ ...row, gflops: row.ms > 0 ? flops / (row.ms * 1e6) : 0 }));
}

function sum(rows: readonly ProfileRow[], f: (r: ProfileRow) => number): number {
  return rows.reduce((a, r) => a + f(r), 0);
}

/**
 * Profiles training steps of `model` (weights and masks as they are; they change as it trains): GPU
 * time per row from timestamp queries, or with `countOnly` just dispatches and bytes moved.
 */
export async function profileTrainStep(model: Detector, o: ProfileOptions): Promise<StepProfile> {
  const steps = o.steps ?? 2;
  model.train();
  const s = syntheticStep(model, o.size, o.batch);
  try {
    s.step(); // compiles every pipeline (and makes the optimizer's state, which later steps only update)
    await queue.sync();
    let wallMs = 0;
    let raw: (DispatchCount & { ms?: number })[];
    if (o.countOnly) {
      queue.startCount();
      for (let i = 0; i < steps; i++) s.step();
      raw = queue.stopCount();
      await queue.sync();
    } else {
      const t0 = performance.now();
      for (let i = 0; i < steps; i++) {
        s.step();
        await queue.endStep();
      }
      await queue.sync();
      wallMs = (performance.now() - t0) / steps;
      queue.startProfile();
      for (let i = 0; i < steps; i++) s.step();
      raw = await queue.stopProfileRows();
    }
    const rows = perStepRows(raw, steps, o.densities);
    const info = device().info;
    return {
      rows,
      gpuMs: sum(rows, (r) => r.ms),
      wallMs,
      dispatches: sum(rows, (r) => r.dispatches),
      bytesRead: sum(rows, (r) => r.bytesRead),
      bytesWritten: sum(rows, (r) => r.bytesWritten),
      steps,
      adapter: [info.vendor, info.device, info.description].filter(Boolean).join(' '),
      countOnly: !!o.countOnly,
    };
  } finally {
    s.dispose();
  }
}

/** Sums rows per (layer, phase): the table's coarse view. */
export function byLayerPhase(rows: readonly ProfileRow[]): ProfileRow[] {
  const m = new Map<string, ProfileRow & { flops: number }>();
  for (const r of rows) {
    const k = `${r.layer}|${r.phase}`;
    let t = m.get(k);
    if (!t) m.set(k, (t = { ...r, op: '', variant: '', shape: '', ms: 0, gflops: 0, dispatches: 0, bytesRead: 0, bytesWritten: 0, flops: 0 }));
    t.ms += r.ms;
    t.dispatches += r.dispatches;
    t.bytesRead += r.bytesRead;
    t.bytesWritten += r.bytesWritten;
    t.flops += r.gflops * r.ms * 1e6;
    if (!t.op.split('+').includes(r.op)) t.op = t.op ? `${t.op}+${r.op}` : r.op;
    if (!t.variant.split('+').includes(r.variant)) t.variant = t.variant ? `${t.variant}+${r.variant}` : r.variant;
  }
  return [...m.values()].map(({ flops, ...r }) => ({ ...r, gflops: r.ms > 0 ? flops / (r.ms * 1e6) : 0 }));
}

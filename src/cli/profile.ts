// `ticketlab profile`: where a training step's GPU time goes, per layer and phase, with the kernel
// variant the planner chose, nominal GFLOP/s and the share of the step. With --run, the levels of a
// pruning run (their weights and masks) are profiled and the report gains time per layer vs level.
import * as fs from 'node:fs';
import { closeDevice, initDevice } from '../tensor/device.js';
import { levelKernels, readKernelPlanFile } from '../nn/sparse.js';
import { KERNEL_MODES, type KernelMode } from '../tensor/sparse-plan.js';
import { kernelFlag } from './flags.js';
import { useTuneCache } from '../tensor/tune.js';
import { createModel, MODEL_NAMES, type Detector } from '../nn/models/index.js';
import { prunableWeights, loadMasks, attachMasks, countKept } from '../prune/masks.js';
import { loadWeightsFile } from '../prune/level.js';
import { readF32Tensors } from '../nn/checkpoint.js';
import { byLayerPhase, PHASES, profileTrainStep, type LevelProfileFile, type ProfileRow, type StepProfile } from '../train/profile.js';
import { readJson, writeJsonAtomic } from '../io/atomic.js';
import { levelDir, parseLevelName, runFile, RUN_FILES } from '../io/run-paths.js';
import { writeRunReport } from '../report/run-report.js';
import { formatTable, type TableRow } from '../util/table.js';
import { num, wantsTune } from './flags.js';
import { parseFlags, type Command } from './args.js';

export const PROFILE_JSON_FIELDS = ['layer', 'phase', 'op', 'variant', 'shape', 'density', 'ms', 'gflops', 'dispatches', 'bytesRead', 'bytesWritten'] as const;

interface RunConfig {
  model?: string;
  size?: number;
  train?: { batch?: number };
}

export function profileRowJson(r: ProfileRow): Record<(typeof PROFILE_JSON_FIELDS)[number], unknown> {
  return {
    layer: r.layer,
    phase: r.phase,
    op: r.op,
    variant: r.variant,
    shape: r.shape,
    density: r.density,
    ms: r.ms,
    gflops: r.gflops,
    dispatches: r.dispatches,
    bytesRead: r.bytesRead,
    bytesWritten: r.bytesWritten,
  };
}

const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(2);

/** One line with a step's dispatches and bytes moved. */
export function formatTraffic(p: Pick<StepProfile, 'dispatches' | 'bytesRead' | 'bytesWritten'>): string {
  return `${p.dispatches.toFixed(0)} dispatches per step; ${mb(p.bytesRead + p.bytesWritten)} MiB moved per step (${mb(p.bytesRead)} read, ${mb(p.bytesWritten)} written: bytes of each dispatch's bindings)`;
}

/** The terminal table: one block per layer, one row per phase (ops summed), sorted by step order. */
export function formatProfile(p: StepProfile, detail: boolean): string {
  const rows = detail ? p.rows : byLayerPhase(p.rows);
  const order = new Map<string, number>();
  p.rows.forEach((r) => order.has(r.layer) || order.set(r.layer, order.size));
  const sorted = [...rows].sort((a, b) => (order.get(a.layer)! - order.get(b.layer)!) || PHASES.indexOf(a.phase) - PHASES.indexOf(b.phase) || b.ms - a.ms);
  const table: TableRow[] = sorted.map((r) => ({
    layer: r.layer,
    phase: r.phase,
    ...(detail ? { op: r.op, shape: r.shape } : {}),
    variant: r.variant,
    density: r.density === null ? '' : `${(r.density * 100).toFixed(1)}%`,
    ...(p.countOnly
      ? {}
      : { ms: r.ms.toFixed(3), 'GFLOP/s': r.gflops > 0 ? r.gflops.toFixed(2) : '', share: `${((r.ms / p.gpuMs) * 100).toFixed(1)}%` }),
    calls: r.dispatches.toFixed(0),
    'MiB read': mb(r.bytesRead),
    'MiB written': mb(r.bytesWritten),
  }));
  const time = p.countOnly
    ? ''
    : `GPU time ${p.gpuMs.toFixed(2)} ms per step (sum of kernels, each timed alone); wall clock ${p.wallMs.toFixed(2)} ms per step unprofiled\n`;
  return formatTable(table) + `\n${time}${formatTraffic(p)}; ${p.adapter}\n`;
}

/** Layer name -> weight density of the model's prunable layers (1 without masks). */
function densities(model: Detector, masks: Map<string, Uint8Array> | null): Map<string, number> {
  const out = new Map<string, number>();
  for (const w of prunableWeights(model, true)) {
    const m = masks?.get(w.key);
    out.set(w.key.replace(/\.weight$/, ''), m ? countKept(m) / m.length : 1);
  }
  return out;
}

/** Loads a level's weights (final, else start) and its masks into the model; returns the masks. */
async function loadLevel(model: Detector, dir: string, kernels: KernelMode): Promise<Map<string, Uint8Array> | null> {
  const weights = ['final', 'start'].map((f) => runFile(dir, f as 'final' | 'start')).find((f) => fs.existsSync(f));
  if (!weights) throw new Error(`${dir}: no final.safetensors or start.safetensors to profile`);
  await loadWeightsFile(model, weights);
  const maskFile = runFile(dir, 'mask');
  if (!fs.existsSync(maskFile)) return null;
  // Masks cover the pruned layers (the classifier only with --prune-last): take those the file has.
  const { tensors } = await readF32Tensors(maskFile);
  const ws = prunableWeights(model, true).filter((w) => tensors.has(`${w.key}_mask`));
  const masks = await loadMasks(maskFile, ws);
  attachMasks(ws, masks, kernels);
  return masks;
}

function runLevels(run: string): number[] {
  return fs
    .readdirSync(run)
    .map((n) => parseLevelName(n))
    .filter((k): k is number => k !== null && fs.existsSync(levelDir(run, k)))
    .sort((a, b) => a - b);
}

export const profileCommand: Command = {
  name: 'profile',
  summary: "per-layer kernel profile of a training step: variant, ms, GFLOP/s, share (optionally for a run's levels)",
  help: `ticketlab profile --model M --size S --batch B [--steps N] [--detail] [--json] [--count] [--tune] [--kernels K]
ticketlab profile --run DIR [--level K] [...]

Times every kernel of a training step (forward, BCE loss, backward, Adam) on a fixed synthetic batch,
with GPU timestamp queries (Dawn's timestamp quantisation is off), and prints one row per layer and
phase: forward, input-grad, weight-grad, optimizer. Each row shows the kernel variant the planner
chose, GPU ms per step, nominal GFLOP/s (dense FLOPs / time: pruned weights still count, so sparse
kernels show a higher nominal rate), the layer's weight density and the share of the step, and the
dispatches and the MiB read and written per step. Bytes are those of the storage ranges each dispatch
binds, counted once per binding and dispatch (the least traffic the kernel can cause): read-only
bindings as read, read_write bindings as written only (most only store; the few that also read, such
as accumulations, are under-counted by that read); uniform parameters are not counted.
Kernels run one per compute pass while profiling, so the sum exceeds an unprofiled step a little;
the unprofiled wall-clock time is printed under the table.

  --model NAME     ${MODEL_NAMES.join(' | ')} (default meso4; with --run, the run's)
  --size PX        input size (default 64; with --run, the run's)
  --batch N        batch size (default 32; with --run, the run's)
  --steps N        profiled steps, rows are per-step means (default 2)
  --count          count dispatches and bytes only: no timing, no timestamp queries needed (any adapter)
  --detail         one row per op, variant and shape instead of per layer and phase
  --json           one JSON object per line and row (per op, variant and shape), with exactly the
                   fields ${PROFILE_JSON_FIELDS.join(', ')}
                   (density null for layers without a prunable weight; profiling every level of
                   --run adds a leading "level" field)
  --tune           use the tuned kernels of this adapter (ticketlab tune; env TICKETLAB_TUNE=1);
                   default: the static rules
  --no-tune        the static rules even when TICKETLAB_TUNE=1 is set
  --kernels K      ${KERNEL_MODES.join(' | ')}: kernels of pruned layers (default dense): with --run,
                   sparse runs each level's pruned layers on sparse kernels (compressed rows below 30%
                   density, blocked above), auto times dense / compressed rows / blocked per layer and
                   phase first and keeps the fastest; rows show the variant (sparse:csr, sparse:blocked)
                   and nominal GFLOP/s; the report's kernels section plots time per layer vs density
  --run DIR        a train/imp run folder: profile its levels with their weights and masks; writes
                   level_<k>/profile.json and rebuilds DIR/report.html with time per layer vs level
  --level K        only level K of --run (printed like a plain profile; profile.json written too)
Timing needs the timestamp-query feature (lavapipe and the big GPU drivers have it); --count does not.
`,
  async run(args) {
    const { values } = parseFlags(
      args,
      {
        model: { type: 'string' },
        size: { type: 'string' },
        batch: { type: 'string' },
        steps: { type: 'string', default: '2' },
        detail: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        count: { type: 'boolean', default: false },
        tune: { type: 'boolean', default: false },
        'no-tune': { type: 'boolean', default: false },
        kernels: { type: 'string', default: 'dense' },
        run: { type: 'string' },
        level: { type: 'string' },
      },
      'profile',
    );
    const kernels = kernelFlag(values);
    if (values.level !== undefined && !values.run) throw new Error('profile: --level needs --run DIR');
    let cfg: RunConfig = {};
    if (values.run) {
      if (!fs.existsSync(runFile(values.run, 'config'))) throw new Error(`profile: --run ${values.run} is not a run folder (no config.json)`);
      cfg = await readJson<RunConfig>(runFile(values.run, 'config'));
    }
    const model = values.model ?? cfg.model ?? 'meso4';
    if (!(MODEL_NAMES as readonly string[]).includes(model)) throw new Error(`profile: --model '${model}' is not one of ${MODEL_NAMES.join(', ')}`);
    if (values.run && cfg.model && values.model && values.model !== cfg.model) throw new Error(`profile: --model ${values.model} differs from the run's ${cfg.model}`);
    const size = values.size !== undefined ? num(values, 'size', { int: true, min: 8 }) : (cfg.size ?? 64);
    const batch = values.batch !== undefined ? num(values, 'batch', { int: true, min: 1 }) : (cfg.train?.batch ?? 32);
    const steps = num(values, 'steps', { int: true, min: 1 });
    const dev = await initDevice();
    try {
      if (!dev.hasTimestamps && !values.count) throw new Error('profile: this adapter has no timestamp-query feature (--count works without it)');
      if (wantsTune(values)) useTuneCache();
      const levels = values.run ? (values.level !== undefined ? [num(values, 'level', { int: true, min: 0 })] : runLevels(values.run)) : [null];
      if (values.run && !levels.length) throw new Error(`profile: ${values.run} has no level_<k> folders yet`);
      for (const level of levels) {
        const m = createModel(model, { size, seed: 0 });
        try {
          let masks: Map<string, Uint8Array> | null = null;
          if (values.run && level !== null) {
            const dir = levelDir(values.run, level);
            if (!fs.existsSync(dir)) throw new Error(`profile: ${dir} does not exist`);
            masks = await loadLevel(m, dir, kernels);
            const plan = masks ? await levelKernels(m, { mode: kernels, input: [batch, 3, size, size], label: `level ${level}`, log: (l) => process.stderr.write(l + '\n') }) : null;
            // auto's timings feed the report's dense-vs-sparse section; a level's own record stays
            // unless it has no timings. The file then holds this plan's kernels too (the level's
            // kernels.json holds the training's, if any; the report prefers the file's own).
            const file = runFile(dir, 'sparseKernels');
            if (plan?.mode === 'auto' && (!fs.existsSync(file) || !readKernelPlanFile(file).layers.some((l) => l.ms))) {
              await writeJsonAtomic(file, plan);
            }
          }
          const p = await profileTrainStep(m, { size, batch, steps, densities: densities(m, masks), countOnly: values.count });
          if (values.run && level !== null && !values.count) {
            const file: LevelProfileFile = { model, size, batch, level, adapter: p.adapter, gpuMs: p.gpuMs, wallMs: p.wallMs, rows: p.rows };
            await writeJsonAtomic(runFile(levelDir(values.run, level), 'profile'), file);
          }
          if (values.json) {
            for (const r of p.rows) process.stdout.write(JSON.stringify(levels.length > 1 ? { level, ...profileRowJson(r) } : profileRowJson(r)) + '\n');
          } else if (levels.length === 1) {
            process.stdout.write(`${model} ${size}px batch ${batch}${level !== null ? `, level ${level}` : ''}\n` + formatProfile(p, values.detail));
          } else {
            const time = p.countOnly ? '' : `GPU ${p.gpuMs.toFixed(2)} ms per step, wall ${p.wallMs.toFixed(2)} ms; `;
            process.stdout.write(`level ${level}: ${time}${formatTraffic(p)}\n`);
          }
        } finally {
          m.dispose();
        }
      }
      if (values.run && values.level === undefined) {
        const rep = await writeRunReport([values.run], values.run);
        if (!values.json) process.stdout.write(`report: ${rep.files.find((f) => f.endsWith(RUN_FILES.report)) ?? values.run}\n`);
      }
    } finally {
      closeDevice();
    }
    return 0;
  },
};

// One training step's gradients, layer by layer, under different kernel choices (issue 20,
// docs/sparse-kernels.md): the model of a run's level (its start weights and mask), the first 32 training
// images of the run's data, forward + BCE + backward, once per choice:
//   dense        --kernels dense with the planner's default kernels
//   sparse       --kernels sparse
//   direct       --kernels dense with every conv forced to the direct kernel (TICKETLAB_KERNELS=conv:direct)
// For each parameter: max |g_x - g_dense| / max |g_dense| for x = sparse and direct. The direct column is
// float32 rounding between two dense kernels that sum in different orders: the yardstick for "within rounding".
// Then where the runs part: the same model trained STEPS Adam steps (the run's lr, masked, fixed batches of
// the first training images in order) under each choice, with the largest weight difference from dense
// (relative to the weight's largest magnitude) after steps 1, 2, 4, ...
//   tsx bench/kernel-divergence-step.ts RUN [LEVEL] [STEPS]
import * as fs from 'node:fs';
import { openDataset } from '../src/data/datasets.js';
import { createModel, parseModelName } from '../src/nn/models/index.js';
import { loadModel } from '../src/nn/checkpoint.js';
import { attachMasks, detachMasks, loadMasks, prunableWeights } from '../src/prune/masks.js';
import { backward } from '../src/autograd/tape.js';
import * as F from '../src/autograd/functional.js';
import { closeDevice, initDevice } from '../src/tensor/device.js';
import { fromArray, tidy } from '../src/tensor/index.js';
import { setKernelOverride } from '../src/tensor/plan.js';
import { levelDir, runFile } from '../src/io/run-paths.js';
import type { KernelMode } from '../src/tensor/sparse-plan.js';
import { Optimizer } from '../src/nn/optim/optimizer.js';
import { relDiff, stepGradients, type StepInput } from '../tests/ref/step-grads.js';

const [run, levelArg, stepsArg] = process.argv.slice(2);
const STEPS = Number(stepsArg ?? 36);
if (!run) throw new Error('usage: tsx bench/kernel-divergence-step.ts RUN [LEVEL]');
const level = Number(levelArg ?? 1);
const cfg = JSON.parse(fs.readFileSync(runFile(run, 'config'), 'utf8')) as { model: string; data: string; size: number; train: { batch: number; lr: number }; pruneLast: boolean };
await initDevice();
const data = await openDataset(cfg.data, { size: cfg.size, seed: 0 });
const n = cfg.train.batch;
const nBatches = Math.floor(data.train.length() / n);
const batches: { xs: Float32Array; ys: Float32Array }[] = [];
for (let b = 0; b < nBatches; b++) {
  const xs = new Float32Array(n * 3 * cfg.size * cfg.size);
  const ys = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const s = await data.train.get(b * n + i);
    xs.set(s.image, i * s.image.length);
    ys[i] = s.label;
  }
  batches.push({ xs, ys });
}
const { xs, ys } = batches[0];

const inp: StepInput = {
  model: async () => {
    const m = createModel(parseModelName(cfg.model), { size: cfg.size, seed: 0 });
    await loadModel(runFile(levelDir(run, level), 'start'), m);
    return m;
  },
  masks: (ws) => loadMasks(runFile(levelDir(run, level), 'mask'), ws),
  pruneLast: cfg.pruneLast,
  xs,
  ys,
  shape: [n, 3, cfg.size, cfg.size],
};
const dense = await stepGradients(inp, 'dense', null);
const sparse = await stepGradients(inp, 'sparse', null);
const direct = await stepGradients(inp, 'dense', 'conv:direct');
const again = await stepGradients(inp, 'dense', null);
const rel = relDiff;
console.log(`level ${level} of ${run}, one step on ${n} images: max |g - g_dense| / max |g_dense|`);
console.log(['parameter'.padEnd(16), 'sparse'.padStart(10), 'dense/direct'.padStart(13), 'dense again'.padStart(12)].join(' '));
for (const [k, g] of dense) {
  console.log([k.padEnd(16), rel(sparse.get(k)!, g).toExponential(2).padStart(10), rel(direct.get(k)!, g).toExponential(2).padStart(13), rel(again.get(k)!, g).toExponential(2).padStart(12)].join(' '));
}

/** Weights after each of STEPS masked Adam steps (kept at 1, 2, 4, ... and the last). */
async function trajectory(mode: KernelMode, override: string | null): Promise<Map<number, Map<string, Float32Array>>> {
  setKernelOverride(override);
  const model = createModel(parseModelName(cfg.model), { size: cfg.size, seed: 0 });
  await loadModel(runFile(levelDir(run, level), 'start'), model);
  const ws = prunableWeights(model, cfg.pruneLast);
  const masks = await loadMasks(runFile(levelDir(run, level), 'mask'), ws);
  const maskTensors = attachMasks(ws, masks, mode);
  model.train(true);
  const named = [...model.namedParameters()];
  const opt = new Optimizer(named.map(([, t]) => t), { kind: 'adam', lr: cfg.train.lr, momentum: 0.9 }, named.map(([k]) => k));
  for (const [k, t] of named) {
    const m = maskTensors.get(k);
    if (m) opt.setMask(t, m);
  }
  const kept = new Map<number, Map<string, Float32Array>>();
  for (let step = 1; step <= STEPS; step++) {
    const b = batches[(step - 1) % batches.length];
    tidy(() => {
      backward(F.bceWithLogits(model.forward(fromArray(b.xs, [n, 3, cfg.size, cfg.size])), fromArray(b.ys, [n, 1])));
      opt.step();
      opt.zeroGrad();
    });
    if ((step & (step - 1)) === 0 || step === STEPS) {
      const w = new Map<string, Float32Array>();
      for (const [k, t] of named) w.set(k, (await t.toArray()) as Float32Array);
      kept.set(step, w);
    }
  }
  opt.dispose();
  detachMasks(ws);
  model.dispose();
  setKernelOverride(null);
  return kept;
}

const tDense = await trajectory('dense', null);
const tSparse = await trajectory('sparse', null);
const tDirect = await trajectory('dense', 'conv:direct');
console.log(`\n${STEPS} masked Adam steps (lr ${cfg.train.lr}) from level ${level}'s start: max over weights of max |w - w_dense| / max |w_dense|`);
console.log(['step'.padStart(5), 'sparse'.padStart(10), 'dense/direct'.padStart(13)].join(' '));
for (const [step, wd] of tDense) {
  const worst = (t: Map<number, Map<string, Float32Array>>) => Math.max(...[...wd].map(([k, w]) => rel(t.get(step)!.get(k)!, w)));
  console.log([String(step).padStart(5), worst(tSparse).toExponential(2).padStart(10), worst(tDirect).toExponential(2).padStart(13)].join(' '));
}
closeDevice();

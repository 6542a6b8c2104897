// --kernels sparse / auto end to end: pruned layers through autograd match the dense masked path, the
// auto planner picks what it timed fastest (dense unless a sparse kernel wins by a margin), and a whole IMP run trained on sparse kernels ends with the
// same masks and (within float32 noise) the same weights and accuracy as on dense kernels.
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDataset, type DatasetSplits } from '../../src/data/datasets.js';
import { runImp } from '../../src/prune/imp.js';
import { tinyImpConfig } from './tiny-imp.js';
import { readF32Tensors } from '../../src/nn/checkpoint.js';
import { attachMasks, detachMasks, loadMasks, onesMasks, prunableWeights } from '../../src/prune/masks.js';
import { createModel } from '../../src/nn/models/index.js';
import { Conv2d, Linear } from '../../src/nn/layers.js';
import { levelPlan, planKernels, readKernelPlanFile } from '../../src/nn/sparse.js';
import { backward } from '../../src/autograd/tape.js';
import * as F from '../../src/autograd/functional.js';
import { fromArray, tidy } from '../../src/tensor/index.js';
import { fastest, KERNEL_VARIANTS, PHASES, SPARSE_MARGIN, SPARSE_MAX_DENSITY, phaseKeys, type PhaseTimes } from '../../src/tensor/sparse-plan.js';
import { runFile } from '../../src/io/run-paths.js';
import { compactLevel } from '../../src/prune/compaction.js';
import { seededValues } from '../ref/arb.js';
import { expectNear } from '../ref/conv-ref.js';

function maskOf(n: number, density: number, seed: number): Uint8Array {
  return Uint8Array.from(seededValues(n, seed, 0, 1), (v) => (v < density ? 1 : 0));
}

describe('pruned layers through autograd', () => {
  it('sparse and dense kernels give the same output, input grad and masked weight grad (conv and linear)', async () => {
    for (const density of [0, 0.07, 0.4, 1]) {
      const grads: Float32Array[][] = [];
      for (const mode of ['dense', 'sparse'] as const) {
        const conv = new Conv2d(3, 10, 3, { padding: 'same', stride: 2 });
        const lin = new Linear(10 * 4 * 4, 5);
        conv.initialize(1);
        lin.initialize(2);
        const ws = [
          { key: 'c.weight', shape: [...conv.weight.shape], size: conv.weight.size, layer: conv },
          { key: 'l.weight', shape: [...lin.weight.shape], size: lin.weight.size, layer: lin },
        ];
        attachMasks(ws, new Map(ws.map((w, i) => [w.key, maskOf(w.size, density, 9 + i)])), mode);
        const x = fromArray(seededValues(2 * 3 * 8 * 8, 4), [2, 3, 8, 8]);
        x.requiresGrad = true;
        const y = tidy(() => {
          const h = lin.forward(F.flatten(F.relu(conv.forward(x)), 1));
          backward(F.sum(F.mul(h, h)));
          return h;
        });
        grads.push([
          (await y.toArray()) as Float32Array,
          (await x.grad!.toArray()) as Float32Array,
          (await conv.weight.grad!.toArray()) as Float32Array,
          (await lin.weight.grad!.toArray()) as Float32Array,
          (await conv.bias!.grad!.toArray()) as Float32Array,
        ]);
        detachMasks(ws);
      }
      const names = ['output', 'input grad', 'conv weight grad', 'linear weight grad', 'conv bias grad'];
      grads[0].forEach((d, i) => expectNear(grads[1][i], d, 1e-5, `${names[i]} at density ${density}`));
      // Pruned weights get exact +0 gradients from the sparse path.
      const cm = maskOf(10 * 3 * 9, density, 9);
      cm.forEach((m, i) => {
        if (!m) expect(Object.is(grads[1][2][i], 0)).toBe(true);
      });
    }
  });
});

describe('auto', () => {
  it('takes a sparse kernel only past the margin and never above SPARSE_MAX_DENSITY', () => {
    const t: PhaseTimes = {
      forward: { dense: 10, csr: 12, blocked: 4 },
      'input-grad': { dense: 10, csr: 9.8, blocked: 11 },
      'weight-grad': { dense: 10, csr: 3, blocked: 5 },
    };
    expect(fastest(t, 0.2)).toEqual({ forward: 'blocked', 'input-grad': 'dense', 'weight-grad': 'csr' });
    expect(fastest(t, SPARSE_MAX_DENSITY)).toEqual({ forward: 'blocked', 'input-grad': 'dense', 'weight-grad': 'csr' });
    expect(fastest(t, 1)).toEqual({ forward: 'dense', 'input-grad': 'dense', 'weight-grad': 'dense' });
  });

  it('chooses, per layer and phase, the fastest variant it timed (dense unless a sparse one wins by the margin, and always at full density)', async () => {
    const model = createModel('meso4', { size: 32, seed: 1 });
    const ws = prunableWeights(model);
    const masks = onesMasks(ws);
    masks.set(ws[1].key, maskOf(ws[1].size, 0.05, 3));
    attachMasks(ws, masks, 'auto');
    const plan = await planKernels(model, [4, 3, 32, 32], 'auto');
    expect(plan.layers.map((l) => l.layer)).toEqual(ws.map((w) => w.key.replace(/\.weight$/, '')));
    for (const l of plan.layers) {
      for (const ph of PHASES) {
        const ms = l.ms![ph];
        expect(Object.keys(ms).sort()).toEqual([...KERNEL_VARIANTS].sort());
        const sparseBest = Math.min(...Object.entries(ms).filter(([v]) => v !== 'dense').map(([, t]) => t));
        // Layers above SPARSE_MAX_DENSITY (here the unpruned ones) run dense whatever the timings.
        if (l.density <= SPARSE_MAX_DENSITY && sparseBest < ms.dense! * (1 - SPARSE_MARGIN)) expect(ms[l.kernels[ph]]).toBe(sparseBest);
        else expect(l.kernels[ph]).toBe('dense');
      }
    }
    expect(plan.layers[1].density).toBeCloseTo(0.05, 1);
    detachMasks(ws);
    model.dispose();
  });
});

describe('IMP on sparse kernels', () => {
  const cfg = tinyImpConfig({ train: { seed: 5 }, levels: 2, rate: 0.5, pruneLast: true });
  let data: DatasetSplits;
  const runs: Record<'dense' | 'sparse', string> = { dense: '', sparse: '' };
  beforeAll(async () => {
    data = await openDataset(cfg.data, { size: cfg.size, seed: 0 });
    for (const mode of ['dense', 'sparse'] as const) {
      runs[mode] = fs.mkdtempSync(path.join(os.tmpdir(), `imp-kernels-${mode}-`));
      await runImp(cfg, { run: runs[mode], data, resume: false, progress: false, log: () => undefined, kernels: mode });
    }
  });

  it('ends every level with the same masks, weights within float32 noise and the same accuracy', async () => {
    const ws = prunableWeights(createModel('meso4', { size: 32 }), true);
    for (let k = 0; k <= cfg.levels; k++) {
      const dirs = [runs.dense, runs.sparse].map((r) => path.join(r, `level_${k}`));
      const [md, ms] = await Promise.all(dirs.map((d) => loadMasks(runFile(d, 'mask'), ws)));
      for (const [key, m] of md) expect(Buffer.from(ms.get(key)!).equals(Buffer.from(m)), `level ${k} mask ${key}`).toBe(true);
      const [fd, fs_] = await Promise.all(dirs.map(async (d) => (await readF32Tensors(runFile(d, 'final'))).tensors));
      for (const [key, t] of fd) expectNear(fs_.get(key)!.data, t.data, 1e-3, `level ${k} ${key}`, 1e-2);
      const [rd, rs] = dirs.map((d) => JSON.parse(fs.readFileSync(runFile(d, 'result'), 'utf8')) as { test: { accuracy: number; loss: number } });
      expect(rs.test.accuracy).toBe(rd.test.accuracy);
      expect(Math.abs(rs.test.loss - rd.test.loss)).toBeLessThan(1e-3 * Math.max(1, Math.abs(rd.test.loss)));
    }
  });

  it('records the kernels of each level once, in its kernels.json (dense runs write no sparse-kernels.json)', async () => {
    for (let k = 0; k <= cfg.levels; k++) {
      const dense = path.join(runs.dense, `level_${k}`);
      expect(fs.existsSync(runFile(dense, 'sparseKernels'))).toBe(false);
      // Dense runs' masked layers go through the same planner families, with the dense candidate.
      const denseRec = JSON.parse(fs.readFileSync(runFile(dense, 'kernels'), 'utf8')) as Record<string, string>;
      const prunedDense = Object.entries(denseRec).filter(([key]) => key.startsWith('pruned.'));
      expect(prunedDense.length).toBeGreaterThan(0);
      for (const [, id] of prunedDense) expect(id).toBe('dense');
      const dir = path.join(runs.sparse, `level_${k}`);
      const file = readKernelPlanFile(runFile(dir, 'sparseKernels'));
      expect(file.mode).toBe('sparse');
      for (const l of file.layers) expect(l.kernels).toBeUndefined();
      const plan = levelPlan(dir)!;
      const rec = JSON.parse(fs.readFileSync(runFile(dir, 'kernels'), 'utf8')) as Record<string, string>;
      // Layers the level ran compacted (prune/compaction.ts: dead or unread channels, all-kept layers of a
      // site) run dense kernels on their smaller problem and keep no sparse layout: the plan lists the rest.
      const model = createModel('meso4', { size: 32 });
      const ws = prunableWeights(model, true);
      const c = compactLevel(model, ws, await loadMasks(runFile(dir, 'mask'), ws), new Map()).compaction;
      const names = new Map([...model.namedModules()].map(([n, m]) => [m as unknown, n]));
      const compacted = new Set((c?.layers ?? []).map((l) => names.get(l)));
      c?.dispose();
      expect(Object.entries(rec).find(([key]) => key.startsWith('compaction|'))?.[1]).toBe(c ? 'compacted' : undefined);
      expect(plan.layers.map((l) => l.layer)).toEqual(['conv1', 'conv2', 'conv3', 'conv4', 'fc1', 'fc2'].filter((l) => !compacted.has(l)));
      for (const l of plan.layers) {
        const keys = phaseKeys(l.problem, l.density);
        for (const ph of PHASES) {
          expect(['csr', 'blocked']).toContain(l.kernels[ph]);
          expect(rec[keys[ph]]).toBe(`sparse:${l.kernels[ph]}`);
        }
      }
    }
  });
});

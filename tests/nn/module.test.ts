// Module mechanics: state-dict round trips through .safetensors, loadStateDict's errors, train()/eval()
// propagation, and BatchNorm's running statistics.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fromArray } from '../../src/tensor/tensor.js';
import { noGrad } from '../../src/autograd/tape.js';
import type { HostTensorF32 } from '../../src/nn/module.js';
import { BatchNorm2d } from '../../src/nn/layers.js';
import { createModel } from '../../src/nn/models/index.js';
import { loadModel, saveModel } from '../../src/nn/checkpoint.js';
import { readSafetensorsHeader } from '../../src/io/safetensors.js';
import { seededValues } from '../ref/arb.js';

function tmpFile(name: string): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-module-')), name);
}

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.every((v, i) => v === y[i]);
}

function copyState(s: Map<string, HostTensorF32>): Map<string, HostTensorF32> {
  return new Map([...s].map(([k, t]) => [k, { shape: [...t.shape], data: t.data.slice() }]));
}

const input = () => fromArray(seededValues(2 * 3 * 32 * 32, 3, -1, 1), [2, 3, 32, 32]);

describe('state dict through .safetensors', () => {
  it('saveModel / loadModel restores every parameter and buffer bit for bit', async () => {
    const a = createModel('mesoinception4', { size: 32, seed: 5 });
    // A training-mode forward moves the running statistics off their 0/1 start, so buffers are tested too.
    noGrad(() => a.train().forward(input()));
    const file = tmpFile('a.safetensors');
    await saveModel(file, a, { epoch: '3' });
    const header = await readSafetensorsHeader(file);
    expect(Object.keys(header.tensors).sort()).toEqual([...a.stateDict().keys()].sort());
    expect(header.metadata).toEqual({ format: 'pt', epoch: '3' });

    const b = createModel('mesoinception4', { size: 32, seed: 6 });
    const meta = await loadModel(file, b);
    expect(meta.epoch).toBe('3');
    const sa = await a.stateDictHost();
    const sb = await b.stateDictHost();
    expect([...sb.keys()]).toEqual([...sa.keys()]);
    let moved = 0;
    for (const [k, t] of sa) {
      expect(sb.get(k)!.shape, k).toEqual(t.shape);
      expect(bitsEqual(sb.get(k)!.data, t.data), `${k} restored bit for bit`).toBe(true);
      if (k.endsWith('running_mean') && t.data.some((v) => v !== 0)) moved++;
    }
    expect(moved).toBe(4);
    // Same weights, same eval-mode outputs.
    const x = input();
    const ya = await noGrad(() => a.eval().forward(x)).toArray();
    const yb = await noGrad(() => b.eval().forward(x)).toArray();
    expect(Array.from(yb)).toEqual(Array.from(ya));
    a.dispose();
    b.dispose();
  });
});

describe('loadStateDict errors name the key', () => {
  it('missing, unexpected and wrong-shape keys; num_batches_tracked is ignored; non-strict skips missing', async () => {
    const m = createModel('meso4', { size: 32, seed: 1 });
    const good = await m.stateDictHost();

    const missing = copyState(good);
    missing.delete('bn3.running_var');
    expect(() => m.loadStateDict(missing)).toThrow(/missing 'bn3\.running_var'/);

    const unexpected = copyState(good);
    unexpected.set('conv9.weight', { shape: [1], data: new Float32Array(1) });
    expect(() => m.loadStateDict(unexpected)).toThrow(/unexpected key 'conv9\.weight'/);

    const wrong = copyState(good);
    wrong.set('fc1.weight', { shape: [16, 32], data: new Float32Array(16 * 32) });
    expect(() => m.loadStateDict(wrong)).toThrow(/'fc1\.weight' has shape \[16, 32\], model expects \[16, 16\]/);

    // PyTorch's counters are not modelled and not an error.
    const withCounter = copyState(good);
    withCounter.set('bn1.num_batches_tracked', { shape: [], data: new Float32Array([7]) });
    expect(() => m.loadStateDict(withCounter)).not.toThrow();

    // Non-strict: a missing key keeps the current value, others load.
    const partial = copyState(good);
    partial.delete('conv1.weight');
    const bias = partial.get('conv1.bias')!;
    bias.data.fill(0.25);
    m.loadStateDict(partial, false);
    const now = await m.stateDictHost();
    expect(bitsEqual(now.get('conv1.weight')!.data, good.get('conv1.weight')!.data)).toBe(true);
    expect([...now.get('conv1.bias')!.data].every((v) => v === 0.25)).toBe(true);
    // A wrong shape is an error even when not strict.
    expect(() => m.loadStateDict(wrong, false)).toThrow(/fc1\.weight/);
    m.dispose();
  });

  it('loadModel errors name the file and the key', async () => {
    const small = createModel('meso4', { size: 32, seed: 1 });
    const file = tmpFile('meso4-32.safetensors');
    await saveModel(file, small);
    const big = createModel('meso4', { size: 64, seed: 1 });
    await expect(loadModel(file, big)).rejects.toThrow(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*'fc1\\.weight' has shape \\[16, 16\\]`));
    small.dispose();
    big.dispose();
  });
});

describe('train() / eval()', () => {
  it('propagate to every submodule, and change behaviour (dropout, batch norm)', async () => {
    const m = createModel('meso4', { size: 32, seed: 2 });
    const modes = () => [...m.namedModules()].map(([, c]) => c.training);
    expect(modes().length).toBeGreaterThan(10);
    m.eval();
    expect(modes().every((t) => t === false)).toBe(true);
    const x = input();
    const e1 = await noGrad(() => m.forward(x)).toArray();
    const e2 = await noGrad(() => m.forward(x)).toArray();
    expect(Array.from(e2)).toEqual(Array.from(e1)); // eval: dropout is the identity, BN uses running stats
    m.train();
    expect(modes().every((t) => t === true)).toBe(true);
    const t1 = await noGrad(() => m.forward(x)).toArray();
    const t2 = await noGrad(() => m.forward(x)).toArray();
    expect(Array.from(t2)).not.toEqual(Array.from(t1)); // fresh dropout masks each forward
    m.train(false);
    expect(modes().every((t) => t === false)).toBe(true);
    m.dispose();
  });
});

describe('BatchNorm running statistics', () => {
  it('update only in training mode (momentum 0.1, unbiased variance), also under noGrad', async () => {
    const bn = new BatchNorm2d(3).initialize(0);
    const [n, c, h, w] = [4, 3, 5, 5];
    const xs = seededValues(n * c * h * w, 17, -2, 3);
    const x = fromArray(xs, [n, c, h, w]);
    const stats = async () => [(await bn.runningMean.toArray()) as Float32Array, (await bn.runningVar.toArray()) as Float32Array];

    bn.eval();
    noGrad(() => bn.forward(x));
    let [rm, rv] = await stats();
    expect(Array.from(rm)).toEqual([0, 0, 0]);
    expect(Array.from(rv)).toEqual([1, 1, 1]);

    bn.train();
    noGrad(() => bn.forward(x));
    [rm, rv] = await stats();
    const m = h * w * n;
    for (let ch = 0; ch < c; ch++) {
      let s = 0;
      for (let i = 0; i < n; i++) for (let p = 0; p < h * w; p++) s += xs[(i * c + ch) * h * w + p];
      const mean = s / m;
      let ss = 0;
      for (let i = 0; i < n; i++) for (let p = 0; p < h * w; p++) ss += (xs[(i * c + ch) * h * w + p] - mean) ** 2;
      expect(rm[ch]).toBeCloseTo(0.1 * mean, 6);
      expect(rv[ch]).toBeCloseTo(0.9 + 0.1 * (ss / (m - 1)), 6);
    }

    // Eval forwards leave them exactly where training put them.
    bn.eval();
    noGrad(() => bn.forward(x));
    const [rm2, rv2] = await stats();
    expect(bitsEqual(rm2, rm) && bitsEqual(rv2, rv)).toBe(true);
    bn.dispose();
  });
});

// The detector zoo: parameter counts (host-only), forward shapes, seeded initialisation (bit-exact,
// one random stream per state-dict key), and a tiny conv net that learns a toy problem.
import { describe, expect, it } from 'vitest';
import { fromArray, tidy, type Tensor } from '../../src/tensor/tensor.js';
import { backward, noGrad } from '../../src/autograd/tape.js';
import * as F from '../../src/autograd/functional.js';
import { Sequential, type HostTensorF32, type Module } from '../../src/nn/module.js';
import { BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU } from '../../src/nn/layers.js';
import { createModel, MODEL_NAMES, parseModelName, type ModelName } from '../../src/nn/models/index.js';
import { adam } from '../../src/nn/optim/optimizer.js';
import { seededValues } from '../ref/arb.js';

function bits(t: HostTensorF32): Uint32Array {
  return new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
}

function sameBits(a: HostTensorF32, b: HostTensorF32): boolean {
  if (a.data.length !== b.data.length) return false;
  const x = bits(a);
  const y = bits(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function withModel<T>(m: Module, fn: (m: Module) => Promise<T>): Promise<T> {
  return fn(m).finally(() => m.dispose());
}

describe('parameter counts (PyTorch convention: sum of p.numel() over trainable parameters)', () => {
  const cases: [string, number, number][] = [
    ['meso4', 256, 27_977],
    ['meso4', 128, 15_689],
    ['meso4', 64, 12_617],
    ['mesoinception4', 256, 28_615],
    ['cnn5', 256, 301_377],
    ['cnn5', 64, 301_377], // global average pooling: independent of the input size
    ['resnet18', 224, 11_177_025],
    ['resnet18', 64, 11_177_025],
  ];
  it.each(cases)('%s at %i: %i', (name, size, count) => {
    const m = createModel(parseModelName(name), { size });
    try {
      expect(m.parameterCount()).toBe(count);
    } finally {
      m.dispose();
    }
  });

  it('cnn5 is about 0.30 M parameters; two logits add one fc row', () => {
    const m = createModel('cnn5', { size: 64, outputs: 2 });
    expect(m.parameterCount()).toBe(301_377 + 177);
    m.dispose();
  });

  it('rejects unknown names and too-small inputs with a useful message', () => {
    // A JavaScript caller (or a name read from a file) bypasses the ModelName type: the run-time check names the function and argument.
    expect(() => createModel('vgg16' as ModelName, { size: 64 })).toThrow(/^createModel: name 'vgg16' is not one of 'meso4', 'mesoinception4', 'cnn5' or 'resnet18'$/);
    expect(() => createModel('meso4', { size: 4 })).toThrow(/meso4: input size 4/);
    expect(() => createModel('cnn5', { size: 16 })).toThrow(/cnn5: input size 16/);
    expect(() => createModel('resnet18', { size: 31.5 })).toThrow(/resnet18: input size 31.5/);
  });
});

describe('forward at a small size', () => {
  it.each([...MODEL_NAMES])('%s at 32x32, batch 2: [2, 1], finite, in eval and training mode', async (name) => {
    const m = createModel(name, { size: 32, seed: 11 });
    try {
      const x = fromArray(seededValues(2 * 3 * 32 * 32, 5, -1, 1), [2, 3, 32, 32]);
      for (const training of [false, true]) {
        m.train(training);
        const y = noGrad(() => m.forward(x));
        expect([...y.shape]).toEqual([2, 1]);
        const v = await y.toArray();
        expect([...v].every(Number.isFinite), `${name} training=${training}: ${[...v]}`).toBe(true);
        y.dispose();
      }
      x.dispose();
    } finally {
      m.dispose();
    }
  });
});

describe('seeded initialisation', () => {
  it('same seed gives the same weights bit for bit; another seed gives other weights', async () => {
    const a = await withModel(createModel('meso4', { size: 32, seed: 1 }), (m) => m.stateDictHost());
    const b = await withModel(createModel('meso4', { size: 32, seed: 1 }), (m) => m.stateDictHost());
    const c = await withModel(createModel('meso4', { size: 32, seed: 2 }), (m) => m.stateDictHost());
    expect([...a.keys()]).toEqual([...b.keys()]);
    for (const [k, t] of a) expect(sameBits(t, b.get(k)!), `${k} is reproducible`).toBe(true);
    let random = 0;
    for (const [k, t] of a) {
      // Conv/linear weights and biases are random; BN starts at 1/0 and running stats at 0/1 whatever the seed.
      const isBn = /^bn\d\./.test(k);
      if (isBn) {
        expect(sameBits(t, c.get(k)!), `${k} does not depend on the seed`).toBe(true);
        continue;
      }
      random++;
      const x = t.data;
      const y = c.get(k)!.data;
      let same = 0;
      for (let i = 0; i < x.length; i++) if (x[i] === y[i]) same++;
      expect(same, `${k}: elements equal across seeds`).toBeLessThanOrEqual(Math.max(1, x.length / 100));
    }
    expect(random).toBe(12); // conv1-4 and fc1-2, weight and bias
  });

  it('defaults: uniform(+-1/sqrt(fan_in)) for conv/linear, BN 1/0, running stats 0/1', async () => {
    const sd = await withModel(createModel('cnn5', { size: 32, seed: 3 }), (m) => m.stateDictHost());
    const conv2 = sd.get('conv2.weight')!;
    const bound = 1 / Math.sqrt(16 * 9);
    const absMax = conv2.data.reduce((p, v) => Math.max(p, Math.abs(v)), 0);
    expect(absMax).toBeLessThanOrEqual(bound);
    expect(absMax).toBeGreaterThan(0.9 * bound);
    expect([...sd.get('bn2.weight')!.data].every((v) => v === 1)).toBe(true);
    expect([...sd.get('bn2.bias')!.data].every((v) => v === 0)).toBe(true);
    expect([...sd.get('bn2.running_mean')!.data].every((v) => v === 0)).toBe(true);
    expect([...sd.get('bn2.running_var')!.data].every((v) => v === 1)).toBe(true);
  });

  it("one stream per key: a layer's initial weights do not depend on the rest of the model", async () => {
    // cnn5 with 1 or 2 logits: everything but fc is identical.
    const one = await withModel(createModel('cnn5', { size: 32, seed: 9 }), (m) => m.stateDictHost());
    const two = await withModel(createModel('cnn5', { size: 32, seed: 9, outputs: 2 }), (m) => m.stateDictHost());
    for (const [k, t] of one) {
      if (k.startsWith('fc.')) continue;
      expect(sameBits(t, two.get(k)!), k).toBe(true);
    }
    // fc.weight [1, 176] vs [2, 176]: same stream, so the first row is the same draw.
    const w1 = one.get('fc.weight')!.data;
    const w2 = two.get('fc.weight')!.data;
    expect(Array.from(w2.subarray(0, w1.length))).toEqual(Array.from(w1));
    // meso4 at 64 vs 128: the convs are identical though fc1 changes shape.
    const s64 = await withModel(createModel('meso4', { size: 64, seed: 9 }), (m) => m.stateDictHost());
    const s128 = await withModel(createModel('meso4', { size: 128, seed: 9 }), (m) => m.stateDictHost());
    expect(s64.get('fc1.weight')!.shape).toEqual([16, 64]);
    expect(s128.get('fc1.weight')!.shape).toEqual([16, 256]);
    for (const [k, t] of s64) if (k.startsWith('conv') || k.startsWith('bn')) expect(sameBits(t, s128.get(k)!), k).toBe(true);
  });
});

describe('training', () => {
  it('a tiny conv net learns bright-square-top-left vs bottom-right to near-zero loss with Adam', async () => {
    // 16 single-channel 8x8 images: a bright 3x3 square in the top-left (class 1) or bottom-right
    // (class 0) quadrant at a jittered position, on low-level noise.
    const n = 16;
    const xs = new Float32Array(n * 64);
    const ys = new Float32Array(n);
    const noise = seededValues(n * 64, 42, -0.2, 0.2);
    const jitter = seededValues(2 * n, 43, 0, 2);
    for (let i = 0; i < n; i++) {
      const cls = i % 2;
      ys[i] = cls;
      const oy = (cls ? 0 : 4) + Math.floor(jitter[2 * i]);
      const ox = (cls ? 0 : 4) + Math.floor(jitter[2 * i + 1]);
      for (let p = 0; p < 64; p++) xs[i * 64 + p] = noise[i * 64 + p];
      for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) xs[i * 64 + Math.min(7, oy + dy) * 8 + Math.min(7, ox + dx)] += 1;
    }
    const net = new Sequential(new Conv2d(1, 4, 3, { padding: 1 }), new BatchNorm2d(4), new ReLU(), new MaxPool2d(2), new Flatten(), new Linear(64, 1));
    net.initialize(1).train();
    const opt = adam(net.parameters(), { lr: 0.01 });
    const x = fromArray(xs, [n, 1, 8, 8]);
    const y = fromArray(ys, [n, 1]);
    const t0 = Date.now();
    const losses: number[] = [];
    let step = 0;
    let last = Infinity;
    for (; step < 200 && last >= 0.05; step++) {
      const loss: Tensor = tidy(() => {
        const l = F.bceWithLogits(net.forward(x), y);
        backward(l);
        opt.step();
        opt.zeroGrad();
        return l;
      });
      last = await loss.item();
      losses.push(last);
      loss.dispose();
    }
    const seconds = (Date.now() - t0) / 1000;
    console.log(`toy problem: BCE ${losses[0].toFixed(3)} -> ${last.toFixed(4)} in ${step} Adam steps, ${seconds.toFixed(1)} s`);
    expect(losses[0]).toBeGreaterThan(0.3); // it starts near chance (ln 2 = 0.69)...
    expect(last).toBeLessThan(0.05); // ...and ends near zero within 200 steps
    // Eval mode (running statistics) classifies every training image correctly.
    net.eval();
    const logits = (await noGrad(() => net.forward(x)).toArray()) as Float32Array;
    for (let i = 0; i < n; i++) expect(logits[i] > 0 ? 1 : 0, `image ${i}: logit ${logits[i]}`).toBe(ys[i]);
    opt.dispose();
    net.dispose();
  });
});

// Agreement with PyTorch, from fixtures written by scripts/make-fixtures.py (committed, so CI needs no
// torch). The references were computed in float64 from float32-rounded inputs.
//
// small_net: conv -> BN (training mode) -> ReLU -> max-pool -> linear, BCE-with-logits; logits, loss, every
//   gradient and the updated running statistics.
// <model>_<size>: our createModel() nets with the same state-dict keys and shapes as the PyTorch
//   definitions, filled with the fixture's formula weights; eval-mode logits and the raw Grad-CAM map of
//   the last block.
import { expectNearFixture, formula, inputValues, type FillEntry, type InputSpec } from '../ref/fixture-formula.js';
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromArray, type Tensor } from '../../src/tensor/tensor.js';
import { backward, noGrad } from '../../src/autograd/tape.js';
import * as F from '../../src/autograd/functional.js';
import { Module, type HostTensorF32 } from '../../src/nn/module.js';
import { BatchNorm2d, Conv2d, Linear, MaxPool2d } from '../../src/nn/layers.js';
import { createModel, parseModelName } from '../../src/nn/models/index.js';
import { readF32Tensors } from '../../src/nn/checkpoint.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const RTOL = 1e-4;

/** What matched and how closely, printed at the end (the numbers quoted in reviews come from here). */
const report: string[] = [];
afterAll(() => {
  if (report.length) console.log(`PyTorch agreement (norm-wise relative error, max abs error):\n  ${report.join('\n  ')}`);
});

async function fixture(name: string): Promise<{ t: Map<string, HostTensorF32>; meta: Record<string, string> }> {
  const { tensors, metadata } = await readF32Tensors(path.join(FIXTURES, name));
  return { t: tensors, meta: metadata };
}

function get(t: Map<string, HostTensorF32>, k: string): HostTensorF32 {
  const v = t.get(k);
  if (!v) throw new Error(`fixture has no tensor '${k}'`);
  return v;
}

/** Norm-wise and element-wise comparison (tests/ref/fixture-formula.ts), logged for the summary. */
function expectNear(got: ArrayLike<number>, want: ArrayLike<number>, what: string, o: { rtol?: number; floor?: number } = {}): number {
  return expectNearFixture(got, want, what, { rtol: o.rtol ?? RTOL, floor: o.floor, report });
}

async function host(t: Tensor): Promise<Float32Array> {
  return (await t.toArray()) as Float32Array;
}

// ------------------------------------------------------------------------------------------------

class SmallNet extends Module {
  readonly conv = this.addModule('conv', new Conv2d(3, 4, 3, { padding: 1 }));
  readonly bn = this.addModule('bn', new BatchNorm2d(4));
  readonly pool = new MaxPool2d(2);
  readonly fc = this.addModule('fc', new Linear(4 * 4 * 4, 1));
  forward(x: Tensor): Tensor {
    const y = this.pool.forward(F.relu(this.bn.forward(this.conv.forward(x))));
    return this.fc.forward(F.flatten(y, 1));
  }
}

describe('small conv-BN-pool-linear net vs PyTorch (training mode, float64 reference)', () => {
  it('matches logits, loss, every gradient and the updated running statistics', async () => {
    const { t } = await fixture('small_net.safetensors');
    const net = new SmallNet();
    const state = new Map<string, HostTensorF32>();
    for (const [k, v] of t) if (k.startsWith('state/')) state.set(k.slice('state/'.length), v);
    net.loadStateDict(state);
    net.train();

    const xh = get(t, 'input/x');
    const x = fromArray(xh.data, xh.shape);
    x.requiresGrad = true;
    const target = get(t, 'input/target');
    const logits = net.forward(x);
    const loss = F.bceWithLogits(logits, fromArray(target.data, target.shape));
    backward(loss);

    expect([...logits.shape]).toEqual(get(t, 'out/logits').shape);
    expectNear(await host(logits), get(t, 'out/logits').data, 'small_net logits');
    expectNear([await loss.item()], get(t, 'out/loss').data, 'small_net loss');

    const params = [...net.namedParameters()];
    expect(params.map(([k]) => k)).toEqual(['conv.weight', 'conv.bias', 'bn.weight', 'bn.bias', 'fc.weight', 'fc.bias']);
    const gw = get(t, 'grad/conv.weight');
    for (const [k, p] of params) {
      expect(p.grad, `${k} has a gradient`).not.toBeNull();
      const want = get(t, `grad/${k}`);
      expect([...p.grad!.shape]).toEqual(want.shape);
      if (k === 'conv.bias') {
        // A bias before training-mode BN gets an exactly zero gradient (BN subtracts the batch mean);
        // PyTorch's float64 value is ~1e-16 and ours is f32 rounding noise, so a relative error is
        // meaningless: compare with the scale of the conv weight's gradient instead.
        const wmax = Math.max(...gw.data.map(Math.abs));
        const gmax = Math.max(...(await host(p.grad!)).map(Math.abs));
        report.push(`small_net grad conv.bias (exactly 0 in theory): max |got| ${gmax.toExponential(2)} = ${(gmax / wmax).toExponential(2)} x max |grad conv.weight|`);
        expect(gmax).toBeLessThanOrEqual(1e-5 * wmax);
        expect(Math.max(...want.data.map(Math.abs))).toBeLessThanOrEqual(1e-12);
        continue;
      }
      expectNear(await host(p.grad!), want.data, `small_net grad ${k}`);
    }
    expect(x.grad).not.toBeNull();
    expectNear(await host(x.grad!), get(t, 'grad/x').data, 'small_net grad input');

    expectNear(await host(net.bn.runningMean), get(t, 'after/bn.running_mean').data, 'small_net bn.running_mean after');
    expectNear(await host(net.bn.runningVar), get(t, 'after/bn.running_var').data, 'small_net bn.running_var after');
  });
});

// ------------------------------------------------------------------------------------------------


const DETECTORS = fs
  .readdirSync(FIXTURES)
  .filter((f) => /^(meso4|mesoinception4|cnn5|resnet18)_\d+\.safetensors$/.test(f))
  .sort();

describe('detectors vs PyTorch (formula weights, eval mode)', () => {
  it('has the fixtures the brief asks for', () => {
    for (const m of ['meso4', 'mesoinception4', 'cnn5', 'resnet18']) expect(DETECTORS).toContain(`${m}_64.safetensors`);
  });

  it.each(DETECTORS)('%s: state-dict keys and shapes, logits and Grad-CAM match', async (file) => {
    const { t, meta } = await fixture(file);
    const name = meta.model;
    const size = Number(meta.size);
    const fill = JSON.parse(meta.fill) as FillEntry[];
    const ptKeys = (JSON.parse(meta.state_dict_keys) as string[]).filter((k) => !k.endsWith('num_batches_tracked'));
    const ptParams = JSON.parse(meta.parameter_keys) as string[];
    const ptBuffers = (JSON.parse(meta.buffer_keys) as string[]).filter((k) => !k.endsWith('num_batches_tracked'));

    const model = createModel(parseModelName(name), { size });
    const sd = model.stateDict();
    // Same names, shapes and order as PyTorch: state_dict() interleaves per module (bn1.weight,
    // bn1.bias, bn1.running_mean, ..., conv2.weight); named_parameters()/named_buffers() too.
    expect([...model.namedParameters()].map(([k]) => k)).toEqual(ptParams);
    expect([...model.namedBuffers()].map(([k]) => k)).toEqual(ptBuffers);
    expect([...sd.keys()]).toEqual(ptKeys);
    expect(fill.map((e) => e[0])).toEqual(ptKeys);
    for (const [key, shape] of fill) expect([...sd.get(key)!.shape], key).toEqual(shape);
    expect(model.parameterCount()).toBe(Number(meta.parameter_count));

    // Formula weights; the per-tensor sums guard the formula itself (JS Math.sin vs numpy's sin).
    const state = new Map<string, HostTensorF32>();
    fill.forEach(([key, shape, a, b, sum], k) => {
      const data = formula(shape, a, b, k);
      let s = 0;
      let sa = 0;
      for (const v of data) {
        s += v;
        sa += Math.abs(v);
      }
      expect(Math.abs(s - sum), `${key}: sum of formula values`).toBeLessThanOrEqual(1e-9 * sa + 1e-12);
      state.set(key, { shape, data });
    });
    model.loadStateDict(state);
    model.eval();

    const spec = JSON.parse(meta.input) as InputSpec;
    const x = fromArray(inputValues(spec), spec.shape);
    const camLayer = meta.gradcam_layer;
    let A: Tensor | null = null;
    // Grad-CAM: the tap replaces the activation by a leaf copy, whose .grad is d logit / d A.
    const tapped = [...model.namedModules()].find(([n]) => n === camLayer)?.[1];
    expect(tapped, `module '${camLayer}'`).toBeDefined();
    const hook = tapped!.registerForwardHook((_m, _x, v) => {
      const leaf = noGrad(() => F.scale(v, 1));
      leaf.requiresGrad = true;
      A = leaf;
      return leaf;
    });
    const logits = model.forward(x);
    hook.remove();
    expect(A, `tap '${camLayer}' was called`).not.toBeNull();
    const a = A as unknown as Tensor;
    const wantLogits = get(t, 'out/logits');
    expect([...logits.shape]).toEqual(wantLogits.shape);
    expectNear(await host(logits), wantLogits.data, `${file} logits`);

    // Eval mode is deterministic and does not depend on grad recording.
    const again = noGrad(() => model.forward(x));
    expect(await host(again)).toEqual(await host(logits));

    backward(F.sum(logits));
    const wantA = get(t, 'gradcam/A');
    expect([...a.shape]).toEqual(wantA.shape);
    const Ah = await host(a);
    expectNear(Ah, wantA.data, `${file} Grad-CAM A (${camLayer})`);
    const G = await host(a.grad!);
    const [n, c, h, w] = a.shape;
    const hw = h * w;
    const weights = new Float64Array(n * c);
    const pre = new Float64Array(n * hw); // sum_k w_k A_k before the ReLU
    const cam = new Float64Array(n * hw);
    const camScale = new Float64Array(n * hw); // sum_k |w_k A_k|: what the cam's rounding error scales with
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < c; k++) {
        let s = 0;
        for (let p = 0; p < hw; p++) s += G[(i * c + k) * hw + p];
        weights[i * c + k] = s / hw;
      }
      for (let p = 0; p < hw; p++) {
        let s = 0;
        let sa = 0;
        for (let k = 0; k < c; k++) {
          const term = weights[i * c + k] * Ah[(i * c + k) * hw + p];
          s += term;
          sa += Math.abs(term);
        }
        pre[i * hw + p] = s;
        cam[i * hw + p] = Math.max(s, 0);
        camScale[i * hw + p] = sa;
      }
    }
    expectNear(weights, get(t, 'gradcam/weights').data, `${file} Grad-CAM weights`);
    const floor = RTOL * Math.max(...camScale);
    expectNear(pre, get(t, 'gradcam/cam_prerelu').data, `${file} Grad-CAM sum_k w_k A_k before ReLU`, { floor });
    const wantCam = get(t, 'gradcam/cam');
    expect(wantCam.shape).toEqual([n, h, w]);
    // Untrained nets can give an all-zero +logit cam (every position votes against); ResNet-18's is not.
    if (name === 'resnet18') expect(Math.max(...wantCam.data), 'the reference cam is not all zero').toBeGreaterThan(0);
    // The cam is a sum with cancellation: its element floor is relative to the terms' magnitude.
    expectNear(cam, wantCam.data, `${file} Grad-CAM cam`, { floor });
    model.dispose();
  });
});

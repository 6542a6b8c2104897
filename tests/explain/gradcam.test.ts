// Grad-CAM and Grad-CAM++ against float64 hand computations on a model whose gradients are known in
// closed form, the host-side map processing (normalisation, bilinear resize) as properties, and the
// comparison measures and pictures.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Module, type HostTensorF32 } from '../../src/nn/module.js';
import { AdaptiveAvgPool2d, Conv2d, Linear, ReLU } from '../../src/nn/layers.js';
import * as F from '../../src/autograd/functional.js';
import { fromArray, type Tensor } from '../../src/tensor/tensor.js';
import { pool } from '../../src/tensor/pool.js';
import {
  camToInputSize,
  defaultCamLayer,
  gradCam,
  GRADCAM_PP_EPS,
  NORM_EPS,
  normalizeMaps,
  resizeBilinear,
  type CamMethod,
  type CamTarget,
} from '../../src/explain/gradcam.js';
import { confidenceChange, frobeniusDistance, massRatio, pearson, stats, summarizeLevel, compareLevel } from '../../src/explain/compare.js';
import { heatmapImage, imageGrid, inputImage, jet, overlayCam, scaleImage } from '../../src/explain/overlay.js';
import { balancedPick, labelOf, syntheticSettings } from '../../src/explain/images.js';
import { openDataset } from '../../src/data/datasets.js';
import { SyntheticDeepfakes } from '../../src/data/synthetic.js';
import type { Detector } from '../../src/nn/models/index.js';

// ------------------------------------------------------------------------------------------------
// The hand-built model: conv(3 -> K, 3x3, stride 2, pad 1) [module 'conv'] -> ReLU [module 'relu'] ->
// global average pool -> linear(K -> 1). With C = conv(x), logit = b + sum_k v_k mean_ij relu(C_kij), so
//   at 'relu' (A = relu(C)): d logit / dA_kij = v_k / (h w)
//   at 'conv' (A = C):       d logit / dA_kij = v_k / (h w) * [C_kij > 0]

const K = 4;
const CIN = 3;
const H = 6;
const W = 5;

class HandNet extends Module {
  readonly conv = this.addModule('conv', new Conv2d(CIN, K, 3, { stride: 2, padding: 1 }));
  readonly relu = this.addModule('relu', new ReLU());
  readonly gap = new AdaptiveAvgPool2d(1);
  readonly fc = this.addModule('fc', new Linear(K, 1));
  forward(x: Tensor): Tensor {
    return this.fc.forward(F.flatten(this.gap.forward(this.relu.forward(this.conv.forward(x))), 1));
  }
}

/** Deterministic pseudo-random values in [-1, 1), rounded to float32. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}

const convW = values(K * CIN * 9, 11);
const convB = values(K, 12).map((v) => v * 0.2);
// One negative output weight, so Grad-CAM++'s relu(g) and the 'real' target both matter.
const fcW = Float32Array.from([0.9, -0.7, 0.5, 1.3]);
const fcB = Float32Array.from([0.1]);

function handNet(): HandNet {
  const m = new HandNet();
  const state = new Map<string, HostTensorF32>([
    ['conv.weight', { shape: [K, CIN, 3, 3], data: convW }],
    ['conv.bias', { shape: [K], data: convB }],
    ['fc.weight', { shape: [1, K], data: fcW }],
    ['fc.bias', { shape: [1], data: fcB }],
  ]);
  m.loadStateDict(state);
  return m;
}

const OH = Math.floor((H + 2 - 3) / 2) + 1; // 3
const OW = Math.floor((W + 2 - 3) / 2) + 1; // 3

/** conv(x) in float64: [N, K, OH, OW]. */
function convRef(x: Float32Array, n: number): Float64Array {
  const out = new Float64Array(n * K * OH * OW);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < K; k++)
      for (let oy = 0; oy < OH; oy++)
        for (let ox = 0; ox < OW; ox++) {
          let s = convB[k];
          for (let c = 0; c < CIN; c++)
            for (let ky = 0; ky < 3; ky++)
              for (let kx = 0; kx < 3; kx++) {
                const y = oy * 2 - 1 + ky;
                const xx = ox * 2 - 1 + kx;
                if (y < 0 || y >= H || xx < 0 || xx >= W) continue;
                s += convW[((k * CIN + c) * 3 + ky) * 3 + kx] * x[((i * CIN + c) * H + y) * W + xx];
              }
          out[((i * K + k) * OH + oy) * OW + ox] = s;
        }
  return out;
}

interface HandCam {
  logits: Float64Array;
  weights: Float64Array;
  prerelu: Float64Array;
  raw: Float64Array;
  /** sum_k |w_k A_k| per position: the scale of the rounding error of prerelu */
  scale: Float64Array;
}

/** The whole Grad-CAM / Grad-CAM++ computation in float64, from the closed-form gradient. */
function handCam(x: Float32Array, n: number, layer: 'conv' | 'relu', target: CamTarget, method: CamMethod): HandCam {
  const C = convRef(x, n);
  const hw = OH * OW;
  const sign = target === 'fake' ? 1 : -1;
  const logits = new Float64Array(n);
  const weights = new Float64Array(n * K);
  const prerelu = new Float64Array(n * hw);
  const raw = new Float64Array(n * hw);
  const scale = new Float64Array(n * hw);
  for (let i = 0; i < n; i++) {
    let l = fcB[0];
    for (let k = 0; k < K; k++) {
      let m = 0;
      for (let p = 0; p < hw; p++) m += Math.max(0, C[(i * K + k) * hw + p]);
      l += fcW[k] * (m / hw);
    }
    logits[i] = l;
    for (let k = 0; k < K; k++) {
      const A = (p: number) => {
        const c = C[(i * K + k) * hw + p];
        return layer === 'relu' ? Math.max(0, c) : c;
      };
      const g = (p: number) => {
        const c = C[(i * K + k) * hw + p];
        return layer === 'relu' || c > 0 ? (sign * fcW[k]) / hw : 0;
      };
      let w = 0;
      if (method === 'gradcam') {
        for (let p = 0; p < hw; p++) w += g(p);
        w /= hw;
      } else {
        let sumA = 0;
        for (let p = 0; p < hw; p++) sumA += A(p);
        for (let p = 0; p < hw; p++) {
          const gp = g(p);
          if (gp === 0) continue;
          const alpha = (gp * gp) / (2 * gp * gp + sumA * gp * gp * gp + GRADCAM_PP_EPS);
          w += alpha * Math.max(gp, 0);
        }
      }
      weights[i * K + k] = w;
      for (let p = 0; p < hw; p++) {
        prerelu[i * hw + p] += w * A(p);
        scale[i * hw + p] += Math.abs(w * A(p));
      }
    }
    for (let p = 0; p < hw; p++) raw[i * hw + p] = Math.max(0, prerelu[i * hw + p]);
  }
  return { logits, weights, prerelu, raw, scale };
}

/** Independent float64 normalise -> bilinear (torch, align_corners=False) -> normalise, pixel by pixel. */
function camRef(raw: ArrayLike<number>, n: number, h: number, w: number, Ho: number, Wo: number): Float64Array {
  const norm = (v: Float64Array) => {
    const lo = Math.min(...v);
    const hi = Math.max(...v);
    return v.map((x) => (x - lo) / (hi - lo + NORM_EPS));
  };
  const out = new Float64Array(n * Ho * Wo);
  for (let i = 0; i < n; i++) {
    const m = norm(Float64Array.from({ length: h * w }, (_, p) => raw[i * h * w + p]));
    const up = new Float64Array(Ho * Wo);
    for (let y = 0; y < Ho; y++)
      for (let x = 0; x < Wo; x++) {
        const sy = Math.min(Math.max(((y + 0.5) * h) / Ho - 0.5, 0), h - 1);
        const sx = Math.min(Math.max(((x + 0.5) * w) / Wo - 0.5, 0), w - 1);
        const y0 = Math.floor(sy);
        const x0 = Math.floor(sx);
        const y1 = Math.min(y0 + 1, h - 1);
        const x1 = Math.min(x0 + 1, w - 1);
        const fy = sy - y0;
        const fx = sx - x0;
        up[y * Wo + x] =
          (1 - fy) * ((1 - fx) * m[y0 * w + x0] + fx * m[y0 * w + x1]) + fy * ((1 - fx) * m[y1 * w + x0] + fx * m[y1 * w + x1]);
      }
    out.set(norm(up), i * Ho * Wo);
  }
  return out;
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol: (i: number) => number): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const t = tol(i);
    if (!(Math.abs(got[i] - want[i]) <= t)) throw new Error(`${what}[${i}]: got ${got[i]}, want ${want[i]} (tolerance ${t.toExponential(2)})`);
  }
}

const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

describe('Grad-CAM and Grad-CAM++ on a hand-built conv -> ReLU -> GAP -> linear model (float64 reference)', () => {
  const N = 3;
  const xh = values(N * CIN * H * W, 99);

  const cases: [layer: 'conv' | 'relu' | undefined, target: CamTarget, method: CamMethod][] = [
    [undefined, 'fake', 'gradcam'],
    [undefined, 'real', 'gradcam'],
    ['conv', 'fake', 'gradcam'],
    ['conv', 'real', 'gradcam'],
    [undefined, 'fake', 'gradcam++'],
    [undefined, 'real', 'gradcam++'],
    ['conv', 'fake', 'gradcam++'],
    ['conv', 'real', 'gradcam++'],
  ];

  it.each(cases)('layer %s, target %s, %s', async (layer, target, method) => {
    const model = handNet();
    model.train(); // gradCam must switch to eval and back
    const x = fromArray(xh, [N, CIN, H, W]);
    const r = await gradCam(model as unknown as Detector, x, { layer, target, method });
    const want = handCam(xh, N, layer ?? 'relu', target, method);
    expect(r.layer).toBe(layer ?? 'relu');
    expect(r.mapSize).toEqual([OH, OW]);
    expect(r.inputSize).toEqual([H, W]);
    expect(r.channels).toBe(K);
    expect(r.n).toBe(N);

    expectClose(r.logits, want.logits, 'logits', (i) => 1e-5 * Math.max(1, Math.abs(want.logits[i])));
    expectClose(r.scores, Array.from(want.logits, (v) => (target === 'fake' ? v : -v)), 'scores', () => 1e-5 * Math.max(1, maxAbs(want.logits)));
    const wmax = maxAbs(want.weights);
    expectClose(r.weights, want.weights, 'weights', (i) => 1e-5 * Math.abs(want.weights[i]) + 1e-6 * wmax);
    const smax = maxAbs(want.scale);
    expectClose(r.prerelu, want.prerelu, 'sum_k w_k A_k', (i) => 1e-5 * want.scale[i] + 1e-7 * smax);
    expectClose(r.raw, want.raw, 'raw cam', (i) => 1e-5 * want.scale[i] + 1e-7 * smax);
    // The reference cam is non-trivial in most cases (the 'real' cams may be sparse but are not all 0
    // for every image with these weights).
    expect(maxAbs(want.raw), 'some positive raw cam').toBeGreaterThan(0);

    const camWant = camRef(want.raw, N, OH, OW, H, W);
    // Normalised values: the raw error relative to each image's range.
    expectClose(r.cam, camWant, 'normalised cam at input size', () => 1e-4);
    // The model is back in training mode, its parameters still require grad and got no gradient.
    expect(model.training).toBe(true);
    for (const [k, p] of model.namedParameters()) {
      expect(p.requiresGrad, `${k} requiresGrad restored`).toBe(true);
      expect(p.grad, `${k} has no gradient`).toBeNull();
    }
    x.dispose();
    model.dispose();
  });

  it('keeps A and d(score)/dA on request, and they give the same weights', async () => {
    const model = handNet();
    const x = fromArray(xh, [N, CIN, H, W]);
    const r = await gradCam(model as unknown as Detector, x, { layer: 'conv', keepActivations: true });
    const C = convRef(xh, N);
    const hw = OH * OW;
    expectClose(r.activations!, C, 'A', () => 1e-5 * maxAbs(C));
    for (let i = 0; i < N; i++)
      for (let k = 0; k < K; k++)
        for (let p = 0; p < hw; p++) {
          const j = (i * K + k) * hw + p;
          const g = C[j] > 0 ? fcW[k] / hw : 0;
          expect(Math.abs(r.gradients![j] - g)).toBeLessThanOrEqual(1e-6);
        }
    x.dispose();
    model.dispose();
  });

  it('is batched: each image gets its own map, equal to running it alone', async () => {
    const model = handNet();
    const x = fromArray(xh, [N, CIN, H, W]);
    const all = await gradCam(model as unknown as Detector, x, { method: 'gradcam++' });
    for (let i = 0; i < N; i++) {
      const xi = fromArray(xh.subarray(i * CIN * H * W, (i + 1) * CIN * H * W), [1, CIN, H, W]);
      const one = await gradCam(model as unknown as Detector, xi, { method: 'gradcam++' });
      expectClose(one.raw, all.raw.subarray(i * OH * OW, (i + 1) * OH * OW), `image ${i} raw`, () => 1e-6 * Math.max(1e-3, maxAbs(all.raw)));
      xi.dispose();
    }
    x.dispose();
    model.dispose();
  });

  it('frees every GPU buffer it makes', async () => {
    const model = handNet();
    const x = fromArray(xh, [N, CIN, H, W]);
    await gradCam(model as unknown as Detector, x, {}); // warm-up: kernels, tap cache
    const before = pool.stats().inUseBytes;
    for (const method of ['gradcam', 'gradcam++'] as const) await gradCam(model as unknown as Detector, x, { method, keepActivations: true });
    await confidenceChange(model as unknown as Detector, x, new Float32Array(N * H * W).fill(0.5));
    expect(pool.stats().inUseBytes).toBe(before);
    x.dispose();
    model.dispose();
  });

  it('names the problem for an unknown layer or a multi-logit model', async () => {
    const model = handNet();
    const x = fromArray(xh, [N, CIN, H, W]);
    await expect(gradCam(model as unknown as Detector, x, { layer: 'block9' })).rejects.toThrow(/layer 'block9' is not a tap of this model \(taps: conv, relu\)/);
    await expect(gradCam(model as unknown as Detector, x, { target: 'both' as CamTarget })).rejects.toThrow(/target 'both'/);
    class TwoLogits extends HandNet {
      override readonly fc = this.addModule('fc', new Linear(K, 2));
    }
    const two = new TwoLogits().initialize(1);
    await expect(gradCam(two as unknown as Detector, x, {})).rejects.toThrow(/single-logit/);
    // After a failure the parameters are restored too.
    for (const [, p] of two.namedParameters()) expect(p.requiresGrad).toBe(true);
    two.dispose();
    x.dispose();
    model.dispose();
  });

  it('confidence change = sigmoid(score(x * cam)) - sigmoid(score(x)), from float64 logits', async () => {
    const model = handNet();
    const x = fromArray(xh, [N, CIN, H, W]);
    const cam = values(N * H * W, 5).map((v) => (v + 1) / 2);
    const xm = xh.map((v, j) => {
      const i = Math.floor(j / (CIN * H * W));
      const p = j % (H * W);
      return v * cam[i * H * W + p];
    });
    const l0 = handCam(xh, N, 'relu', 'fake', 'gradcam').logits;
    const l1 = handCam(xm, N, 'relu', 'fake', 'gradcam').logits;
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    for (const target of ['fake', 'real'] as const) {
      const s = target === 'fake' ? 1 : -1;
      const c = await confidenceChange(model as unknown as Detector, x, cam, target);
      for (let i = 0; i < N; i++) {
        expect(c.before[i]).toBeCloseTo(sig(s * l0[i]), 5);
        expect(c.after[i]).toBeCloseTo(sig(s * l1[i]), 5);
        expect(c.change[i]).toBeCloseTo(sig(s * l1[i]) - sig(s * l0[i]), 5);
      }
    }
    x.dispose();
    model.dispose();
  });

  it('knows each detector family\'s default layer', () => {
    expect(defaultCamLayer('meso4')).toBe('block4');
    expect(defaultCamLayer('mesoinception4')).toBe('block4');
    expect(defaultCamLayer('cnn5')).toBe('block5');
    expect(defaultCamLayer('resnet18')).toBe('layer4');
    expect(() => defaultCamLayer('vgg')).toThrow(/not one of/);
  });
});

// ------------------------------------------------------------------------------------------------

const mapArb = fc
  .record({ n: fc.integer({ min: 1, max: 3 }), h: fc.integer({ min: 1, max: 7 }), w: fc.integer({ min: 1, max: 7 }) })
  .chain(({ n, h, w }) =>
    fc.record({
      n: fc.constant(n),
      h: fc.constant(h),
      w: fc.constant(w),
      data: fc.array(fc.float({ min: -50, max: 50, noNaN: true, noDefaultInfinity: true }), { minLength: n * h * w, maxLength: n * h * w }),
      H: fc.integer({ min: 1, max: 24 }),
      W: fc.integer({ min: 1, max: 24 }),
    }),
  );

function rangeOf(v: ArrayLike<number>, from: number, to: number): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = from; i < to; i++) {
    lo = Math.min(lo, v[i]);
    hi = Math.max(hi, v[i]);
  }
  return [lo, hi];
}

describe('map processing (properties)', () => {
  it('normalisation: min exactly 0, max ~1 (or all 0 for a flat map), order kept', () => {
    fc.assert(
      fc.property(mapArb, ({ n, h, w, data }) => {
        const size = h * w;
        const out = normalizeMaps(data, n, size);
        for (let i = 0; i < n; i++) {
          const [lo, hi] = rangeOf(data, i * size, (i + 1) * size);
          const [olo, ohi] = rangeOf(out, i * size, (i + 1) * size);
          expect(olo).toBe(0);
          if (hi - lo === 0) expect(ohi).toBe(0);
          else {
            expect(ohi).toBeLessThanOrEqual(1);
            expect(ohi).toBeCloseTo((hi - lo) / (hi - lo + NORM_EPS), 6);
          }
          for (let p = 1; p < size; p++) {
            const a = data[i * size + p - 1];
            const b = data[i * size + p];
            if (a < b) expect(out[i * size + p - 1]).toBeLessThanOrEqual(out[i * size + p]);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('bilinear resize: constants stay constant, the range never grows, same size is the identity', () => {
    fc.assert(
      fc.property(mapArb, fc.float({ min: -10, max: 10, noNaN: true }), ({ n, h, w, data, H, W }, c) => {
        const up = resizeBilinear(data, n, h, w, H, W);
        expect(up.length).toBe(n * H * W);
        for (let i = 0; i < n; i++) {
          const [lo, hi] = rangeOf(data, i * h * w, (i + 1) * h * w);
          const [ulo, uhi] = rangeOf(up, i * H * W, (i + 1) * H * W);
          expect(ulo).toBeGreaterThanOrEqual(Math.fround(lo) - 1e-6 * Math.abs(lo));
          expect(uhi).toBeLessThanOrEqual(Math.fround(hi) + 1e-6 * Math.abs(hi));
        }
        const flat = resizeBilinear(new Float32Array(n * h * w).fill(c), n, h, w, H, W);
        for (const v of flat) expect(v).toBe(Math.fround(c));
        // (+ 0 turns -0 into 0: the identity is exact up to the sign of zero)
        expect(Array.from(resizeBilinear(data, n, h, w, h, w), (v) => v + 0)).toEqual(Array.from(Float32Array.from(data), (v) => v + 0));
      }),
      { numRuns: 200 },
    );
  });

  it('bilinear resize matches torch (align_corners=False) on a known 2x2 -> 4x4 case', () => {
    // torch.nn.functional.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]), size=(4, 4), mode='bilinear')
    const up = resizeBilinear([0, 1, 2, 3], 1, 2, 2, 4, 4);
    expect(Array.from(up)).toEqual([0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3]);
    // Non-square and non-integer factors: compare with the independent reference.
    const raw = values(2 * 3 * 5, 3);
    const got = camToInputSize(raw, 2, 3, 5, 7, 11);
    const want = camRef(raw, 2, 3, 5, 7, 11);
    expectClose(got, want, 'camToInputSize', () => 1e-6);
  });

  it('camToInputSize: every map has min 0 and max ~1, or is all zero when flat', () => {
    fc.assert(
      fc.property(mapArb, ({ n, h, w, data, H, W }) => {
        const raw = data.map((v) => Math.max(0, v)); // cams are ReLU'd
        const cam = camToInputSize(raw, n, h, w, H, W);
        expect(cam.length).toBe(n * H * W);
        for (let i = 0; i < n; i++) {
          const [lo, hi] = rangeOf(raw, i * h * w, (i + 1) * h * w);
          const [clo, chi] = rangeOf(cam, i * H * W, (i + 1) * H * W);
          expect(clo).toBe(0);
          expect(chi).toBeLessThanOrEqual(1);
          if (hi === lo) expect(chi).toBe(0);
          // Upsampling (what Grad-CAM does) keeps a good part of the range, so unless the range is tiny
          // next to the 1e-7 guard the map spans [0, ~1]. (Shrinking can sample between every extreme.)
          else if (hi - lo > 1e-3 && H >= h && W >= w) expect(chi).toBeGreaterThan(0.99);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('comparison measures', () => {
  const arr = fc.array(fc.float({ min: -5, max: 5, noNaN: true }), { minLength: 2, maxLength: 40 });

  it('frobenius: 0 on itself, symmetric, the Euclidean norm of the difference', () => {
    fc.assert(
      fc.property(arr, arr, (a, b0) => {
        const b = b0.slice(0, a.length).concat(new Array(Math.max(0, a.length - b0.length)).fill(0));
        expect(frobeniusDistance(a, a)).toBe(0);
        expect(frobeniusDistance(a, b)).toBeCloseTo(frobeniusDistance(b, a), 12);
        expect(frobeniusDistance(a, b)).toBeCloseTo(Math.hypot(...a.map((v, i) => v - b[i])), 9);
      }),
    );
  });

  it('pearson: 1 on itself, -1 on its negation, invariant to positive affine maps, NaN on a constant', () => {
    fc.assert(
      fc.property(arr, fc.float({ min: Math.fround(0.1), max: 10, noNaN: true }), fc.float({ min: -3, max: 3, noNaN: true }), (a, s, t) => {
        const spread = Math.max(...a) - Math.min(...a);
        fc.pre(spread > 1e-3);
        expect(pearson(a, a)).toBeCloseTo(1, 9);
        expect(pearson(a, a.map((v) => -v))).toBeCloseTo(-1, 9);
        expect(pearson(a, a.map((v) => s * v + t))).toBeCloseTo(1, 5);
        expect(pearson(a, a.map(() => t))).toBeNaN();
      }),
    );
  });

  it('mass ratio: 1 for a uniform map, inside/outside per pixel otherwise', () => {
    const region = [1, 1, 0, 0, 0, 0];
    expect(massRatio([2, 2, 2, 2, 2, 2], region)).toBe(1);
    expect(massRatio([1, 1, 0.5, 0.5, 0.5, 0.5], region)).toBe(2);
    expect(massRatio([1, 0, 0, 0, 0, 0], region)).toBe(Infinity);
    expect(massRatio([0, 0, 0, 0, 0, 0], region)).toBeNaN();
    expect(massRatio([1, 1], [0, 0])).toBeNaN();
  });

  it('stats and the level summary', () => {
    expect(stats([1, 2, 3, NaN])).toEqual({ mean: 2, std: 1, n: 3 });
    expect(stats([5]).std).toBeNaN();
    const cams = Float32Array.from([0, 1, 0, 1, 1, 0, 1, 0]);
    const ref = Float32Array.from([0, 1, 0, 1, 0, 1, 0, 1]);
    const rows = compareLevel({
      level: 3,
      sparsity: 0.5,
      cams,
      reference: ref,
      logits: Float32Array.from([-1, 2]),
      confidence: { before: Float32Array.from([0.2, 0.6]), after: Float32Array.from([0.3, 0.4]), change: Float32Array.from([0.1, -0.2]) },
      sources: ['a', 'b'],
      labels: [0, 1],
      masks: [null, Float32Array.from([1, 0, 0, 0])],
    });
    expect(rows[0].frobenius).toBe(0);
    expect(rows[0].pearson).toBeCloseTo(1, 12);
    expect(rows[1].frobenius).toBeCloseTo(2, 12);
    expect(rows[1].pearson).toBeCloseTo(-1, 12);
    expect(rows[1].maskRatio).toBeCloseTo(3, 12);
    const s = summarizeLevel(rows);
    expect(s).toMatchObject({ level: 3, sparsity: 0.5, n: 2, frobenius_mean: 1, pearson_n: 2, accuracy: 1, mask_ratio_n: 1 });
    expect(s.confidence_change_mean).toBeCloseTo(-0.05, 6);
  });
});

describe('pictures', () => {
  it('jet runs dark blue -> cyan -> yellow -> dark red', () => {
    expect(jet(0)).toEqual([0, 0, 128]);
    expect(jet(0.125)).toEqual([0, 0, 255]);
    expect(jet(0.375)).toEqual([0, 255, 255]);
    expect(jet(0.5)).toEqual([128, 255, 128]);
    expect(jet(0.625)).toEqual([255, 255, 0]);
    expect(jet(0.875)).toEqual([255, 0, 0]);
    expect(jet(1)).toEqual([128, 0, 0]);
    expect(jet(-3)).toEqual(jet(0));
    expect(jet(NaN)).toEqual(jet(0));
  });

  it('overlay is the 50/50 blend of face and heat map; weight 1 gives the face back', () => {
    const w = 3;
    const h = 2;
    const img = values(3 * w * h, 8).map((v) => (v + 1) / 2);
    const cam = Float32Array.from([0, 0.2, 0.4, 0.6, 0.8, 1]);
    const face = overlayCam(img, cam, w, h, { imageWeight: 1, rescale: false });
    const want = Array.from({ length: 3 * w * h }, (_, i) => Math.floor(255 * img[(i % 3) * w * h + Math.floor(i / 3)]));
    expect(Array.from(face.data)).toEqual(want);
    // The plain input picture rounds instead of truncating: never more than one step apart.
    inputImage(img, w, h).data.forEach((v, i) => expect(Math.abs(v - want[i])).toBeLessThanOrEqual(1));
    const o = overlayCam(img, cam, w, h, { rescale: false });
    const heat = heatmapImage(cam, w, h);
    for (let p = 0; p < w * h; p++)
      for (let c = 0; c < 3; c++) {
        const want = Math.floor(255 * (0.5 * (heat.data[3 * p + c] / 255) + 0.5 * img[c * w * h + p]));
        expect(Math.abs(o.data[3 * p + c] - want)).toBeLessThanOrEqual(1);
      }
    // With rescaling the brightest channel reaches 255.
    expect(Math.max(...overlayCam(img, cam, w, h).data)).toBe(255);
  });

  it('grid and scaling keep cells where they belong', () => {
    const cell = (v: number) => ({ width: 2, height: 3, channels: 3 as const, data: new Uint8Array(18).fill(v) });
    const g = imageGrid(
      [
        [cell(10), cell(20)],
        [cell(30), cell(40)],
      ],
      { gap: 1, firstColumnGap: 2, rowBreaks: [0] },
    );
    // widths: 1 + 2 + 1 + 2 + 2 + 1 = 9; heights: 1 + 3 + 1 + 2 + 3 + 1 = 11
    expect([g.width, g.height]).toEqual([9, 11]);
    const at = (x: number, y: number) => g.data[(y * g.width + x) * 3];
    expect(at(0, 0)).toBe(255);
    expect(at(1, 1)).toBe(10);
    expect(at(6, 1)).toBe(20);
    expect(at(1, 7)).toBe(30);
    expect(at(6, 9)).toBe(40);
    expect(() => imageGrid([[cell(1)], [cell(1), cell(2)]])).toThrow(/row 1 has 2 cells/);
    const s = scaleImage(cell(7), 3);
    expect([s.width, s.height, s.data.length]).toEqual([6, 9, 162]);
  });
});

describe('image picking', () => {
  it('balanced: first reals then first fakes, topped up when a class runs short', () => {
    expect(balancedPick([0, 1, 0, 1, 0, 1], 4)).toEqual([0, 2, 1, 3]);
    expect(balancedPick([0, 1, 1, 1, 1], 4)).toEqual([0, 1, 2, 3]);
    expect(balancedPick([0, 0, 0, 1], 4)).toEqual([0, 1, 2, 3]);
    expect(balancedPick([null, null, null], 2)).toEqual([0, 1]);
    expect(labelOf('test/Fake/a.png')).toBe(1);
    expect(labelOf('real/x/a.png')).toBe(0);
    expect(labelOf('fakes/a.png')).toBeNull();
  });

  it("the synthetic pick is the run's own test split (same generator settings as openDataset)", async () => {
    const spec = 'synthetic:difficulty=0.3,test=6,seed=4';
    const s = syntheticSettings(spec, 9)!;
    expect(s).toEqual({ seed: 4, difficulty: 0.3, count: { test: 6 } });
    expect(syntheticSettings('synthetic', 9)).toEqual({ seed: 9, count: {} });
    expect(syntheticSettings('/data/x', 9)).toBeNull();
    const data = await openDataset(spec, { size: 16, seed: 9 });
    const gen = new SyntheticDeepfakes({ seed: s.seed, size: 16, difficulty: s.difficulty, count: s.count });
    for (const i of [0, 5]) expect(Array.from(gen.sample('test', i).image)).toEqual(Array.from((await data.test.get(i)).image));
  });
});

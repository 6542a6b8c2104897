// Batch-norm re-estimation against a float64 reference of torch.optim.swa_utils.update_bn: running
// statistics are the plain mean over the first n batches of each batch's mean and unbiased variance
// (momentum None), for a batch norm fed by another one in training mode.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BatchNorm2d, Dropout } from '../../src/nn/layers.js';
import { Sequential } from '../../src/nn/module.js';
import { writeTensor } from '../../src/tensor/io.js';
import { reestimateBatchNorm, type InputBatch } from '../../src/train/bn-reestimate.js';

/** Per-channel batch mean, biased and unbiased variance of NCHW data, in float64. */
function stats(x: Float64Array, [n, c, h, w]: number[]) {
  const m = n * h * w;
  const mean = new Float64Array(c);
  const vb = new Float64Array(c);
  for (let ch = 0; ch < c; ch++) {
    let s = 0;
    for (let i = 0; i < n; i++) for (let p = 0; p < h * w; p++) s += x[(i * c + ch) * h * w + p];
    mean[ch] = s / m;
    let q = 0;
    for (let i = 0; i < n; i++) for (let p = 0; p < h * w; p++) q += (x[(i * c + ch) * h * w + p] - mean[ch]) ** 2;
    vb[ch] = q / m;
  }
  return { mean, vb, vu: vb.map((v) => (v * m) / (m - 1)) };
}

async function* iterate(bs: InputBatch[]): AsyncGenerator<InputBatch> {
  for (const b of bs) yield b;
}

describe('reestimateBatchNorm', () => {
  it('matches the float64 cumulative average of batch statistics (two stacked batch norms, training mode)', async () => {
    const data = fc.record({
      c: fc.integer({ min: 1, max: 4 }),
      hw: fc.integer({ min: 1, max: 4 }),
      sizes: fc.array(fc.integer({ min: 2, max: 5 }), { minLength: 1, maxLength: 4 }),
      n: fc.integer({ min: 1, max: 5 }),
      seed: fc.nat(),
    });
    await fc.assert(
      fc.asyncProperty(data, async ({ c, hw, sizes, n, seed }) => {
        let s = seed + 1;
        const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 4 - 2;
        const gamma = Float32Array.from({ length: c }, rnd);
        const beta = Float32Array.from({ length: c }, rnd);
        const batches = sizes.map((b) => ({ x: Float32Array.from({ length: b * c * hw * hw }, () => rnd() * 3 + 1), shape: [b, c, hw, hw] }));
        const bn1 = new BatchNorm2d(c);
        const bn2 = new BatchNorm2d(c);
        const drop = new Dropout(0.5);
        const model = new Sequential(bn1, bn2, drop);
        writeTensor(bn1.weight!, gamma);
        writeTensor(bn1.bias!, beta);
        // Stale statistics that must not leak into the result.
        writeTensor(bn1.runningMean, new Float32Array(c).fill(7));
        writeTensor(bn2.runningVar, new Float32Array(c).fill(9));
        model.train();
        const used = await reestimateBatchNorm(model, iterate(batches), n);
        const k = Math.min(n, sizes.length);
        expect(used).toBe(k);
        // Reference.
        const ref = [0, 1].map(() => ({ mean: new Float64Array(c), v: new Float64Array(c) }));
        for (const b of batches.slice(0, k)) {
          const x = Float64Array.from(b.x);
          const s1 = stats(x, b.shape);
          const y = x.map((v, i) => {
            const ch = Math.floor(i / (hw * hw)) % c;
            return ((v - s1.mean[ch]) / Math.sqrt(s1.vb[ch] + 1e-5)) * gamma[ch] + beta[ch];
          });
          const s2 = stats(y, b.shape);
          for (let ch = 0; ch < c; ch++) {
            ref[0].mean[ch] += s1.mean[ch] / k;
            ref[0].v[ch] += s1.vu[ch] / k;
            ref[1].mean[ch] += s2.mean[ch] / k;
            ref[1].v[ch] += s2.vu[ch] / k;
          }
        }
        const got = [bn1, bn2];
        for (let l = 0; l < 2; l++) {
          const mean = (await got[l].runningMean.toArray()) as Float32Array;
          const v = (await got[l].runningVar.toArray()) as Float32Array;
          for (let ch = 0; ch < c; ch++) {
            expect(Math.abs(mean[ch] - ref[l].mean[ch]), `bn${l + 1} mean[${ch}]`).toBeLessThan(2e-5 * (1 + Math.abs(ref[l].mean[ch])));
            expect(Math.abs(v[ch] - ref[l].v[ch]), `bn${l + 1} var[${ch}]`).toBeLessThan(2e-5 * (1 + Math.abs(ref[l].v[ch])));
          }
        }
        // Momentum, modes and the dropout stream are as they were.
        expect(bn1.momentum).toBe(0.1);
        expect(bn2.training && drop.training).toBe(true);
        expect(drop.drawn).toBe(0);
        model.dispose();
      }),
      { numRuns: 20 },
    );
  });

  it('a model without batch norm, or n = 0, is left alone', async () => {
    const bn = new BatchNorm2d(2);
    const m = new Sequential(bn);
    writeTensor(bn.runningVar, Float32Array.from([3, 4]));
    expect(await reestimateBatchNorm(m, iterate([{ x: new Float32Array(8), shape: [2, 2, 1, 2] }]), 0)).toBe(0);
    expect(Array.from((await bn.runningVar.toArray()) as Float32Array)).toEqual([3, 4]);
    expect(await reestimateBatchNorm(new Sequential(new Dropout(0.5)), iterate([]), 3)).toBe(0);
    m.dispose();
  });
});

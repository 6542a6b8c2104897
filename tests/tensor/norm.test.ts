// Batch norm (train and eval, forward and backward, running-stat updates) and per-channel sums against
// float64 references and finite differences; accuracy with a large mean; determinism.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTraits, plan, setKernelOverride } from '../../src/tensor/plan.js';
import fc from 'fast-check';
import { fromArray } from '../../src/tensor/index.js';
import {
  batchNormBackward,
  batchNormEvalBackward,
  batchNormEvalForward,
  batchNormTrainForward,
  channelGeometry,
  channelSum,
} from '../../src/tensor/ops/norm.js';
import { seededValues } from '../ref/arb.js';
import {
  bnBackwardRef,
  bnEvalRef,
  bnTrainRef,
  channelSumRef,
  expectNear,
  finiteDiff,
  sameBits,
  sampleCoords,
} from '../ref/conv-ref.js';

interface Case {
  shape: number[];
  affine: boolean;
  seed: number;
}

/** [N, C, H, W] or [N, C] with at least 2 values per channel. */
const caseArb: fc.Arbitrary<Case> = fc
  .record({
    n: fc.constantFrom(1, 2, 3, 5),
    c: fc.integer({ min: 1, max: 7 }),
    h: fc.integer({ min: 1, max: 11 }),
    w: fc.integer({ min: 1, max: 11 }),
    rank2: fc.boolean(),
    affine: fc.boolean(),
    seed: fc.integer({ min: 1, max: 1 << 30 }),
  })
  .map(({ n, c, h, w, rank2, affine, seed }) => ({ shape: rank2 ? [n + 1, c] : [n, c, h, w], affine, seed }))
  // Three or more values per channel: with exactly two, xhat = +-sqrt(var / (var + eps)) and dx is
  // the small difference of nearly equal terms (catastrophic cancellation in float32), so a relative
  // comparison measures rounding noise; that case has its own test with an absolute tolerance.
  .filter((k) => k.shape[0] * (k.shape[2] ?? 1) * (k.shape[3] ?? 1) >= 3);

function dims(shape: number[]): { n: number; c: number; hw: number } {
  return { n: shape[0], c: shape[1], hw: (shape[2] ?? 1) * (shape[3] ?? 1) };
}

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

function params(k: Case) {
  const { c } = dims(k.shape);
  return {
    xs: seededValues(prod(k.shape), k.seed, -3, 5),
    gamma: k.affine ? seededValues(c, k.seed + 1, 0.5, 1.5) : null,
    beta: k.affine ? seededValues(c, k.seed + 2) : null,
    rm: seededValues(c, k.seed + 3),
    rv: seededValues(c, k.seed + 4, 0.5, 2),
    dys: seededValues(prod(k.shape), k.seed + 5),
  };
}

// Both stage-1 variants (workgroup tree reduction for GPUs, thread per chunk for software adapters)
// ('thread4' walking vec4s) and both elementwise variants (bn.apply: scalar, or vec4 where HW % 4 == 0)
// run every case. The
// vec4 run leaves bn.apply to the software default (vec4 where it suits, scalar elsewhere) and draws
// planes whose width is a multiple of 4.
const VARIANTS = [
  { impl: 'group', apply: 'scalar' },
  { impl: 'thread', apply: 'scalar' },
  { impl: 'thread', apply: 'vec4' },
  { impl: 'thread4', apply: 'vec4' },
] as const;
const wholeQuads = (arb: fc.Arbitrary<Case>) =>
  arb.map((k) => (k.shape.length === 4 ? { ...k, shape: [k.shape[0], k.shape[1], k.shape[2], 4 * Math.ceil(k.shape[3] / 4)] } : k));
const anyCase = caseArb;
for (const { impl, apply } of VARIANTS) {
describe(`batch norm kernels, ${impl} partials, ${apply} apply`, () => {
  const caseArb = apply === 'vec4' ? wholeQuads(anyCase) : anyCase;
  beforeAll(() => {
    // thread4 runs the software defaults (thread4 and vec4 where they suit, thread and scalar elsewhere).
    setKernelOverride(impl === 'thread4' ? null : apply === 'vec4' ? `norm:${impl}` : `norm:${impl},bn.apply:${apply}`);
  });
  it(`plans ${impl} and ${apply} for [2, 3, 4, 8]`, () => {
    const cg = channelGeometry([2, 3, 4, 8]);
    const soft = deviceTraits().isSoftware;
    expect(plan('bn.apply', cg).variant).toBe(soft || apply === 'scalar' ? apply : 'scalar');
    expect(plan('norm', cg).variant).toBe(soft || impl !== 'thread4' ? impl : 'group');
  });
  afterAll(() => {
    setKernelOverride(null);
  });
  describe('batch norm, training mode', () => {
    it('forward, batch statistics and in-place running-stat update match float64', async () => {
      await fc.assert(
        fc.asyncProperty(caseArb, fc.constantFrom(0.1, 0.3), async (k, momentum) => {
          const { n, c, hw } = dims(k.shape);
          const p = params(k);
          const rm = fromArray(p.rm, [c]);
          const rv = fromArray(p.rv, [c]);
          const x = fromArray(p.xs, k.shape);
          const g = p.gamma && fromArray(p.gamma, [c]);
          const b = p.beta && fromArray(p.beta, [c]);
          const r = batchNormTrainForward(x, g, b, rm, rv, momentum, 1e-5);
          const ref = bnTrainRef(p.xs, n, c, hw, p.gamma, p.beta, p.rm, p.rv, momentum, 1e-5);
          const what = JSON.stringify(k);
          expect(r.y.shape).toEqual(k.shape);
          expectNear(await r.y.toArray(), ref.y, 2e-5, `y ${what}`);
          // A float32 sum of n values can be off by about n * 6e-8 of their magnitude: 1e-6 failed once
          // on a 33-value channel by 1.02e-6 (seed -1641250054); a wrong reduction is off by far more.
          expectNear(await r.mean.toArray(), ref.mean, 4e-6, `mean ${what}`);
          expectNear(await r.invstd.toArray(), ref.invstd, 2e-5, `invstd ${what}`, 1e-3);
          expectNear(await rm.toArray(), ref.runningMean, 2e-6, `running mean ${what}`);
          expectNear(await rv.toArray(), ref.runningVar, 2e-6, `running var (unbiased) ${what}`);
        }),
        { numRuns: 30 },
      );
    });

    it('two values per channel (cancellation-prone): dx within 5e-3 absolute of float64', async () => {
      const xs = seededValues(8, 863805535, -3, 5);
      const dys = seededValues(8, 863805540);
      const x = fromArray(xs, [2, 4]);
      const f = batchNormTrainForward(x, null, null, null, null);
      const dx = await batchNormBackward(fromArray(dys, [2, 4]), x, null, f.mean, f.invstd).dx.toArray();
      const ref = bnBackwardRef(dys, xs, 2, 4, 1, null, 1e-5);
      dx.forEach((v, i) => expect(Math.abs(v - ref.dx[i])).toBeLessThan(5e-3));
    });

    it('runs without running stats (track_running_stats=False)', async () => {
      const xs = seededValues(2 * 3 * 4 * 5, 3);
      const r = batchNormTrainForward(fromArray(xs, [2, 3, 4, 5]), null, null, null, null);
      const ref = bnTrainRef(xs, 2, 3, 20, null, null, [0, 0, 0], [1, 1, 1], 0.1, 1e-5);
      expectNear(await r.y.toArray(), ref.y, 2e-5, 'y');
    });

    it('backward matches the float64 analytic gradient and finite differences of the forward', async () => {
      await fc.assert(
        fc.asyncProperty(caseArb, async (k) => {
          const { n, c, hw } = dims(k.shape);
          const p = params(k);
          const x = fromArray(p.xs, k.shape);
          const g = p.gamma && fromArray(p.gamma, [c]);
          const b = p.beta && fromArray(p.beta, [c]);
          const fwd = batchNormTrainForward(x, g, b, null, null);
          const dy = fromArray(p.dys, k.shape);
          const grads = batchNormBackward(dy, x, g, fwd.mean, fwd.invstd);
          const ref = bnBackwardRef(p.dys, p.xs, n, c, hw, p.gamma, 1e-5);
          const what = JSON.stringify(k);
          const dx = await grads.dx.toArray();
          expectNear(dx, ref.dx, 5e-5, `dx ${what}`);
          if (k.affine) {
            expectNear(await grads.dgamma!.toArray(), ref.dgamma, 2e-5, `dgamma ${what}`);
            expectNear(await grads.dbeta!.toArray(), ref.dbeta, 2e-5, `dbeta ${what}`);
          } else {
            expect(grads.dgamma).toBeNull();
            expect(grads.dbeta).toBeNull();
          }
          // Gradient check: L = sum(dy * bn(x)) with batch statistics recomputed for each perturbation.
          const f = (xv: Float64Array) => bnTrainRef(xv, n, c, hw, p.gamma, p.beta, p.rm, p.rv, 0, 1e-5).y;
          const coords = sampleCoords(p.xs.length, 12, k.seed);
          const fd = finiteDiff(f, p.xs, p.dys, coords, 1e-5);
          // The y scale (~|dy| * gamma * invstd * count) sets the float32 error; 1e-3 absolute floor.
          expectNear(coords.map((i) => dx[i]), fd, 2e-4, `dx vs finite differences ${what}`);
          if (k.affine) {
            const dg = await grads.dgamma!.toArray();
            const fg = finiteDiff((gv) => bnTrainRef(p.xs, n, c, hw, gv, p.beta, p.rm, p.rv, 0, 1e-5).y, p.gamma!, p.dys, [...Array(c).keys()]);
            expectNear(dg, fg, 1e-4, `dgamma vs finite differences ${what}`);
            const db = await grads.dbeta!.toArray();
            const fb = finiteDiff((bv) => bnTrainRef(p.xs, n, c, hw, p.gamma, bv, p.rm, p.rv, 0, 1e-5).y, p.beta!, p.dys, [...Array(c).keys()]);
            expectNear(db, fb, 1e-4, `dbeta vs finite differences ${what}`);
          }
        }),
        { numRuns: 25 },
      );
    });

    it('splits long channels into chunks and stays accurate with a large mean', async () => {
      const shape = [3, 2, 61, 59]; // 10,797 values per channel: several chunks
      expect(channelGeometry(shape).g).toBeGreaterThan(1);
      const { n, c, hw } = dims(shape);
      // mean ~1000, std ~0.01: naive sum-of-squares in float32 would lose the variance entirely.
      const xs = seededValues(prod(shape), 17, -0.02, 0.02).map((v) => v + 1000);
      const ref = bnTrainRef(xs, n, c, hw, null, null, [0, 0], [1, 1], 0.1, 0);
      const r = batchNormTrainForward(fromArray(xs, shape), null, null, null, null, 0.1, 0);
      const invstd = await r.invstd.toArray();
      expectNear(invstd, ref.invstd, 1e-3, 'invstd with |mean| >> std', 0);
      expectNear(await r.y.toArray(), ref.y, 5e-3, 'y with |mean| >> std');
    });

    it('is deterministic: the same bits twice, including the running stats', async () => {
      const shape = [4, 3, 40, 37];
      const xs = seededValues(prod(shape), 5);
      const dys = seededValues(prod(shape), 6);
      const run = async () => {
        const rm = fromArray([0.1, 0.2, 0.3], [3]);
        const rv = fromArray([1, 2, 3], [3]);
        const x = fromArray(xs, shape);
        const g = fromArray([1, 0.5, 2], [3]);
        const b = fromArray([0, 1, -1], [3]);
        const f = batchNormTrainForward(x, g, b, rm, rv);
        const gr = batchNormBackward(fromArray(dys, shape), x, g, f.mean, f.invstd);
        return [f.y, f.mean, f.invstd, rm, rv, gr.dx, gr.dgamma!, gr.dbeta!].map((t) => t.toArray());
      };
      const a = await Promise.all(await run());
      const b = await Promise.all(await run());
      a.forEach((v, i) => expect(sameBits(v as Float32Array, b[i] as Float32Array)).toBe(true));
    });

    it('rejects one value per channel, half-affine and wrong sizes', () => {
      expect(() => batchNormTrainForward(fromArray([1, 2], [1, 2, 1, 1]), null, null, null, null)).toThrow(/more than 1 value/);
      const x = fromArray(new Float32Array(12), [2, 3, 2, 1]);
      expect(() => batchNormTrainForward(x, fromArray([1, 1, 1]), null, null, null)).toThrow(/both gamma and beta/);
      expect(() => batchNormTrainForward(x, fromArray([1, 1]), fromArray([1, 1]), null, null)).toThrow(/3 elements/);
    });
  });

  describe('batch norm, eval mode', () => {
    it('forward uses the running statistics; backward matches finite differences', async () => {
      await fc.assert(
        fc.asyncProperty(caseArb, async (k) => {
          const { n, c, hw } = dims(k.shape);
          const p = params(k);
          const x = fromArray(p.xs, k.shape);
          const g = p.gamma && fromArray(p.gamma, [c]);
          const b = p.beta && fromArray(p.beta, [c]);
          const rm = fromArray(p.rm, [c]);
          const rv = fromArray(p.rv, [c]);
          const y = batchNormEvalForward(x, g, b, rm, rv, 1e-5);
          const what = JSON.stringify(k);
          expectNear(await y.toArray(), bnEvalRef(p.xs, n, c, hw, p.gamma, p.beta, p.rm, p.rv, 1e-5), 2e-5, `eval y ${what}`);
          // The running statistics are untouched.
          expect(Array.from(await rm.toArray())).toEqual(Array.from(p.rm));
          expect(Array.from(await rv.toArray())).toEqual(Array.from(p.rv));
          const gr = batchNormEvalBackward(fromArray(p.dys, k.shape), x, g, rm, rv, 1e-5);
          const coords = sampleCoords(p.xs.length, 10, k.seed);
          const dx = await gr.dx.toArray();
          const fd = finiteDiff((xv) => bnEvalRef(xv, n, c, hw, p.gamma, p.beta, p.rm, p.rv, 1e-5), p.xs, p.dys, coords);
          expectNear(coords.map((i) => dx[i]), fd, 1e-5, `eval dx vs finite differences ${what}`);
          if (k.affine) {
            const all = [...Array(c).keys()];
            const fg = finiteDiff((gv) => bnEvalRef(p.xs, n, c, hw, gv, p.beta, p.rm, p.rv, 1e-5), p.gamma!, p.dys, all);
            const fb = finiteDiff((bv) => bnEvalRef(p.xs, n, c, hw, p.gamma, bv, p.rm, p.rv, 1e-5), p.beta!, p.dys, all);
            expectNear(await gr.dgamma!.toArray(), fg, 2e-5, `eval dgamma ${what}`);
            expectNear(await gr.dbeta!.toArray(), fb, 2e-5, `eval dbeta ${what}`);
          }
        }),
        { numRuns: 20 },
      );
    });
  });

  describe('channelSum', () => {
    it('sums over N and the trailing dims in a fixed order', async () => {
      await fc.assert(
        fc.asyncProperty(caseArb, async (k) => {
          const { n, c, hw } = dims(k.shape);
          const xs = seededValues(prod(k.shape), k.seed);
          // A float32 sum of m terms in [-1, 1] drifts like sqrt(m) ulps whatever the order, so the error
          // is judged against sqrt(m) (a dropped or doubled term would still be off by ~0.5).
          expectNear(await channelSum(fromArray(xs, k.shape)).toArray(), channelSumRef(xs, n, c, hw), 1e-6, 'channel sum', Math.sqrt(n * hw));
        }),
        { numRuns: 15 },
      );
      const big = seededValues(2 * 3 * 70 * 70, 1);
      const t = fromArray(big, [2, 3, 70, 70]);
      const a = (await channelSum(t).toArray()) as Float32Array;
      expectNear(a, channelSumRef(big, 2, 3, 4900), 1e-6, 'channel sum, several chunks', Math.sqrt(2 * 4900));
      expect(sameBits(a, (await channelSum(t).toArray()) as Float32Array)).toBe(true);
    });
  });
});
}

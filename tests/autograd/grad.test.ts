import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as F from '../../src/autograd/functional.js';
import { backward, noGrad } from '../../src/autograd/tape.js';
import { fromArray, keep, tidy, pool, queue } from '../../src/tensor/index.js';
import { gradCheck, type GradCase } from '../ref/gradcheck.js';
import { bcastIndex, broadcastableTo, numel, seededValues, shapeArb } from '../ref/arb.js';

const map1 = (f: (v: number) => number) => (xs: Float64Array[]) => xs[0].map(f);

const UNARY_CASES: [string, (t: ReturnType<typeof fromArray>) => ReturnType<typeof fromArray>, (v: number) => number, ((n: number, s: number) => Float32Array)?][] = [
  ['neg', F.neg, (v) => -v],
  ['exp', F.exp, Math.exp],
  ['log', F.log, Math.log, (n, s) => seededValues(n, s, 0.5, 3)],
  ['sqrt', F.sqrt, Math.sqrt, (n, s) => seededValues(n, s, 0.5, 3)],
  ['square', F.square, (v) => v * v],
  ['relu', F.relu, (v) => Math.max(v, 0), (n, s) => seededValues(n, s).map((v) => (Math.abs(v) < 0.01 ? 0.5 : v))],
  ['leakyRelu', (t) => F.leakyRelu(t, 0.1), (v) => (v > 0 ? v : 0.1 * v), (n, s) => seededValues(n, s).map((v) => (Math.abs(v) < 0.01 ? 0.5 : v))],
  ['sigmoid', F.sigmoid, (v) => 1 / (1 + Math.exp(-v))],
  ['tanh', F.tanh, Math.tanh],
  ['affine', (t) => F.affine(t, -1.5, 0.25), (v) => -1.5 * v + 0.25],
];

describe('gradients of elementwise ops (finite differences, float64 reference)', () => {
  for (const [name, op, ref, init] of UNARY_CASES) {
    it(name, async () => {
      await fc.assert(
        fc.asyncProperty(shapeArb(0, 3, 60), fc.integer(), async (shape, seed) => {
          await gradCheck({ name, shapes: [shape], gpu: ([x]) => op(x), ref: map1(ref), init: init ? (_i, n, s) => init(n, s) : undefined }, seed);
        }),
        { numRuns: 6 },
      );
    });
  }

  const BIN: [string, typeof F.add, (a: number, b: number) => number][] = [
    ['add', F.add, (a, b) => a + b],
    ['sub', F.sub, (a, b) => a - b],
    ['mul', F.mul, (a, b) => a * b],
    ['div', F.div, (a, b) => a / b],
  ];
  for (const [name, op, ref] of BIN) {
    it(`${name} with broadcasting (gradients summed over broadcast dims)`, async () => {
      await fc.assert(
        fc.asyncProperty(
          shapeArb(1, 3, 40).chain((s) => fc.tuple(fc.constant(s), broadcastableTo(s), fc.boolean(), fc.integer())),
          async ([sa, sb, swap, seed]) => {
            const [shA, shB] = swap ? [sb, sa] : [sa, sb];
            const out = shA.length >= shB.length ? shA.map((d, i) => Math.max(d, shB[i - (shA.length - shB.length)] ?? 1)) : [];
            const c: GradCase = {
              name,
              shapes: [shA, shB],
              gpu: ([a, b]) => op(a, b),
              ref: ([a, b]) => {
                const o = shapeOut(shA, shB);
                const y = new Float64Array(numel(o));
                for (let i = 0; i < y.length; i++) y[i] = ref(a[bcastIndex(i, o, shA)], b[bcastIndex(i, o, shB)]);
                return y;
              },
              init: (i, n, s) => (name === 'div' && i === 1 ? seededValues(n, s, 0.5, 2) : seededValues(n, s)),
            };
            void out;
            await gradCheck(c, seed);
          },
        ),
        { numRuns: 8 },
      );
    });
  }
});

function shapeOut(a: number[], b: number[]): number[] {
  const r = Math.max(a.length, b.length);
  return Array.from({ length: r }, (_, i) => {
    const x = a[i - (r - a.length)] ?? 1;
    const y = b[i - (r - b.length)] ?? 1;
    return Math.max(x, y);
  });
}

describe('gradients of reductions, layout and linear algebra', () => {
  it('sum and mean over random axes', async () => {
    await fc.assert(
      fc.asyncProperty(shapeArb(1, 4, 80), fc.integer(), fc.boolean(), async (shape, seed, isMean) => {
        const axis = Math.abs(seed) % shape.length;
        await gradCheck(
          {
            name: isMean ? 'mean' : 'sum',
            shapes: [shape],
            gpu: ([x]) => (isMean ? F.mean(x, axis) : F.sum(x, axis)),
            ref: ([x]) => {
              const outer = numel(shape.slice(0, axis));
              const len = shape[axis];
              const inner = numel(shape.slice(axis + 1));
              const y = new Float64Array(outer * inner);
              for (let o = 0; o < outer; o++)
                for (let k = 0; k < len; k++) for (let i = 0; i < inner; i++) y[o * inner + i] += x[(o * len + k) * inner + i] / (isMean ? len : 1);
              return y;
            },
          },
          seed,
        );
      }),
      { numRuns: 10 },
    );
  });

  it('permute, slice (with step) and concat', async () => {
    await gradCheck(
      {
        name: 'permute-slice-concat',
        shapes: [[2, 3, 4], [2, 3, 2]],
        gpu: ([a, b]) => F.concat([F.slice(F.permute(a, [0, 2, 1]), 1, 1, 4, 2), F.permute(b, [0, 2, 1])], 1),
        ref: ([a, b]) => {
          // a: [2,3,4] -> permute [2,4,3] -> rows 1,3 -> [2,2,3]; b: [2,3,2] -> [2,2,3]; concat axis 1 -> [2,4,3]
          const y: number[] = [];
          for (let n = 0; n < 2; n++) {
            for (const r of [1, 3]) for (let c = 0; c < 3; c++) y.push(a[n * 12 + c * 4 + r]);
            for (let r = 0; r < 2; r++) for (let c = 0; c < 3; c++) y.push(b[n * 6 + c * 2 + r]);
          }
          return Float64Array.from(y);
        },
      },
      1,
    );
  });

  it('matmul (2-D and batched) and linear with bias', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 7 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 6 }), fc.integer(), async (m, k, n, seed) => {
        await gradCheck(
          {
            name: 'matmul',
            shapes: [[m, k], [k, n]],
            gpu: ([a, b]) => F.matmul(a, b),
            ref: ([a, b]) => {
              const y = new Float64Array(m * n);
              for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let t = 0; t < k; t++) y[i * n + j] += a[i * k + t] * b[t * n + j];
              return y;
            },
          },
          seed,
        );
        await gradCheck(
          {
            name: 'linear',
            shapes: [[m, k], [n, k], [n]],
            gpu: ([x, w, b]) => F.linear(x, w, b),
            ref: ([x, w, b]) => {
              const y = new Float64Array(m * n);
              for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
                y[i * n + j] = b[j];
                for (let t = 0; t < k; t++) y[i * n + j] += x[i * k + t] * w[j * k + t];
              }
              return y;
            },
          },
          seed,
        );
      }),
      { numRuns: 8 },
    );
    await gradCheck(
      {
        name: 'batched matmul',
        shapes: [[3, 2, 4], [3, 4, 5]],
        gpu: ([a, b]) => F.matmul(a, b),
        ref: ([a, b]) => {
          const y = new Float64Array(3 * 2 * 5);
          for (let z = 0; z < 3; z++)
            for (let i = 0; i < 2; i++) for (let j = 0; j < 5; j++) for (let t = 0; t < 4; t++) y[z * 10 + i * 5 + j] += a[z * 8 + i * 4 + t] * b[z * 20 + t * 5 + j];
          return y;
        },
      },
      5,
    );
  });
});

describe('losses', () => {
  it('BCE-with-logits: value and gradient, stable at large logits', async () => {
    const targets = [1, 0, 1, 0, 1, 1];
    await gradCheck(
      {
        name: 'bce',
        shapes: [[6, 1], [6]],
        wrt: [0],
        init: (i, n, s) => (i === 1 ? Float32Array.from(targets) : seededValues(n, s, -4, 4)),
        gpu: ([x, t]) => F.bceWithLogits(x, t),
        ref: ([x, t]) => {
          let l = 0;
          for (let i = 0; i < x.length; i++) l += Math.max(x[i], 0) - x[i] * t[i] + Math.log1p(Math.exp(-Math.abs(x[i])));
          return Float64Array.of(l / x.length);
        },
      },
      3,
    );
    const big = await noGrad(() => F.bceWithLogits(fromArray([100, -100]), fromArray([0, 1]))).item();
    expect(big).toBeCloseTo(100, 3);
  });

  it('cross-entropy over classes with integer targets', async () => {
    const t = [2, 0, 1, 2];
    await gradCheck(
      {
        name: 'cross_entropy',
        shapes: [[4, 3], [4]],
        wrt: [0],
        init: (i, n, s) => (i === 1 ? Float32Array.from(t) : seededValues(n, s, -3, 3)),
        gpu: ([x, tt]) => F.crossEntropy(x, tt),
        ref: ([x]) => {
          let l = 0;
          for (let i = 0; i < 4; i++) {
            const row = [x[i * 3], x[i * 3 + 1], x[i * 3 + 2]];
            const m = Math.max(...row);
            l += Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0)) + m - row[t[i]];
          }
          return Float64Array.of(l / 4);
        },
      },
      4,
    );
  });
});

describe('the tape', () => {
  it('accumulates grads of a tensor used twice, and across backward calls', async () => {
    const x = keep(fromArray([1, 2, 3]));
    x.requiresGrad = true;
    tidy(() => backward(F.sum(F.mul(x, x))));
    expect(Array.from(await x.grad!.toArray())).toEqual([2, 4, 6]);
    tidy(() => backward(F.sum(F.add(x, x))));
    expect(Array.from(await x.grad!.toArray())).toEqual([4, 6, 8]);
  });

  it('noGrad records nothing; backward on a non-scalar needs a gradient', () => {
    const x = keep(fromArray([1, 2]));
    x.requiresGrad = true;
    const y = noGrad(() => F.exp(x));
    expect(y.requiresGrad).toBe(false);
    expect(() => backward(F.exp(x))).toThrow(/not a scalar/);
  });

  it('a training-step loop does not grow GPU memory (intermediates and grads are freed)', async () => {
    const w = keep(fromArray(seededValues(64 * 16, 1), [16, 64]));
    w.requiresGrad = true;
    const xin = keep(fromArray(seededValues(8 * 64, 2), [8, 64]));
    const step = () =>
      tidy(() => {
        const h = F.relu(F.linear(xin, w, null));
        backward(F.mean(F.square(h)));
        w.grad!.dispose();
        w.grad = null;
      });
    for (let i = 0; i < 3; i++) step();
    await queue.sync();
    const before = pool.stats().inUseBytes;
    for (let i = 0; i < 50; i++) step();
    await queue.sync();
    expect(pool.stats().inUseBytes).toBe(before);
  });
});

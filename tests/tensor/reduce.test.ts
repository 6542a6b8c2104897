// Reductions vs a float64 reference on random shapes and axes; determinism; ties; edge cases.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromArray, type DType, type Tensor } from '../../src/tensor/tensor.js';
import { setKernelOverride } from '../../src/tensor/plan.js';
import { initDevice } from '../../src/tensor/device.js';
import { argmax, argmin, max, mean, min, normalizeAxes, reducePolicy, reducedShape, sum, sumToShape } from '../../src/tensor/ops/reduce.js';
import { refReduce, type RefReduceOp } from '../ref/reduce-ref.js';

const F32_EPS = 2 ** -23;

/** Deterministic PRNG (mulberry32) so fast-check only has to shrink a seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomData(n: number, seed: number, kind: 'float' | 'smallint' = 'float'): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = kind === 'float' ? r() * 2 - 1 : Math.floor(r() * 5) - 2;
  return out;
}

const numel = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);

const DIMS = [1, 2, 3, 4, 5, 7, 8, 13, 17, 31];
const shapeArb = fc
  .array(fc.constantFrom(...DIMS), { minLength: 0, maxLength: 4 })
  .filter((s) => numel(s) <= 4000);

/** A shape plus an axes spec: undefined (all), one axis, or a subset, with random negative forms. */
const caseArb = shapeArb.chain((shape) =>
  fc.record({
    shape: fc.constant(shape),
    axes: fc.oneof(
      fc.constant(undefined),
      fc.subarray(Array.from({ length: shape.length }, (_, i) => i)).chain((ax) =>
        fc.tuple(...ax.map((a) => fc.constantFrom(a, a - shape.length))).map((xs) => xs as number[]),
      ),
      shape.length > 0 ? fc.integer({ min: -shape.length, max: shape.length - 1 }) : fc.constant(undefined),
    ),
    keepdim: fc.boolean(),
    seed: fc.integer(),
  }),
);

async function check(op: RefReduceOp, x: Tensor, data: Float32Array, axes: number | number[] | undefined, keepdim: boolean) {
  const fn = { sum, mean, max, min } as const;
  const y =
    op === 'argmax' || op === 'argmin'
      ? (op === 'argmax' ? argmax : argmin)(x, axes as number | undefined, keepdim)
      : fn[op as 'sum' | 'mean' | 'max' | 'min'](x, axes, keepdim);
  const got = await y.toArray();
  y.dispose();
  const ref =
    (op === 'argmax' || op === 'argmin') && axes === undefined
      ? refReduce(op, data, [data.length], undefined, false)
      : refReduce(op, data, x.shape, axes, keepdim);
  const refShape = (op === 'argmax' || op === 'argmin') && axes === undefined ? (keepdim ? x.shape.map(() => 1) : []) : ref.shape;
  expect(y.shape).toEqual(refShape);
  expect(got.length).toBe(ref.data.length);
  for (let i = 0; i < ref.data.length; i++) {
    if (op === 'sum' || op === 'mean') {
      // Float32 accumulation: error grows with the magnitude of what was summed.
      const tol = (64 * F32_EPS * ref.absSum[i] + 1e-30) / (op === 'mean' ? ref.count : 1);
      if (Math.abs(got[i] - ref.data[i]) > tol) {
        throw new Error(`${op} [${x.shape}] axes ${JSON.stringify(axes)} out ${i}: got ${got[i]}, want ${ref.data[i]} (tol ${tol})`);
      }
    } else if (got[i] !== ref.data[i]) {
      throw new Error(`${op} [${x.shape}] axes ${JSON.stringify(axes)} out ${i}: got ${got[i]}, want ${ref.data[i]}`);
    }
  }
}

// Every strategy policy runs on whatever device the tests have: 'thread' is lavapipe's default,
// 'group' (workgroup trees) what GPUs run, 'subgroup' a tuning candidate where subgroups exist.
const hasSubgroups = (await initDevice()).hasSubgroups;
const POLICIES = hasSubgroups ? (['thread', 'group', 'subgroup'] as const) : (['thread', 'group'] as const);
for (const policy of POLICIES) {
  describe(`reductions vs float64 reference, policy ${policy}`, () => {
    beforeAll(() => {
      setKernelOverride(`reduce:${policy}`);
    });
    afterAll(() => {
      setKernelOverride(null);
    });

    it('sum / mean / max / min over random shapes and axes', async () => {
      await fc.assert(
        fc.asyncProperty(caseArb, fc.constantFrom<RefReduceOp>('sum', 'mean', 'max', 'min'), async (c, op) => {
          const data = randomData(numel(c.shape), c.seed);
          const x = fromArray(data, c.shape);
          try {
            if (numel(c.shape) === 0) return;
            await check(op, x, data, c.axes, c.keepdim);
          } finally {
            x.dispose();
          }
        }),
        { numRuns: 30 },
      );
    });

    it('argmax / argmin with many ties return the first index', async () => {
      await fc.assert(
        fc.asyncProperty(caseArb, fc.constantFrom<RefReduceOp>('argmax', 'argmin'), async (c, op) => {
          const data = randomData(numel(c.shape), c.seed, 'smallint');
          const x = fromArray(data, c.shape);
          const axis = Array.isArray(c.axes) ? c.axes[0] : c.axes;
          try {
            await check(op, x, data, axis, c.keepdim);
          } finally {
            x.dispose();
          }
        }),
        { numRuns: 25 },
      );
    });

    // Shapes that take each strategy, chunked multi-pass partials, and the mixed-radix walk.
    const big: [string, number[], number | number[] | undefined][] = [
      ['sum to scalar, multi-pass partials', [100003], undefined],
      ['long rows over the contiguous axis', [7, 1500], 1],
      ['column sums, chunked with a second pass', [3001, 3], 0],
      ['middle axis, strided', [5, 300, 7], 1],
      ['batch-norm statistics [N, C, HW] over N and HW', [6, 3, 2500], [0, 2]],
      ['two separated reduced runs', [3, 5, 4, 7, 9], [0, 2, 4]],
      ['outer axes of 4-D with inner kept', [4, 33, 2, 8], [0, 1]],
    ];
    for (const [what, shape, axes] of big) {
      it(`${what}: [${shape}] over ${JSON.stringify(axes)}`, async () => {
        const data = randomData(numel(shape), 1234 + shape.length);
        const x = fromArray(data, shape);
        for (const op of ['sum', 'mean', 'max', 'min'] as const) await check(op, x, data, axes, false);
        if (axes === undefined || typeof axes === 'number') {
          await check('argmax', x, data, axes, true);
          await check('argmin', x, data, axes, false);
        }
        x.dispose();
      });
    }

    it('integer rows: i32 sum / max / argmax, u32 min over long rows', async () => {
      const r = rng(11);
      const vals = Array.from({ length: 3 * 700 }, () => Math.floor(r() * 2001) - 1000);
      const xi = fromArray(Int32Array.from(vals), [3, 700]);
      const xu = fromArray(Uint32Array.from(vals.map((v) => v + 1000)), [3, 700]);
      const rows = [0, 1, 2].map((i) => vals.slice(i * 700, (i + 1) * 700));
      expect(Array.from(await sum(xi, 1).toArray())).toEqual(rows.map((row) => row.reduce((a, b) => a + b, 0)));
      expect(Array.from(await max(xi, -1).toArray())).toEqual(rows.map((row) => Math.max(...row)));
      expect(Array.from(await argmax(xi, 1).toArray())).toEqual(rows.map((row) => row.indexOf(Math.max(...row))));
      expect(Array.from(await min(xu, 1).toArray())).toEqual(rows.map((row) => Math.min(...row) + 1000));
      xi.dispose();
      xu.dispose();
    });

    it('argmax across chunk boundaries keeps the first of equal maxima', async () => {
      const n = 70001;
      const data = randomData(n, 7);
      data[40000] = 5;
      data[9000] = 5;
      data[69999] = 5;
      const x = fromArray(data);
      expect(await argmax(x).item()).toBe(9000);
      const y = fromArray(data.slice(0, 69000), [23000, 3]);
      await check('argmax', y, data.slice(0, 69000), 0, false);
      x.dispose();
      y.dispose();
    });
  });

  describe(`determinism, policy ${policy}`, () => {
    beforeAll(() => {
      setKernelOverride(`reduce:${policy}`);
    });
    afterAll(() => {
      setKernelOverride(null);
    });
    it('same input -> identical bits, twice, for chunked sums and statistics', async () => {
      const data = randomData(200003, 99);
      const x = fromArray(data);
      const bn = fromArray(data.slice(0, 8 * 5 * 4000), [8, 5, 4000]);
      const runs = async () => [
        new Uint32Array((await sum(x).toArray()).buffer),
        new Uint32Array((await mean(bn, [0, 2]).toArray()).buffer),
        new Uint32Array((await sum(bn.reshape([40, 4000]), 0).toArray()).buffer),
      ];
      const a = await runs();
      const b = await runs();
      expect(b).toEqual(a);
      x.dispose();
      bn.dispose();
    });
  });
}

describe('edge cases', () => {
  it('empty reduced range: sum 0, mean NaN, max/min/argmax throw', async () => {
    const x = fromArray(new Float32Array(0), [3, 0, 2]);
    expect(Array.from(await sum(x, 1).toArray())).toEqual([0, 0, 0, 0, 0, 0]);
    expect(sum(x, 1).shape).toEqual([3, 2]);
    expect(Array.from(await mean(x, [1]).toArray()).every(Number.isNaN)).toBe(true);
    expect(() => max(x, 1)).toThrow(/empty/);
    expect(() => argmax(x, 1)).toThrow(/empty/);
    // No outputs at all: nothing to compute.
    expect(max(x, 0).shape).toEqual([0, 2]);
    expect(sum(x).shape).toEqual([]);
    expect(await sum(x).item()).toBe(0);
    x.dispose();
  });

  it('empty axis list reduces nothing; rank-0 input; size-1 axes', async () => {
    const data = randomData(12, 3);
    const x = fromArray(data, [3, 1, 4]);
    expect(Array.from(await sum(x, []).toArray())).toEqual(Array.from(data));
    expect(sum(x, []).shape).toEqual([3, 1, 4]);
    expect(Array.from(await max(x, 1).toArray())).toEqual(Array.from(data));
    expect(max(x, 1, true).shape).toEqual([3, 1, 4]);
    const s = fromArray([2.5], []);
    expect(await sum(s).item()).toBe(2.5);
    expect(await mean(s, 0).item()).toBe(2.5);
    expect(await argmax(s).item()).toBe(0);
    x.dispose();
    s.dispose();
  });

  it('policy comes from the planner override (TICKETLAB_KERNELS), else the device kind', () => {
    expect(['thread', 'group']).toContain(reducePolicy());
    process.env.TICKETLAB_KERNELS = 'reduce:group';
    expect(reducePolicy()).toBe('group');
    process.env.TICKETLAB_KERNELS = 'reduce:bogus';
    expect(() => reducePolicy()).toThrow(/reduce has no variant 'bogus'/);
    delete process.env.TICKETLAB_KERNELS;
  });

  it('rejects bad axes', () => {
    const x = fromArray(new Float32Array(6), [2, 3]);
    expect(() => sum(x, 2)).toThrow(/out of range/);
    expect(() => sum(x, [0, -2])).toThrow(/twice/);
    expect(normalizeAxes(3, [-1, 0])).toEqual([0, 2]);
    expect(reducedShape([2, 3, 4], [0, -1], true)).toEqual([1, 3, 1]);
    x.dispose();
  });

  it('integer dtypes: i32 sum, u32 max/min, i32 argmax', async () => {
    const vals = [5, -3, 7, 7, 0, -8];
    const xi = fromArray(Int32Array.from(vals), [2, 3]);
    const si = sum(xi, 1);
    expect(si.dtype).toBe('i32');
    expect(Array.from(await si.toArray())).toEqual([9, -1]);
    expect(Array.from(await argmax(xi, 1).toArray())).toEqual([2, 0]);
    expect(Array.from(await argmin(xi).toArray())).toEqual([5]);
    const xu = fromArray(Uint32Array.from([4, 0xfffffff0, 2, 9]), [4]);
    expect(await max(xu).item()).toBe(0xfffffff0);
    expect(await min(xu).item()).toBe(2);
    expect(argmax(xu, 0, false, 'u32').dtype).toBe('u32' as DType);
    expect(() => mean(xi)).toThrow(/f32/);
    xi.dispose();
    xu.dispose();
  });
});

describe('sumToShape', () => {
  it('sums broadcast dims back to the target shape', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom(1, 2, 3, 5, 8), { minLength: 1, maxLength: 4 }),
        fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
        fc.integer({ min: 0, max: 2 }),
        fc.integer(),
        async (shape, ones, drop, seed) => {
          const d = Math.min(drop, shape.length);
          const target = shape.slice(d).map((v, i) => (ones[i] ? 1 : v));
          const data = randomData(numel(shape), seed);
          const x = fromArray(data, shape);
          const axes = shape.map((_, i) => i).filter((i) => i < d || (target[i - d] === 1 && shape[i] !== 1));
          const ref = refReduce('sum', data, shape, axes, false);
          const y = sumToShape(x, target);
          expect(y.shape).toEqual(target);
          const got = await y.toArray();
          for (let i = 0; i < ref.data.length; i++) {
            expect(Math.abs(got[i] - ref.data[i])).toBeLessThanOrEqual(64 * F32_EPS * ref.absSum[i]);
          }
          y.dispose();
          x.dispose();
        },
      ),
      { numRuns: 30 },
    );
  });

  it('returns a view when nothing needs summing, and rejects non-broadcastable shapes', async () => {
    const x = fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    const v = sumToShape(x, [2, 3]);
    expect(v.storage).toBe(x.storage);
    expect(Array.from(await sumToShape(x, [3]).toArray())).toEqual([5, 7, 9]);
    expect(Array.from(await sumToShape(x, [2, 1]).toArray())).toEqual([6, 15]);
    expect(await sumToShape(x, []).item()).toBe(21);
    expect(() => sumToShape(x, [2])).toThrow(/broadcast/);
    expect(() => sumToShape(x, [1, 2, 3, 4])).toThrow(/fewer dims/);
    v.dispose();
    x.dispose();
  });
});

import { afterAll, describe, expect, it } from 'vitest';
import { setKernelOverride } from '../../src/tensor/plan.js';
import fc from 'fast-check';
import { binary, broadcastShapes, cast, fill, fromArray, mapExpr, ternary, unary } from '../../src/tensor/index.js';
import type { BinaryOp, UnaryOp } from '../../src/shaders/elementwise.js';
import { bcastIndex, broadcastableTo, expectClose, numel, seededValues, shapeArb } from '../ref/arb.js';

const UNARY_REF: Record<string, (x: number, a: number, b: number) => number> = {
  neg: (x) => -x,
  abs: Math.abs,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  square: (x) => x * x,
  relu: (x) => Math.max(x, 0),
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  tanh: Math.tanh,
  sign: Math.sign,
  leakyRelu: (x, a) => (x > 0 ? x : a * x),
  affine: (x, a, b) => x * a + b,
  clamp: (x, a, b) => Math.min(Math.max(x, a), b),
  step: (x) => (x > 0 ? 1 : 0),
};
// Inputs are pre-shaped for ops with restricted domains so the reference stays finite.
const PRE: Record<string, (x: number) => number> = {
  log: (x) => Math.abs(x) + 0.1,
  sqrt: (x) => Math.abs(x),
  rsqrt: (x) => Math.abs(x) + 0.1,
};

const BINARY_REF: Record<string, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  maximum: Math.max,
  minimum: Math.min,
  lt: (a, b) => +(a < b),
  ge: (a, b) => +(a >= b),
  eq: (a, b) => +(a === b),
};

describe('elementwise unary', () => {
  for (const op of Object.keys(UNARY_REF)) {
    it(`${op} matches float64 on random shapes`, async () => {
      await fc.assert(
        fc.asyncProperty(shapeArb(0, 4), fc.integer(), async (shape, seed) => {
          const pre = PRE[op] ?? ((x: number) => x);
          const host = seededValues(numel(shape), seed, -6, 6).map(pre);
          const [a, b] = [0.13, 0.7];
          const alpha = op === 'clamp' ? -a : a;
          const y = await unary(op as UnaryOp, fromArray(host, shape), alpha, b).toArray();
          const want = Array.from(host, (x) => UNARY_REF[op](x, alpha, b));
          expectClose(y, want, 2e-6, 2e-6, op);
        }),
        { numRuns: 12 },
      );
    });
  }
  it('sigmoid is finite and saturates at extreme inputs', async () => {
    const y = await unary('sigmoid', fromArray([-1000, -88, 0, 88, 1000])).toArray();
    expect(Array.from(y)).toEqual([0, expect.any(Number), 0.5, 1, 1]);
    expect(y.every(Number.isFinite)).toBe(true);
  });
});

describe('elementwise binary with broadcasting', () => {
  for (const op of Object.keys(BINARY_REF)) {
    it(`${op} broadcasts like NumPy`, async () => {
      await fc.assert(
        fc.asyncProperty(
          shapeArb(0, 4).chain((s) => fc.tuple(fc.constant(s), broadcastableTo(s), fc.boolean(), fc.integer())),
          async ([sa, sb, swap, seed]) => {
            const [shA, shB] = swap ? [sb, sa] : [sa, sb];
            const out = broadcastShapes(shA, shB);
            const ha = seededValues(numel(shA), seed);
            // Small integers make eq/lt ties happen.
            const hb = seededValues(numel(shB), seed + 1).map((v) => (op === 'div' ? v + 3 : op === 'eq' ? Math.round(v) : v));
            const ha2 = op === 'eq' ? ha.map(Math.round) : ha;
            const y = await binary(op as BinaryOp, fromArray(ha2, shA), fromArray(hb, shB)).toArray();
            const want = new Float64Array(numel(out));
            for (let i = 0; i < want.length; i++) {
              want[i] = BINARY_REF[op](ha2[bcastIndex(i, out, shA)], hb[bcastIndex(i, out, shB)]);
            }
            expectClose(y, want, 1e-6, 1e-6, op);
          },
        ),
        { numRuns: 15 },
      );
    });
  }

  it('rejects shapes that do not broadcast, naming both', () => {
    expect(() => binary('add', fromArray([1, 2, 3]), fromArray([1, 2]))).toThrow(/\[3\] and \[2\]/);
  });
});

describe('where, compare, cast, fill, custom expressions', () => {
  it('where(cond, a, b) broadcasts over all three', async () => {
    const cond = fromArray([1, 0, 1], [3]);
    const a = fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    const b = fromArray([-1], [1]);
    expect(Array.from(await ternary('where', cond, a, b).toArray())).toEqual([1, -1, 3, 4, -1, 6]);
  });
  it('cast f32 -> i32 truncates; i32 add stays integer', async () => {
    const i = cast(fromArray([1.7, -2.2, 3]), 'i32');
    expect(i.dtype).toBe('i32');
    expect(Array.from(await i.toArray())).toEqual([1, -2, 3]);
    const s = binary('add', i, fromArray(new Int32Array([10, 20, 30])));
    expect(Array.from(await s.toArray())).toEqual([11, 18, 33]);
  });
  it('fill writes the constant everywhere, also past one workgroup', async () => {
    const y = await fill([3, 300], 2.5).toArray();
    expect(y.every((v) => v === 2.5)).toBe(true);
  });
  it('large 1-D sizes fold the grid over y without losing elements', async () => {
    const n = 256 * 65535 + 777; // more workgroups than one grid dimension allows
    const x = fill([n], 1);
    const y = await unary('affine', x, 2, 1).toArray();
    expect(y.length).toBe(n);
    expect(y[0]).toBe(3);
    expect(y[n - 1]).toBe(3);
    expect(y.every((v) => v === 3)).toBe(true);
  });
  it('mapExpr runs a custom fused expression', async () => {
    const y = await mapExpr('fma', 'x0 * x1 + p.alpha', [fromArray([1, 2]), fromArray([3, 4])], 0.5).toArray();
    expect(Array.from(y)).toEqual([3.5, 8.5]);
  });
});

// Both ew.vec variants (an element or a vec4 per thread) on maps they both suit: contiguous and
// single-value inputs, sizes a multiple of 4 (also one quad, and more quads than threads launched).
describe('elementwise, every ew.vec variant', () => {
  afterAll(() => setKernelOverride(null));
  const sizeArb = fc.oneof(fc.constant(4), fc.integer({ min: 1, max: 600 }).map((q) => 4 * q), fc.constant(4 * 64 * 256 + 4 * 37));
  const run = <T>(variant: string, fn: () => T): T => {
    setKernelOverride(`map:capped:64,ew.vec:${variant}`);
    try {
      return fn();
    } finally {
      setKernelOverride(null);
    }
  };
  for (const variant of ['scalar', 'vec4']) {
    it(`${variant}: unary, binary with a single-value operand, ternary, relu_grad and i32 maps match float64`, async () => {
      await fc.assert(
        fc.asyncProperty(sizeArb, fc.integer(), async (n, seed) => {
          const a = seededValues(n, seed, -6, 6);
          const b = seededValues(n, seed + 1, -6, 6);
          const c = seededValues(1, seed + 2)[0];
          const [ta, tb, tc] = [fromArray(a, [n]), fromArray(b, [n]), fromArray([c], [1])];
          const [sig, sub, where, rg, ints] = run(variant, () => [
            unary('sigmoid', ta),
            binary('sub', tc, ta),
            ternary('where', tb, ta, tc),
            mapExpr('relu_grad', 'select(0.0, x0, x1 > 0.0)', [ta, tb]),
            binary('add', cast(ta, 'i32'), cast(tb, 'i32')),
          ]);
          expectClose(await sig.toArray(), Array.from(a, UNARY_REF.sigmoid as (x: number) => number), 2e-6, 2e-6, `sigmoid ${variant}`);
          expectClose(await sub.toArray(), Array.from(a, (x) => c - x), 1e-6, 1e-6, `sub ${variant}`);
          expectClose(await where.toArray(), Array.from(a, (x, i) => (b[i] !== 0 ? x : c)), 0, 0, `where ${variant}`);
          expectClose(await rg.toArray(), Array.from(a, (x, i) => (b[i] > 0 ? x : 0)), 0, 0, `relu_grad ${variant}`);
          expect(Array.from(await ints.toArray()), `i32 add ${variant}`).toEqual(Array.from(a, (x, i) => (Math.trunc(x) + Math.trunc(b[i])) | 0));
        }),
        { numRuns: 10 },
      );
    });
  }
  it('both variants give the same bits; a strided map under the vec4 override is a one-line error', async () => {
    const n = 4 * 333;
    const t = fromArray(seededValues(n, 5, -6, 6), [n]);
    const [s, v] = await Promise.all(['scalar', 'vec4'].map((variant) => run(variant, () => unary('tanh', t)).toArray()));
    expect(Buffer.from((s as Float32Array).buffer).equals(Buffer.from((v as Float32Array).buffer))).toBe(true);
    expect(() => run('vec4', () => binary('add', fromArray(seededValues(12, 1), [3, 4]), fromArray([1, 2, 3], [3, 1])))).toThrow(/does not suit ew\.vec/);
  });
});

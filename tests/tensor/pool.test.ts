// Max / average / global-average pooling, forward and backward, against float64 references and finite
// differences; argmax ties; Keras 'same' padding; determinism.
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromArray } from '../../src/tensor/index.js';
import { setKernelOverride } from '../../src/tensor/plan.js';
import {
  adaptiveAvgPool2dTo1,
  adaptiveAvgPool2dTo1Backward,
  avgPool2dBackward,
  avgPool2dForward,
  maxPool2dBackward,
  maxPool2dForward,
  pool2dGeometry,
  pool2dOutputShape,
  type Pool2dOptions,
} from '../../src/tensor/ops/pool.js';
import { seededValues } from '../ref/arb.js';
import {
  avgPoolBackwardRef,
  avgPoolRef,
  expectNear,
  finiteDiff,
  globalAvgPoolRef,
  maxPoolBackwardRef,
  maxPoolRef,
  poolOut,
  sameBits,
  sampleCoords,
  type PoolRefGeom,
} from '../ref/conv-ref.js';

interface Case {
  n: number;
  c: number;
  h: number;
  w: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  /** top, left, bottom, right, or 'same'. */
  pad: [number, number, number, number] | 'same';
  seed: number;
}

function same(inSize: number, k: number, s: number): [number, number] {
  const out = Math.ceil(inSize / s);
  const total = Math.max((out - 1) * s + k - inSize, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

function refGeom(c: Case): PoolRefGeom {
  let pad: [number, number, number, number];
  if (c.pad === 'same') {
    const [t, b] = same(c.h, c.kh, c.sh);
    const [l, r] = same(c.w, c.kw, c.sw);
    pad = [t, l, b, r];
  } else pad = c.pad;
  return { n: c.n, c: c.c, h: c.h, w: c.w, kh: c.kh, kw: c.kw, sh: c.sh, sw: c.sw, pad };
}

function opts(c: Case, countIncludePad?: boolean): Pool2dOptions {
  return { kernel: [c.kh, c.kw], stride: [c.sh, c.sw], padding: c.pad, countIncludePad };
}

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    n: fc.constantFrom(1, 2, 3),
    c: fc.integer({ min: 1, max: 4 }),
    h: fc.integer({ min: 1, max: 13 }),
    w: fc.integer({ min: 1, max: 13 }),
    kh: fc.integer({ min: 1, max: 4 }),
    kw: fc.integer({ min: 1, max: 4 }),
    sh: fc.integer({ min: 1, max: 4 }),
    sw: fc.integer({ min: 1, max: 4 }),
    pad: fc.oneof(
      fc.tuple(fc.nat(2), fc.nat(2), fc.nat(2), fc.nat(2)).map((p) => p as [number, number, number, number]),
      fc.constant('same' as const),
    ),
    seed: fc.integer({ min: 1, max: 1 << 30 }),
  })
  .filter((c) => {
    const g = refGeom(c);
    const [pt, pl, pb, pr] = g.pad;
    if (pt >= c.kh || pb >= c.kh || pl >= c.kw || pr >= c.kw) return false;
    const [oh, ow] = poolOut(g);
    return oh >= 1 && ow >= 1;
  });

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

async function checkMax(c: Case, xs: Float32Array): Promise<void> {
  const g = refGeom(c);
  const xShape = [c.n, c.c, c.h, c.w];
  const x = fromArray(xs, xShape);
  const { y, idx } = maxPool2dForward(x, opts(c));
  const ref = maxPoolRef(xs, g);
  const what = JSON.stringify(c);
  expect(Array.from(await idx.toArray()), `argmax ${what}`).toEqual(Array.from(ref.idx));
  expect(Array.from(await y.toArray()), `max ${what}`).toEqual(Array.from(ref.y));
  const dys = seededValues(y.size, c.seed + 1);
  const dx = maxPool2dBackward(fromArray(dys, y.shape), idx, xShape, opts(c));
  expectNear(await dx.toArray(), maxPoolBackwardRef(dys, xs, g), 1e-6, `max backward ${what}`);
}

describe('pool geometry', () => {
  it('uses PyTorch sizes, stride = kernel by default, Keras same = ceil(in / stride)', () => {
    expect(pool2dOutputShape([2, 3, 9, 8], { kernel: 2 })).toEqual([2, 3, 4, 4]);
    expect(pool2dOutputShape([2, 3, 9, 8], { kernel: 3, stride: 2, padding: 1 })).toEqual([2, 3, 5, 4]);
    expect(pool2dOutputShape([1, 1, 9, 31], { kernel: 2, padding: 'same' })).toEqual([1, 1, 5, 16]);
    expect(pool2dOutputShape([1, 1, 32, 30], { kernel: 4, padding: 'same' })).toEqual([1, 1, 8, 8]);
    expect(pool2dGeometry([1, 1, 9, 9], { kernel: 2, padding: 'same' })).toMatchObject({ pt: 0, pb: 1, pl: 0, pr: 1 });
    expect(() => pool2dGeometry([1, 1, 8, 8], { kernel: 2, padding: 2 })).toThrow(/smaller than the kernel/);
    expect(() => pool2dGeometry([1, 1, 2, 2], { kernel: 3 })).toThrow(/smaller/);
  });
});

describe('max pool', () => {
  it('forward (values and argmax) and backward match float64 on random geometries', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        await checkMax(c, seededValues(c.n * c.c * c.h * c.w, c.seed));
      }),
      { numRuns: 40 },
    );
  });

  it('takes the first maximum in window order on ties and routes the gradient there', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        // Values from {0, 1, 2}: most windows hold ties.
        const xs = seededValues(c.n * c.c * c.h * c.w, c.seed).map((v) => Math.floor(v + 2) % 3);
        await checkMax(c, xs);
      }),
      { numRuns: 25 },
    );
    // A constant plane: every window's first element wins.
    const x = fromArray(new Float32Array(16).fill(1), [1, 1, 4, 4]);
    const { idx } = maxPool2dForward(x, { kernel: 2, stride: 1 });
    expect(Array.from(await idx.toArray())).toEqual([0, 1, 2, 4, 5, 6, 8, 9, 10]);
  });

  it('treats padding as -inf (all-negative inputs)', async () => {
    const xs = Float32Array.from({ length: 9 }, (_, i) => -1 - i);
    const { y, idx } = maxPool2dForward(fromArray(xs, [1, 1, 3, 3]), { kernel: 3, stride: 1, padding: 1 });
    const ref = maxPoolRef(xs, { n: 1, c: 1, h: 3, w: 3, kh: 3, kw: 3, sh: 1, sw: 1, pad: [1, 1, 1, 1] });
    expect(Array.from(await y.toArray())).toEqual(Array.from(ref.y));
    expect(Array.from(await idx.toArray())).toEqual(Array.from(ref.idx));
    expect(Math.max(...(await y.toArray()))).toBe(-1);
  });

  it('backward matches finite differences of the float64 forward (overlapping windows)', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const g = refGeom(c);
        const xShape = [c.n, c.c, c.h, c.w];
        // Continuous random values: ties (where max is not differentiable) have probability ~0, and
        // the tiny step keeps every argmax in place.
        const n = prod(xShape);
        const xs = seededValues(n, c.seed);
        const { y, idx } = maxPool2dForward(fromArray(xs, xShape), opts(c));
        const dys = seededValues(y.size, c.seed + 1);
        const dx = await maxPool2dBackward(fromArray(dys, y.shape), idx, xShape, opts(c)).toArray();
        const coords = sampleCoords(n, 16, c.seed);
        const fd = finiteDiff((v) => maxPoolRef(v, g).y, xs, dys, coords, 1e-7);
        expectNear(coords.map((i) => dx[i]), fd, 1e-5, `max pool dx vs finite differences ${JSON.stringify(c)}`);
      }),
      { numRuns: 12 },
    );
  });

  it('is deterministic (same bits twice) with overlapping windows', async () => {
    const xShape = [2, 3, 17, 13];
    const x = fromArray(seededValues(prod(xShape), 9).map((v) => Math.round(v)), xShape);
    const o: Pool2dOptions = { kernel: 3, stride: 1, padding: 1 };
    const { y, idx } = maxPool2dForward(x, o);
    const dy = fromArray(seededValues(y.size, 10), y.shape);
    const a = (await maxPool2dBackward(dy, idx, xShape, o).toArray()) as Float32Array;
    const b = (await maxPool2dBackward(dy, idx, xShape, o).toArray()) as Float32Array;
    expect(sameBits(a, b)).toBe(true);
  });
});

// Geometries the row-quad kernels suit (kw = sw in {2, 4}, kh = sh, no padding, W % 4 == 0,
// H % sh == 0), with Keras 'same' padding that resolves to none.
const quadArb: fc.Arbitrary<Case> = fc
  .record({
    n: fc.constantFrom(1, 2),
    c: fc.integer({ min: 1, max: 3 }),
    hq: fc.integer({ min: 1, max: 4 }),
    wq: fc.integer({ min: 1, max: 4 }),
    kh: fc.integer({ min: 1, max: 4 }),
    kw: fc.constantFrom(2, 4),
    same: fc.boolean(),
    seed: fc.integer({ min: 1, max: 1 << 30 }),
  })
  .map(({ n, c, hq, wq, kh, kw, same, seed }) => ({
    n, c, h: hq * kh, w: wq * 4, kh, kw, sh: kh, sw: kw, pad: same ? ('same' as const) : ([0, 0, 0, 0] as [number, number, number, number]), seed,
  }));

describe('max pool, every variant', () => {
  afterAll(() => setKernelOverride(null));
  for (const variant of ['window', 'quad']) {
    it(`${variant}: forward, argmax (with ties) and backward match float64 where it suits`, async () => {
      setKernelOverride(`pool.max:${variant}`);
      try {
        await fc.assert(
          fc.asyncProperty(quadArb, fc.boolean(), async (c, ties) => {
            const xs = seededValues(c.n * c.c * c.h * c.w, c.seed);
            await checkMax(c, ties ? xs.map((v) => Math.floor(v + 2) % 3) : xs);
          }),
          { numRuns: 30 },
        );
      } finally {
        setKernelOverride(null);
      }
    });
  }

  it('quad: backward matches finite differences and both variants give the same bits', async () => {
    await fc.assert(
      fc.asyncProperty(quadArb, async (c) => {
        const g = refGeom(c);
        const xShape = [c.n, c.c, c.h, c.w];
        const n = prod(xShape);
        const xs = seededValues(n, c.seed);
        const dys = seededValues(n / (c.kh * c.kw), c.seed + 1);
        const run = async (variant: string) => {
          setKernelOverride(`pool.max:${variant}`);
          try {
            const { y, idx } = maxPool2dForward(fromArray(xs, xShape), opts(c));
            const dx = maxPool2dBackward(fromArray(dys, y.shape), idx, xShape, opts(c));
            return [(await y.toArray()) as Float32Array, (await dx.toArray()) as Float32Array];
          } finally {
            setKernelOverride(null);
          }
        };
        const [yq, dxq] = await run('quad');
        const [yw, dxw] = await run('window');
        expect(sameBits(yq, yw) && sameBits(dxq, dxw), JSON.stringify(c)).toBe(true);
        const coords = sampleCoords(n, 12, c.seed);
        const fd = finiteDiff((v) => maxPoolRef(v, g).y, xs, dys, coords, 1e-7);
        expectNear(coords.map((i) => dxq[i]), fd, 1e-5, `quad dx vs finite differences ${JSON.stringify(c)}`);
      }),
      { numRuns: 12 },
    );
  });

  it('an override naming quad where it does not suit is a one-line error', () => {
    setKernelOverride('pool.max:quad');
    try {
      expect(() => maxPool2dForward(fromArray(new Float32Array(9), [1, 1, 3, 3]), { kernel: 3 })).toThrow(/does not suit pool\.max\.fwd/);
    } finally {
      setKernelOverride(null);
    }
  });
});

describe('average pool', () => {
  for (const include of [true, false]) {
    it(`forward and backward match float64 (countIncludePad=${include})`, async () => {
      await fc.assert(
        fc.asyncProperty(caseArb, async (c) => {
          const g = refGeom(c);
          const xShape = [c.n, c.c, c.h, c.w];
          const xs = seededValues(prod(xShape), c.seed);
          const y = avgPool2dForward(fromArray(xs, xShape), opts(c, include));
          const what = JSON.stringify(c);
          expectNear(await y.toArray(), avgPoolRef(xs, g, include), 1e-6, `avg forward ${what}`);
          const dys = seededValues(y.size, c.seed + 1);
          const dx = await avgPool2dBackward(fromArray(dys, y.shape), xShape, opts(c, include)).toArray();
          expectNear(dx, avgPoolBackwardRef(dys, g, include), 1e-6, `avg backward ${what}`);
          const coords = sampleCoords(xs.length, 12, c.seed);
          const fd = finiteDiff((v) => avgPoolRef(v, g, include), xs, dys, coords);
          expectNear(coords.map((i) => dx[i]), fd, 1e-5, `avg dx vs finite differences ${what}`);
        }),
        { numRuns: 30 },
      );
    });
  }

  it('divides by the padded window (PyTorch default) or the real elements (Keras same)', async () => {
    const x = fromArray(new Float32Array(9).fill(1), [1, 1, 3, 3]);
    const inc = await avgPool2dForward(x, { kernel: 2, padding: 'same' }).toArray();
    const exc = await avgPool2dForward(x, { kernel: 2, padding: 'same', countIncludePad: false }).toArray();
    expect(Array.from(inc)).toEqual([1, 0.5, 0.5, 0.25]);
    expect(Array.from(exc)).toEqual([1, 1, 1, 1]);
  });
});

describe('global average pool (AdaptiveAvgPool2d(1))', () => {
  it('forward and backward match float64 and finite differences', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(1, 2, 3),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 1 << 30 }),
        async (n, c, h, w, seed) => {
          const xShape = [n, c, h, w];
          const xs = seededValues(prod(xShape), seed);
          const y = adaptiveAvgPool2dTo1(fromArray(xs, xShape));
          expect(y.shape).toEqual([n, c, 1, 1]);
          expectNear(await y.toArray(), globalAvgPoolRef(xs, n * c, h * w), 1e-6, 'gap forward');
          const dys = seededValues(n * c, seed + 1);
          const dx = await adaptiveAvgPool2dTo1Backward(fromArray(dys, [n, c]), xShape).toArray();
          const want = Float64Array.from({ length: xs.length }, (_, i) => dys[Math.floor(i / (h * w))] / (h * w));
          expectNear(dx, want, 1e-6, 'gap backward');
          const coords = sampleCoords(xs.length, 8, seed);
          const fd = finiteDiff((v) => globalAvgPoolRef(v, n * c, h * w), xs, dys, coords);
          expectNear(coords.map((i) => dx[i]), fd, 1e-5, 'gap dx vs finite differences');
        },
      ),
      { numRuns: 20 },
    );
  });
});

// Grouped / depthwise conv2d forward (with the fused bias + clamp epilogue) against the float64
// reference on random geometries, including TF 'same' padding at stride 2 as MobileNet uses it.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromArray } from '../../src/tensor/index.js';
import { groupedConv2dForward, groupedConv2dGeometry } from '../../src/tensor/ops/depthwise.js';
import { seededValues } from '../ref/arb.js';
import { expectNear } from '../ref/conv-ref.js';
import { groupedConv2dRef } from '../ref/depthwise-ref.js';

const caseArb = fc.record({
  n: fc.integer({ min: 1, max: 2 }),
  groups: fc.integer({ min: 1, max: 4 }),
  cpg: fc.integer({ min: 1, max: 3 }),
  opg: fc.integer({ min: 1, max: 2 }),
  h: fc.integer({ min: 1, max: 9 }),
  w: fc.integer({ min: 1, max: 9 }),
  k: fc.integer({ min: 1, max: 3 }),
  s: fc.integer({ min: 1, max: 2 }),
  d: fc.integer({ min: 1, max: 2 }),
  pad: fc.constantFrom<'same' | 'valid' | 1>('same', 'valid', 1),
  bias: fc.boolean(),
  clamp: fc.boolean(),
  seed: fc.integer({ min: 0, max: 10_000 }),
});

/** TF/Keras 'same' padding, written out independently of the implementation. */
function same(inSize: number, k: number, s: number, d: number): [number, number] {
  const total = Math.max((Math.ceil(inSize / s) - 1) * s + (k - 1) * d + 1 - inSize, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

describe('grouped conv2d forward', () => {
  it('matches the float64 reference on random geometries (depthwise, grouped, dense)', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const cin = c.groups * c.cpg;
        const cout = c.groups * c.opg;
        const eh = (c.k - 1) * c.d + 1;
        const [pt, pb] = c.pad === 'same' ? same(c.h, c.k, c.s, c.d) : c.pad === 1 ? [1, 1] : [0, 0];
        const [pl, pr] = c.pad === 'same' ? same(c.w, c.k, c.s, c.d) : c.pad === 1 ? [1, 1] : [0, 0];
        fc.pre(c.h + pt + pb >= eh && c.w + pl + pr >= eh);
        const xs = seededValues(c.n * cin * c.h * c.w, c.seed);
        const ws = seededValues(cout * c.cpg * c.k * c.k, c.seed + 1);
        const bs = c.bias ? seededValues(cout, c.seed + 2) : null;
        const clamp: [number, number] | undefined = c.clamp ? [0, 1.5] : undefined;
        const y = groupedConv2dForward(
          fromArray(xs, [c.n, cin, c.h, c.w]),
          fromArray(ws, [cout, c.cpg, c.k, c.k]),
          bs && fromArray(bs, [cout]),
          { groups: c.groups, stride: c.s, dilation: c.d, padding: c.pad, clamp },
        );
        const g = { n: c.n, cin, h: c.h, w: c.w, cout, kh: c.k, kw: c.k, sh: c.s, sw: c.s, dh: c.d, dw: c.d, pad: [pt, pl, pb, pr] as [number, number, number, number] };
        const want = groupedConv2dRef(xs, ws, bs, g, c.groups, clamp);
        expect(y.shape[2] * y.shape[3]).toBe(want.length / (c.n * cout));
        expectNear(await y.toArray(), want, 1e-5, 'grouped conv2d');
        y.dispose();
      }),
      { numRuns: 40 },
    );
  });

  it('matches the reference on a MobileNet-sized depthwise layer (more outputs than one launch of threads)', async () => {
    // The random cases above have at most ~1300 outputs, fewer than the 64 workgroups a software adapter
    // launches, so each thread does one output; here 32 x 40 x 40 outputs make every thread loop (grid stride).
    const [c, h, w] = [32, 40, 40];
    const xs = seededValues(c * h * w, 7);
    const ws = seededValues(c * 9, 8);
    const bs = seededValues(c, 9);
    for (const s of [1, 2]) {
      const y = groupedConv2dForward(fromArray(xs, [1, c, h, w]), fromArray(ws, [c, 1, 3, 3]), fromArray(bs, [c]), { groups: c, stride: s, padding: 'same', clamp: [0, 6] });
      const [pt, pb] = same(h, 3, s, 1);
      const [pl, pr] = same(w, 3, s, 1);
      const g = { n: 1, cin: c, h, w, cout: c, kh: 3, kw: 3, sh: s, sw: s, dh: 1, dw: 1, pad: [pt, pl, pb, pr] as [number, number, number, number] };
      expectNear(await y.toArray(), groupedConv2dRef(xs, ws, bs, g, c, [0, 6]), 1e-5, `depthwise 3x3 stride ${s}`);
      y.dispose();
    }
  });

  it('rejects channels that do not split into the groups, and an empty clamp, in one line', () => {
    expect(() => groupedConv2dGeometry([1, 6, 4, 4], [6, 2, 3, 3], { groups: 4 })).toThrow(/do not split into 4 groups/);
    const x = fromArray(new Float32Array(16), [1, 1, 4, 4]);
    const w = fromArray(new Float32Array(9), [1, 1, 3, 3]);
    expect(() => groupedConv2dForward(x, w, null, { groups: 1, clamp: [1, 0] })).toThrow(/clamp \[1, 0\] is empty/);
  });
});

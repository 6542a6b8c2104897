// Mask anatomy against a brute-force reference on random masks and geometries, and overlap properties.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compactionSummary, densityBin, layerAnatomy, maskOverlap } from '../../src/prune/anatomy.js';
import { convGeometryArb, linearGeometryArb, maskArb } from '../../src/testing/index.js';

/** Straightforward 4-D loops, written independently of anatomy.ts's flattened walk. */
function reference(O: number, I: number, kh: number, kw: number, m: Uint8Array) {
  const at = (o: number, i: number, y: number, x: number) => m[((o * I + i) * kh + y) * kw + x];
  const deadF: boolean[] = [];
  const deadC: boolean[] = [];
  for (let o = 0; o < O; o++) {
    let any = false;
    for (let i = 0; i < I; i++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) any ||= at(o, i, y, x) === 1;
    deadF.push(!any);
  }
  for (let i = 0; i < I; i++) {
    let any = false;
    for (let o = 0; o < O; o++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) any ||= at(o, i, y, x) === 1;
    deadC.push(!any);
  }
  let compactable = 0;
  const taps: number[] = [];
  for (let y = 0; y < kh; y++) {
    for (let x = 0; x < kw; x++) {
      let k = 0;
      for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) k += at(o, i, y, x);
      taps.push(k / (O * I));
    }
  }
  for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) if (deadF[o] || deadC[i]) compactable += kh * kw;
  const hist = new Array(11).fill(0);
  for (let o = 0; o < O; o++) {
    let k = 0;
    for (let i = 0; i < I; i++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) k += at(o, i, y, x);
    const d = k / (I * kh * kw);
    hist[d === 0 ? 0 : Math.min(10, Math.ceil(d * 10 - 1e-9))]++;
  }
  return { deadFilters: deadF.filter(Boolean).length, deadChannels: deadC.filter(Boolean).length, compactable, taps, hist };
}

const convCase = convGeometryArb({ maxChannels: 7, maxKernel: 5 }).chain((g) =>
  fc.tuple(fc.constant(g), maskArb(g.outChannels * g.inChannels * g.kernel * g.kernel, { min: 0, max: 0.4 })),
);

describe('mask anatomy', () => {
  it('conv masks: dead filters and channels, taps, histogram and compaction match a brute-force reference', () => {
    fc.assert(
      fc.property(convCase, ([g, m]) => {
        const { outChannels: O, inChannels: I, kernel: k } = g;
        const a = layerAnatomy('conv.weight', [O, I, k, k], m);
        const r = reference(O, I, k, k, m);
        expect(a.deadFilters).toBe(r.deadFilters);
        expect(a.deadChannels).toBe(r.deadChannels);
        expect(a.compactable).toBe(r.compactable);
        expect(a.filterHistogram).toEqual(r.hist);
        a.taps.forEach((v, i) => expect(v).toBeCloseTo(r.taps[i], 12));
        expect(a.kept).toBe(m.reduce((s, v) => s + v, 0));
        // Compaction removes only pruned weights.
        expect(a.compactable).toBeLessThanOrEqual(a.total - a.kept);
      }),
      { numRuns: 200 },
    );
  });

  it('linear masks are a 1x1-kernel grid; a shape that does not match is an error naming the mask', () => {
    fc.assert(
      fc.property(
        linearGeometryArb({ maxFeatures: 20 }).chain((g) => fc.tuple(fc.constant(g), maskArb(g.inFeatures * g.outFeatures))),
        ([g, m]) => {
          const a = layerAnatomy('fc.weight', [g.outFeatures, g.inFeatures], m);
          const r = reference(g.outFeatures, g.inFeatures, 1, 1, m);
          expect([a.deadFilters, a.deadChannels, a.compactable]).toEqual([r.deadFilters, r.deadChannels, r.compactable]);
        },
      ),
      { numRuns: 100 },
    );
    expect(() => layerAnatomy('fc.weight', [3, 4], new Uint8Array(11))).toThrow(/mask 'fc.weight': shape \[3, 4\] does not match its 11 entries/);
  });

  it('a hand-made example: one dead filter, one dead channel, only the centre tap survives', () => {
    // [3 filters, 2 channels, 3x3]; filter 1 dead; channel 1 dead; filters 0 and 2 keep only the centre of channel 0.
    const m = new Uint8Array(3 * 2 * 9);
    m[(0 * 2 + 0) * 9 + 4] = 1;
    m[(2 * 2 + 0) * 9 + 4] = 1;
    const a = layerAnatomy('c.weight', [3, 2, 3, 3], m);
    expect(a).toMatchObject({ deadFilters: 1, deadChannels: 1, kept: 2, compactable: (1 * 2 + 1 * 3 - 1) * 9 });
    expect(a.taps).toEqual([0, 0, 0, 0, 2 / 6, 0, 0, 0, 0]);
    expect(Array.from(a.grid)).toEqual([1 / 9, 0, 0, 0, 1 / 9, 0].map(Math.fround));
    expect(compactionSummary([a])).toMatchObject({ total: 54, pruned: 52, compactable: 36, deadFilters: 1, filters: 3 });
    expect([densityBin(0), densityBin(0.05), densityBin(0.1), densityBin(0.11), densityBin(1)]).toEqual([0, 1, 1, 2, 10]);
  });

  it('overlap: Jaccard is 1 with itself, symmetric, equals |A and B| / |A or B|; chance follows the densities', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }).chain((n) => fc.tuple(maskArb(n), maskArb(n))), ([a, b]) => {
        const A = new Map([['w', a]]);
        const B = new Map([['w', b]]);
        const [ab] = maskOverlap(A, B);
        const [ba] = maskOverlap(B, A);
        expect(ab.jaccard).toBeCloseTo(ba.jaccard, 12);
        expect(maskOverlap(A, A)[0].jaccard).toBe(1);
        let both = 0;
        let either = 0;
        for (let i = 0; i < a.length; i++) {
          both += a[i] & b[i];
          either += a[i] | b[i];
        }
        expect(ab.jaccard).toBe(either ? both / either : 1);
      }),
      { numRuns: 200 },
    );
    // Two half-dense random masks share a third of their union on average: 0.25 / (0.5 + 0.5 - 0.25).
    const half = Uint8Array.from({ length: 10 }, (_, i) => i % 2);
    const all = maskOverlap(new Map([['a', half], ['b', half]]), new Map([['a', half], ['b', half]]));
    expect(all.map((r) => r.key)).toEqual(['a', 'b', '(all layers)']);
    expect(all[2].chance).toBeCloseTo(1 / 3, 12);
    expect(() => maskOverlap(new Map([['a', half]]), new Map([['a', new Uint8Array(3)]]))).toThrow(/mask 'a' has 10 entries in one mask and 3/);
  });
});

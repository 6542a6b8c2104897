// Compaction's raw ops (tensor/ops/compact.ts): gathering kept positions, and the gradient that gathers
// back through the inverse positions (one dispatch: +0 wherever nothing was taken), against a float64
// host reference over random shapes and subsets.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { gatherAt, inversePositions } from '../../src/tensor/ops/compact.js';
import { SPARSE_NONE } from '../../src/shaders/sparse-conv.js';
import { fromArray } from '../../src/tensor/tensor.js';

/** A random subset of 0..size-1 in random order, and values. */
const subset = fc.integer({ min: 1, max: 300 }).chain((size) =>
  fc.record({
    size: fc.constant(size),
    flat: fc.uniqueArray(fc.integer({ min: 0, max: size - 1 }), { minLength: 1, maxLength: size }),
    seed: fc.integer({ min: 1, max: 1 << 20 }),
  }),
);

describe('compaction ops', () => {
  it('inversePositions inverts distinct positions and refuses a repeated one', () => {
    fc.assert(
      fc.property(subset, ({ size, flat }) => {
        const inv = inversePositions(flat, size);
        flat.forEach((j, i) => expect(inv[j]).toBe(i));
        expect(Array.from(inv).filter((v) => v === SPARSE_NONE).length).toBe(size - flat.length);
      }),
    );
    expect(() => inversePositions([3, 1, 3], 5)).toThrow(/position 3 listed twice/);
  });

  it('gathering through the inverse spreads values back, exact +0 elsewhere (float64 reference)', async () => {
    await fc.assert(
      fc.asyncProperty(subset, async ({ size, flat, seed }) => {
        const g = Float64Array.from(flat, (_, i) => Math.sin(seed + i * 1.7) * 3);
        const want = new Float64Array(size);
        flat.forEach((j, i) => (want[j] = g[i]));
        const gt = fromArray(Float32Array.from(g), [flat.length]);
        const inv = fromArray(inversePositions(flat, size), [size], 'u32');
        const out = gatherAt(gt, inv, [size]);
        const got = (await out.toArray()) as Float32Array;
        for (let j = 0; j < size; j++) {
          if (want[j] === 0 && !flat.includes(j)) expect(Object.is(got[j], 0), `position ${j}`).toBe(true);
          else expect(got[j]).toBeCloseTo(Math.fround(want[j]), 6);
        }
        // And forward: gathering the spread tensor at flat gives g back.
        const idx = fromArray(Uint32Array.from(flat), [flat.length], 'u32');
        const backT = gatherAt(out, idx, [flat.length]);
        const back = (await backT.toArray()) as Float32Array;
        expect(Array.from(back)).toEqual(Array.from(Float32Array.from(g)));
        for (const t of [gt, inv, out, idx, backT]) t.dispose();
      }),
      { numRuns: 30 },
    );
  });
});

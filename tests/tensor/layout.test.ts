import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { concat, expand, fromArray, permute, slice, split, transpose, clone } from '../../src/tensor/index.js';
import { numel, seededValues, shapeArb, stridesOf } from '../ref/arb.js';

function refPermute(x: Float32Array, shape: number[], dims: number[]): number[] {
  const out = dims.map((d) => shape[d]);
  const st = stridesOf(shape);
  const res: number[] = [];
  for (let i = 0; i < numel(out); i++) {
    let rem = i;
    let o = 0;
    for (let d = out.length - 1; d >= 0; d--) {
      const c = rem % out[d];
      rem = Math.floor(rem / out[d]);
      o += c * st[dims[d]];
    }
    res.push(x[o]);
  }
  return res;
}

const permArb = shapeArb(1, 5, 3000).chain((s) =>
  fc.tuple(fc.constant(s), fc.shuffledSubarray(s.map((_, i) => i), { minLength: s.length, maxLength: s.length }), fc.integer()),
);

describe('layout ops', () => {
  it('permute equals the float64 index reference', async () => {
    await fc.assert(
      fc.asyncProperty(permArb, async ([shape, dims, seed]) => {
        const x = seededValues(numel(shape), seed);
        const y = permute(fromArray(x, shape), dims);
        expect(y.shape).toEqual(dims.map((d) => shape[d]));
        expect(Array.from(await y.toArray())).toEqual(refPermute(x, shape, dims));
      }),
      { numRuns: 30 },
    );
  });

  it('transpose twice is the identity', async () => {
    const x = seededValues(7 * 13 * 3, 3);
    const t = fromArray(x, [7, 13, 3]);
    expect(Array.from(await transpose(transpose(t, 0, 2), 0, 2).toArray())).toEqual(Array.from(x));
  });

  it('slice with start/end/step matches Python semantics', async () => {
    await fc.assert(
      fc.asyncProperty(
        shapeArb(1, 4, 2000),
        fc.integer(),
        fc.integer({ min: -20, max: 20 }),
        fc.integer({ min: -20, max: 20 }),
        fc.integer({ min: 1, max: 3 }),
        async (shape, seed, start, end, step) => {
          const axis = Math.abs(seed) % shape.length;
          const x = seededValues(numel(shape), seed);
          const y = slice(fromArray(x, shape), axis, start, end, step);
          const len = shape[axis];
          const norm = (v: number) => Math.min(len, Math.max(0, v < 0 ? v + len : v));
          const idx: number[] = [];
          for (let i = norm(start); i < norm(end); i += step) idx.push(i);
          expect(y.shape[axis]).toBe(idx.length);
          // Reference: walk all elements of the output.
          const st = stridesOf(shape);
          const out = [...shape];
          out[axis] = idx.length;
          const want: number[] = [];
          for (let i = 0; i < numel(out); i++) {
            let rem = i;
            let o = 0;
            for (let d = out.length - 1; d >= 0; d--) {
              const c = rem % out[d];
              rem = Math.floor(rem / out[d]);
              o += (d === axis ? idx[c] : c) * st[d];
            }
            want.push(x[o]);
          }
          expect(Array.from(await y.toArray())).toEqual(want);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('concat then split round-trips on any axis', async () => {
    await fc.assert(
      fc.asyncProperty(shapeArb(1, 4, 1500), fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 4 }), fc.integer(), async (shape, sizes, seed) => {
        const axis = Math.abs(seed) % shape.length;
        const parts = sizes.map((n, k) => {
          const s = [...shape];
          s[axis] = n;
          return fromArray(seededValues(numel(s), seed + k), s);
        });
        const c = concat(parts, axis);
        expect(c.shape[axis]).toBe(sizes.reduce((a, b) => a + b, 0));
        const back = split(c, sizes, axis);
        for (let k = 0; k < parts.length; k++) {
          expect(Array.from(await back[k].toArray())).toEqual(Array.from(await parts[k].toArray()));
        }
      }),
      { numRuns: 25 },
    );
  });

  it('expand broadcasts and clone copies', async () => {
    const x = fromArray([1, 2, 3], [3, 1]);
    expect(Array.from(await expand(x, [2, 3, 2]).toArray())).toEqual([1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3]);
    const c = clone(x);
    expect(c.buf).not.toBe(x.buf);
    expect(Array.from(await c.toArray())).toEqual([1, 2, 3]);
  });

  it('reshape is a view that shares storage and infers -1', async () => {
    const x = fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    const y = x.reshape([3, -1]);
    expect(y.shape).toEqual([3, 2]);
    expect(y.buf).toBe(x.buf);
    x.dispose();
    expect(Array.from(await y.toArray())).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => y.reshape([4, -1])).toThrow(/cannot reshape 6 elements/);
  });

  it('errors name the offending argument', () => {
    const x = fromArray([1, 2, 3, 4], [2, 2]);
    expect(() => permute(x, [0, 0])).toThrow(/repeat/);
    expect(() => slice(x, 5, 0)).toThrow(/axis 5 is out of range/);
    expect(() => concat([x, fromArray([1, 2, 3], [1, 3])], 0)).toThrow(/does not match/);
  });
});

// Shared fast-check arbitraries and float64 helpers for kernel tests.
import fc from 'fast-check';

/** Dimension sizes that hit the edge cases: 1, primes, non-multiples of tiles, a power of two. */
export const dimArb = fc.oneof(fc.constantFrom(1, 2, 3, 5, 7, 13, 16, 17), fc.integer({ min: 1, max: 40 }));

export function shapeArb(minRank = 0, maxRank = 4, maxElems = 4096): fc.Arbitrary<number[]> {
  return fc
    .array(dimArb, { minLength: minRank, maxLength: maxRank })
    .filter((s) => s.reduce((a, b) => a * b, 1) <= maxElems);
}

/** A shape that broadcasts to `shape`: some dims set to 1, some leading dims dropped. */
export function broadcastableTo(shape: number[]): fc.Arbitrary<number[]> {
  return fc
    .tuple(fc.array(fc.boolean(), { minLength: shape.length, maxLength: shape.length }), fc.nat(shape.length))
    .map(([ones, drop]) => shape.map((d, i) => (ones[i] ? 1 : d)).slice(drop));
}

export function seededValues(n: number, seed: number, lo = -2, hi = 2): Float32Array {
  // A tiny LCG: tests need varied values, not statistical quality.
  const out = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((s >>> 8) / 2 ** 24) * (hi - lo);
  }
  return out;
}

export function numel(s: readonly number[]): number {
  return s.reduce((a, b) => a * b, 1);
}

export function stridesOf(s: readonly number[]): number[] {
  const st = new Array<number>(s.length);
  let k = 1;
  for (let i = s.length - 1; i >= 0; i--) {
    st[i] = k;
    k *= s[i];
  }
  return st;
}

/** Index of out-element `i` (of shape `out`) in an input of shape `inp` under broadcasting. */
export function bcastIndex(i: number, out: readonly number[], inp: readonly number[]): number {
  const r = out.length - inp.length;
  const ist = stridesOf(inp);
  let rem = i;
  let o = 0;
  for (let d = out.length - 1; d >= 0; d--) {
    const c = rem % out[d];
    rem = Math.floor(rem / out[d]);
    if (d >= r && inp[d - r] !== 1) o += c * ist[d - r];
  }
  return o;
}

export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, rtol = 1e-5, atol = 1e-6, what = ''): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} != ${want.length}`);
  for (let i = 0; i < got.length; i++) {
    const g = got[i];
    const w = want[i];
    if (Number.isNaN(w) && Number.isNaN(g)) continue;
    if (!(Math.abs(g - w) <= atol + rtol * Math.abs(w))) {
      throw new Error(`${what}: element ${i}: got ${g}, want ${w} (rtol ${rtol}, atol ${atol})`);
    }
  }
}

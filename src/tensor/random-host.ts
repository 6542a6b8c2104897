// Host twin of src/shaders/random.ts: the same Threefry-2x32-20 stream, bit for bit, for work that
// happens on the CPU (shuffles, random masks) and to test the GPU kernel against.
const ROT = [13, 15, 26, 6, 17, 29, 16, 24];

export function threefry2x32(k0: number, k1: number, c0: number, c1: number): [number, number] {
  const ks = [k0 >>> 0, k1 >>> 0, (0x1bd11bda ^ k0 ^ k1) >>> 0];
  let x0 = (c0 + ks[0]) >>> 0;
  let x1 = (c1 + ks[1]) >>> 0;
  for (let i = 0; i < 20; i++) {
    x0 = (x0 + x1) >>> 0;
    const r = ROT[i % 8];
    x1 = ((x1 << r) | (x1 >>> (32 - r))) >>> 0;
    x1 = (x1 ^ x0) >>> 0;
    if (i % 4 === 3) {
      const s = (i + 1) / 4;
      x0 = (x0 + ks[s % 3]) >>> 0;
      x1 = (x1 + ks[(s + 1) % 3] + s) >>> 0;
    }
  }
  return [x0, x1];
}

/** Splits a JS number seed (up to 2^53) into the two key words. */
export function seedKey(seed: number): [number, number] {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed ${seed} must be a non-negative integer`);
  return [seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0];
}

const INV24 = 5.9604644775390625e-8; // 2^-24

/** Element i of a uniform [0,1) draw: what randomUniform computes on the GPU (in float64 here). */
export function uniformAt(seed: number, stream: number, i: number): number {
  const [k0, k1] = seedKey(seed);
  return (threefry2x32(k0, k1, i >>> 0, stream >>> 0)[0] >>> 8) * INV24;
}

/** A seeded host RNG over the same stream, for shuffles and other sequential draws. */
export class HostRandom {
  private i = 0;
  constructor(
    readonly seed: number,
    readonly stream = 0,
  ) {}
  /** Uniform in [0, 1). */
  next(): number {
    return uniformAt(this.seed, this.stream, this.i++);
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Fisher-Yates shuffle in place. */
  shuffle<T>(a: T[]): T[] {
    for (let j = a.length - 1; j > 0; j--) {
      const k = this.int(j + 1);
      [a[j], a[k]] = [a[k], a[j]];
    }
    return a;
  }
}

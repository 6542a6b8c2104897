// Counter-based randomness for the data layer: every random choice is a pure function of
// (seed, stream, counters), so sample i, its flip, and an epoch's order never depend on the order in
// which other samples were produced (prefetching, skipped files, parallel writers).

/** murmur3's 32-bit finaliser: a cheap bijective mixer with full avalanche. */
export function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Hash a tuple of integers (each reduced mod 2^32) into one uint32 key. Order matters. */
export function hashKey(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    // Split doubles beyond 2^32 so large seeds do not collide with their low bits.
    const lo = p >>> 0;
    const hi = Math.floor(p / 4294967296) >>> 0;
    h = mix32(h ^ lo) + 0x7f4a7c15;
    if (hi !== 0) h = mix32(h ^ hi) + 0x7f4a7c15;
    h >>>= 0;
  }
  return mix32(h);
}

/** FNV-1a of a string, for keying streams by names such as a split or a video id. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return mix32(h >>> 0);
}

/** Uniform float in [0,1) from a key, with no state. */
export function unitFloat(key: number): number {
  return mix32(key) / 4294967296;
}

/** Small sequential generator (mulberry32) seeded from a hashed key. */
export class Rng {
  private s: number;
  private spare: number | null = null;
  constructor(key: number) {
    this.s = key >>> 0;
  }
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** [0,1) */
  float(): number {
    return this.u32() / 4294967296;
  }
  /** [a,b) */
  range(a: number, b: number): number {
    return a + (b - a) * this.float();
  }
  /** integer in [0,n) */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  bool(p = 0.5): boolean {
    return this.float() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  /** standard normal (Box-Muller, caching the second value) */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u = this.float();
    if (u < 1e-12) u = 1e-12;
    const v = this.float();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  /** In-place Fisher-Yates shuffle. */
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = xs[i];
      xs[i] = xs[j];
      xs[j] = t;
    }
    return xs;
  }
}

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { dropoutMask, randomNormal, randomUniform, uniformAt, threefry2x32, HostRandom, fromArray, keep, queue } from '../../src/tensor/index.js';
import * as F from '../../src/autograd/functional.js';
import { backward } from '../../src/autograd/tape.js';
import { withKernels } from '../../src/tensor/plan.js';
import { seededValues } from '../ref/arb.js';

describe('counter-based random numbers', () => {
  it('Threefry-2x32-20 matches the Random123 known-answer vectors', () => {
    // Known-answer test values from Random123 (kat_vectors: threefry2x32_20).
    expect(threefry2x32(0, 0, 0, 0)).toEqual([0x6b200159, 0x99ba4efe]);
    expect(threefry2x32(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff)).toEqual([0x1cb996fc, 0xbb002be7]);
    expect(threefry2x32(0x13198a2e, 0x03707344, 0x243f6a88, 0x85a308d3)).toEqual([0xc4923a9c, 0x483df7a0]);
  });

  it('GPU uniform equals the host twin bit for bit', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(2 ** 40), fc.nat(100), fc.integer({ min: 1, max: 3000 }), async (seed, stream, n) => {
        const g = await randomUniform([n], { seed, stream }).toArray();
        for (let i = 0; i < n; i += Math.max(1, Math.floor(n / 50))) expect(g[i]).toBe(Math.fround(uniformAt(seed, stream, i)));
      }),
      { numRuns: 20 },
    );
  });

  it('same seed same bits; other seed or stream differs', async () => {
    const a = await randomNormal([1000], { seed: 7 }).toArray();
    const b = await randomNormal([1000], { seed: 7 }).toArray();
    const c = await randomNormal([1000], { seed: 8 }).toArray();
    const d = await randomNormal([1000], { seed: 7, stream: 1 }).toArray();
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(c));
    expect(Array.from(a)).not.toEqual(Array.from(d));
  });

  it('moments: uniform(-1,3) and normal(2, 0.5) over 200k draws', async () => {
    const n = 200_000;
    const u = (await randomUniform([n], { seed: 1 }, -1, 3).toArray()) as Float32Array;
    const z = (await randomNormal([n], { seed: 2 }, 2, 0.5).toArray()) as Float32Array;
    const mean = (a: Float32Array) => a.reduce((s, v) => s + v, 0) / a.length;
    const vr = (a: Float32Array, m: number) => a.reduce((s, v) => s + (v - m) ** 2, 0) / a.length;
    expect(u.reduce((m: number, v: number) => Math.min(m, v), Infinity)).toBeGreaterThanOrEqual(-1);
    expect(u.reduce((m: number, v: number) => Math.max(m, v), -Infinity)).toBeLessThan(3);
    expect(mean(u)).toBeCloseTo(1, 1);
    expect(vr(u, 1)).toBeCloseTo(16 / 12, 1);
    expect(mean(z)).toBeCloseTo(2, 2);
    expect(Math.sqrt(vr(z, 2))).toBeCloseTo(0.5, 2);
    expect(z.every(Number.isFinite)).toBe(true);
  });

  it('dropout mask keeps 1-p of entries scaled by 1/(1-p)', async () => {
    const m = await dropoutMask([100_000], 0.3, { seed: 3 }).toArray();
    const kept = m.filter((v) => v !== 0);
    expect(kept.length / m.length).toBeCloseTo(0.7, 2);
    expect(kept.every((v) => Math.abs(v - 1 / 0.7) < 1e-6)).toBe(true);
    expect(() => dropoutMask([3], 1, { seed: 1 })).toThrow(/dropout probability 1/);
  });

  it('fused dropout (draw and multiply in one kernel) gives the unfused chain\'s output and gradient bits', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3000 }), fc.constantFrom(0.1, 0.5, 0.9), fc.nat(2 ** 31), fc.nat(1000), async (n, p, seed, offset) => {
        const xs = seededValues(n, seed, -3, 3);
        const run = async (spec: string) => {
          const x = keep(fromArray(xs));
          x.requiresGrad = true;
          let dispatches = 0;
          const y = withKernels(spec, () => {
            queue.startCount();
            const out = F.dropout(x, p, true, { seed, stream: 7, offset });
            dispatches = queue.stopCount().reduce((a, r) => a + r.calls, 0);
            return out;
          });
          const yv = Array.from(new Uint32Array((await y.toArray()).buffer));
          backward(F.sum(y));
          const gv = Array.from(new Uint32Array((await x.grad!.toArray()).buffer));
          y.dispose();
          x.dispose();
          return { yv, gv, dispatches };
        };
        const fused = await run('fused.dropout:fused');
        const unfused = await run('fused.dropout:unfused');
        expect(fused.yv).toEqual(unfused.yv);
        expect(fused.gv).toEqual(unfused.gv);
        expect([fused.dispatches, unfused.dispatches]).toEqual([1, 2]);
      }),
      { numRuns: 15 },
    );
  });

  it('host shuffle is a seeded permutation', () => {
    const a = new HostRandom(5).shuffle([...Array(50).keys()]);
    const b = new HostRandom(5).shuffle([...Array(50).keys()]);
    expect(a).toEqual(b);
    expect([...a].sort((x, y) => x - y)).toEqual([...Array(50).keys()]);
  });
});

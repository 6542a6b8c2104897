import { describe, expect, it } from 'vitest';
import { binary, fromArray, keep, pool, queue, tidy, unary, sizeClass, fill, empty } from '../../src/tensor/index.js';

describe('deterministic memory release', () => {
  it('1,000 ops inside scopes do not grow pool memory', async () => {
    const a = fromArray(new Float32Array(1000).fill(1), [10, 100]);
    const b = fromArray(new Float32Array(100).fill(2), [100]);
    // Warm up: first iterations create the buffers the loop will reuse.
    for (let i = 0; i < 5; i++) tidy(() => void unary('exp', binary('mul', a, b)));
    await queue.sync();
    const before = pool.stats();
    for (let i = 0; i < 1000; i++) tidy(() => void unary('exp', binary('mul', a, b)));
    await queue.sync();
    const after = pool.stats();
    expect(after.allocatedBytes).toBe(before.allocatedBytes);
    expect(after.inUseBytes).toBe(before.inUseBytes);
    expect(after.reuses - before.reuses).toBeGreaterThanOrEqual(2000);
  });

  it('tidy keeps returned tensors (nested in objects) and keep()s; disposes the rest', async () => {
    let inner: ReturnType<typeof fill> | null = null;
    let kept: ReturnType<typeof fill> | null = null;
    const out = tidy(() => {
      inner = fill([4], 1);
      kept = keep(fill([4], 3));
      return { r: [fill([4], 2)] };
    });
    expect(inner!.disposed).toBe(true);
    expect(kept!.disposed).toBe(false);
    expect(Array.from(await out.r[0].toArray())).toEqual([2, 2, 2, 2]);
    expect(() => inner!.shape && unary('neg', inner!)).toThrow(/used after dispose/);
  });

  it('a tensor used by a pending dispatch is not reused for a host upload in the same batch', async () => {
    // x is written by a pending kernel, then released; an upload must not land in its buffer before
    // that kernel runs.
    const src = fill([64], 5);
    const x = unary('neg', src);
    const xbuf = x.buf.buffer;
    x.dispose();
    const up = fromArray(new Float32Array(64).fill(9));
    expect(up.buf.buffer).not.toBe(xbuf);
    expect((await up.toArray()).every((v) => v === 9)).toBe(true);
  });

  it('size classes bound waste by a third', () => {
    for (let b = 1; b < 1 << 22; b = Math.ceil(b * 1.37) + 1) {
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(b);
      if (b > 256) expect(c / b).toBeLessThanOrEqual(1.5);
    }
    expect(empty([0]).size).toBe(0);
  });
});

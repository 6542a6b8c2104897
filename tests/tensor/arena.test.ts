// Arenas (tensor/arena.ts): views of one buffer behave as tensors of their own for kernels, readback
// and uploads, keep their arena alive, and share its upload hazard.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromArray, queue } from '../../src/tensor/index.js';
import { pool } from '../../src/tensor/pool.js';
import { Arena, arenaAlign, arenaLayout } from '../../src/tensor/arena.js';
import { writeTensor } from '../../src/tensor/io.js';
import { binary } from '../../src/tensor/ops/map.js';
import { seededValues } from '../ref/arb.js';

describe('arenas', () => {
  it('views at aligned offsets read, write and feed kernels like tensors of their own', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 6 }), fc.nat(1000), async (sizes, seed) => {
        const { offsets, total } = arenaLayout(sizes);
        offsets.forEach((o, i) => {
          expect(o % arenaAlign()).toBe(0);
          if (i > 0) expect(o).toBeGreaterThanOrEqual(offsets[i - 1] + sizes[i - 1]);
        });
        const a = new Arena(total);
        const views = sizes.map((n, i) => a.view(offsets[i], [n]));
        const host = sizes.map((n, i) => seededValues(n, seed + i));
        views.forEach((v, i) => writeTensor(v, host[i]));
        // A kernel reads one view and writes another (different ranges of the same buffer).
        const sums = views.map((v, i) => binary('add', v, fromArray(host[i])));
        for (let i = 0; i < views.length; i++) {
          expect(Array.from(await views[i].toArray())).toEqual(Array.from(host[i]));
          expect(Array.from(await sums[i].toArray())).toEqual(Array.from(host[i], (x) => Math.fround(x + x)));
          expect(a.offsetOf(views[i])).toBe(offsets[i]);
        }
        // The padding between views stays zero.
        const whole = a.view(0, [total]);
        const all = await whole.toArray();
        const covered = new Set(views.flatMap((_, i) => Array.from({ length: sizes[i] }, (_, k) => offsets[i] + k)));
        for (let k = 0; k < total; k++) if (!covered.has(k)) expect(all[k]).toBe(0);
        for (const t of [...views, ...sums, whole]) t.dispose();
        a.release();
      }),
      { numRuns: 15 },
    );
  });

  it('adopt moves a tensor in keeping its identity; the buffer returns to the pool when owner and views let go', async () => {
    const before = pool.stats().inUseBytes;
    const a = new Arena(3 * arenaAlign());
    const t = fromArray([1, 2, 3], [3]);
    const id = t.id;
    a.adopt(t, arenaAlign());
    expect(t.id).toBe(id);
    expect(a.holds(t)).toBe(true);
    expect(Array.from(await t.toArray())).toEqual([1, 2, 3]);
    a.release();
    // The adopted tensor still holds the arena.
    expect(Array.from(await t.toArray())).toEqual([1, 2, 3]);
    t.dispose();
    await queue.sync();
    expect(pool.stats().inUseBytes).toBe(before);
  });

  it('an upload into a view waits for recorded work on any range of the arena', async () => {
    const a = new Arena(2 * arenaAlign());
    const v0 = a.view(0, [4]);
    const v1 = a.view(arenaAlign(), [4]);
    writeTensor(v0, Float32Array.from([1, 2, 3, 4]));
    await queue.sync();
    // Recorded, not submitted: reads v0 (the arena's buffer) into a new tensor.
    const copy = binary('add', v0, fromArray([0, 0, 0, 0]));
    const batch = queue.batch;
    // writeTensor on the other view must submit that work first (shared lastBatch), or the upload
    // would run before it; either way v0 is untouched, and the batch advanced.
    writeTensor(v1, Float32Array.from([5, 6, 7, 8]));
    expect(queue.batch).toBeGreaterThan(batch);
    expect(Array.from(await copy.toArray())).toEqual([1, 2, 3, 4]);
    expect(Array.from(await v1.toArray())).toEqual([5, 6, 7, 8]);
    for (const t of [v0, v1, copy]) t.dispose();
    a.release();
  });
});

// Bytes moved and dispatches (queue.startCount): for small op sequences the counted rows equal what
// the bindings hold, computed by hand: read-only bindings as read, read_write ones as written, the
// tensor's own bytes (not the pool's size class), nothing for an unused placeholder or the uniforms.
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { binary, fromArray, initDevice, matmul, queue, tidy, unary } from '../../src/tensor/index.js';
import { withLayer, withPhase } from '../../src/tensor/trace.js';
import { seededValues } from '../ref/arb.js';

beforeAll(async () => {
  await initDevice();
});

describe('queue.startCount', () => {
  it('counts the bytes of add (broadcast), relu and matmul + bias as computed by hand', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 40 }), async (m, n, k) => {
        const a = fromArray(seededValues(m * n, 1), [m, n]);
        const b = fromArray(seededValues(n, 2), [n]);
        const w = fromArray(seededValues(n * k, 3), [n, k]);
        const bias = fromArray(seededValues(k, 4), [k]);
        queue.startCount();
        expect(queue.counting).toBe(true);
        tidy(() =>
          withLayer('blk', () => {
            const h = unary('relu', binary('add', a, b));
            withPhase('input-grad', () => matmul(h, w, { bias }));
          }),
        );
        const rows = queue.stopCount();
        expect(queue.counting).toBe(false);
        await queue.sync();
        [a, b, w, bias].forEach((t) => t.dispose());
        expect(rows.map((r) => [r.layer, r.phase, r.op, r.calls])).toEqual([
          ['blk', 'forward', rows[0].op, 1],
          ['blk', 'forward', rows[1].op, 1],
          ['blk', 'input-grad', 'matmul', 1],
        ]);
        const f = 4;
        // add: a and b read, the sum written.
        expect([rows[0].bytesRead, rows[0].bytesWritten]).toEqual([f * (m * n + n), f * m * n]);
        // relu: one read, one write of the same size.
        expect([rows[1].bytesRead, rows[1].bytesWritten]).toEqual([f * m * n, f * m * n]);
        // matmul: A, B and the bias read (the unused C input is a placeholder: 0 bytes), the product written.
        expect([rows[2].bytesRead, rows[2].bytesWritten]).toEqual([f * (m * n + n * k + k), f * m * k]);
        expect(rows[2].flops).toBe(2 * m * n * k);
      }),
      { numRuns: 12 },
    );
  });

  it('sums repeated dispatches of one row, and the timestamp profile carries the same bytes', async () => {
    const a = fromArray(seededValues(300, 5), [300]);
    const run = () => tidy(() => { unary('relu', unary('relu', a)); });
    queue.startCount();
    run();
    run();
    const counted = queue.stopCount();
    expect(counted).toHaveLength(1);
    expect(counted[0]).toMatchObject({ calls: 4, bytesRead: 4 * 4 * 300, bytesWritten: 4 * 4 * 300 });
    queue.startProfile();
    run();
    run();
    const timed = await queue.stopProfileRows();
    expect(timed.map((r) => [r.calls, r.bytesRead, r.bytesWritten])).toEqual([[4, 4800, 4800]]);
    a.dispose();
  });

  it('stopCount without startCount is refused', () => {
    expect(() => queue.stopCount()).toThrow(/stopCount\(\) without startCount\(\)/);
  });
});

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Dataset, Sample } from "../../src/data/datasets.js";
import { UnreadableImageError } from "../../src/data/image.js";
import { DataLoader, type Batch } from "../../src/data/loader.js";

/** In-memory dataset: pixel (c, y, x) of sample i = i*1000 + c*100 + y*10 + x, so rows are recognisable. */
class FakeDataset implements Dataset {
  readonly name = "fake";
  active = 0;
  maxActive = 0;
  constructor(readonly n: number, readonly size = 3, private readonly bad: ReadonlySet<number> = new Set(),
              private readonly broken: ReadonlySet<number> = new Set()) {}
  length(): number {
    return this.n;
  }
  label(i: number): 0 | 1 {
    return (i % 3 === 0 ? 1 : 0) as 0 | 1;
  }
  group(i: number): string {
    return String(i);
  }
  async get(i: number): Promise<Sample> {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    await new Promise((r) => setTimeout(r, (i * 7) % 3));
    this.active--;
    if (this.bad.has(i)) throw new UnreadableImageError(`/data/img${i}.png`, "corrupt");
    if (this.broken.has(i)) throw new TypeError("bug in decoder");
    return { image: FakeDataset.pixels(i, this.size), label: this.label(i) };
  }
  static pixels(i: number, S: number): Float32Array {
    const a = new Float32Array(3 * S * S);
    for (let c = 0; c < 3; c++) for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) a[c * S * S + y * S + x] = i * 1000 + c * 100 + y * 10 + x;
    return a;
  }
}

async function collect(it: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

describe("DataLoader", () => {
  it("visits every index exactly once per epoch, in batches of the right shape", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 12 }), fc.boolean(), fc.boolean(),
        fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 3 }),
        async (n, bs, dropLast, shuffle, seed, prefetch) => {
          const ds = new FakeDataset(n, 2);
          const dl = new DataLoader(ds, { batchSize: bs, dropLast, shuffle, seed, prefetch, concurrency: 3 });
          const batches = await collect(dl.epoch(1));
          expect(batches.length).toBe(dl.numBatches());
          const seen: number[] = [];
          batches.forEach((b, k) => {
            expect(b.batch).toBe(k);
            expect(b.shape).toEqual([b.n, 3, 2, 2]);
            expect(b.x.length).toBe(b.n * 12);
            expect(b.y.length).toBe(b.n);
            if (k < batches.length - 1 || dropLast) expect(b.n).toBe(bs);
            for (let r = 0; r < b.n; r++) {
              const i = b.indices[r];
              seen.push(i);
              expect(b.y[r]).toBe(ds.label(i));
              expect(b.x[r * 12]).toBe(i * 1000);
            }
          });
          const expected = dropLast ? Math.floor(n / bs) * bs : n;
          expect(seen.length).toBe(expected);
          expect(new Set(seen).size).toBe(expected);
          if (!shuffle) expect(seen).toEqual(Array.from({ length: expected }, (_, i) => i));
          expect(ds.maxActive).toBeLessThanOrEqual(3);
        }),
      { numRuns: 40 },
    );
  });

  it("is deterministic for a seed, and reshuffles between epochs", async () => {
    const ds = new FakeDataset(50, 1);
    const order = async (seed: number, epoch: number): Promise<number[]> =>
      (await collect(new DataLoader(ds, { batchSize: 7, seed }).epoch(epoch))).flatMap((b) => Array.from(b.indices));
    const a = await order(3, 0);
    expect(await order(3, 0)).toEqual(a);
    expect(await order(3, 1)).not.toEqual(a);
    expect(await order(4, 0)).not.toEqual(a);
    // Seed s epoch 1 is not seed s+1 epoch 0.
    expect(await order(3, 1)).not.toEqual(await order(4, 0));
    // The async iterator walks epochs 0, 1, ...
    const dl = new DataLoader(ds, { batchSize: 7, seed: 3 });
    expect((await collect(dl)).flatMap((b) => Array.from(b.indices))).toEqual(a);
    expect((await collect(dl)).flatMap((b) => Array.from(b.indices))).toEqual(await order(3, 1));
  });

  it("flips rows horizontally, deterministically, about half the time", async () => {
    const S = 4;
    const ds = new FakeDataset(200, S);
    const dl = new DataLoader(ds, { batchSize: 16, seed: 11, flip: true, prefetch: 3 });
    let flipped = 0;
    for (const b of await collect(dl.epoch(2))) {
      for (let r = 0; r < b.n; r++) {
        const i = b.indices[r];
        const ref = FakeDataset.pixels(i, S);
        const row = b.x.subarray(r * 3 * S * S, (r + 1) * 3 * S * S);
        const f = dl.flipped(2, i);
        for (let c = 0; c < 3; c++) for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) {
          const src = c * S * S + y * S + (f ? S - 1 - x : x);
          if (row[c * S * S + y * S + x] !== ref[src]) throw new Error(`row ${r} sample ${i} wrong at ${c},${y},${x}`);
        }
        flipped += f ? 1 : 0;
      }
    }
    expect(flipped).toBeGreaterThan(70);
    expect(flipped).toBeLessThan(130);
    // Same decision whatever the prefetch depth.
    const again = new DataLoader(ds, { batchSize: 5, seed: 11, flip: true, prefetch: 0 });
    for (let i = 0; i < 200; i++) expect(again.flipped(2, i)).toBe(dl.flipped(2, i));
  });

  it("resumes mid-epoch with the same batches", async () => {
    const ds = new FakeDataset(23, 1);
    const dl = new DataLoader(ds, { batchSize: 4, seed: 5, flip: true });
    const full = await collect(dl.epoch(3));
    const tail = await collect(dl.epoch(3, 2));
    expect(tail.map((b) => b.batch)).toEqual([2, 3, 4, 5]);
    expect(tail.map((b) => Array.from(b.x))).toEqual(full.slice(2).map((b) => Array.from(b.x)));
  });

  it("normalises per channel", async () => {
    const ds = new FakeDataset(2, 1);
    const dl = new DataLoader(ds, { batchSize: 2, shuffle: false, normalize: { mean: [1, 2, 3], std: [2, 4, 8] } });
    const [b] = await collect(dl.epoch(0));
    expect(Array.from(b.x)).toEqual([(0 - 1) / 2, (100 - 2) / 4, (200 - 3) / 8, (1000 - 1) / 2, (1100 - 2) / 4, (1200 - 3) / 8]);
  });

  it("skips unreadable samples with one warning per file and counts them per epoch", async () => {
    const ds = new FakeDataset(20, 1, new Set([3, 4, 17]));
    const warnings: string[] = [];
    const dl = new DataLoader(ds, { batchSize: 4, seed: 1, warn: (m) => warnings.push(m) });
    const seen = (await collect(dl.epoch(0))).flatMap((b) => Array.from(b.indices));
    expect(seen.length).toBe(17);
    expect(seen).not.toContain(3);
    expect(dl.skipped).toBe(3);
    // one warning per file, then the epoch's count
    expect(warnings.length).toBe(4);
    expect(warnings.some((w) => w.includes("/data/img17.png"))).toBe(true);
    expect(warnings[3]).toMatch(/epoch 0: skipped 3 unreadable of 20/);
    await collect(dl.epoch(1));
    expect(dl.skipped).toBe(3);
    expect(dl.skippedTotal).toBe(6);
    expect(warnings.length).toBe(5);
    expect(warnings[4]).toMatch(/epoch 1: skipped 3/);
  });

  it("propagates programming errors instead of skipping them", async () => {
    const ds = new FakeDataset(10, 1, new Set(), new Set([6]));
    const dl = new DataLoader(ds, { batchSize: 3, shuffle: false, prefetch: 2 });
    await expect(collect(dl.epoch(0))).rejects.toThrow(/bug in decoder/);
  });

  it("rejects bad options", () => {
    const ds = new FakeDataset(2, 1);
    expect(() => new DataLoader(ds, { batchSize: 0 })).toThrow(/batchSize/);
    expect(() => new DataLoader(ds, { batchSize: 1, flip: 2 })).toThrow(/flip/);
    expect(() => new DataLoader(ds, { batchSize: 1, normalize: { mean: [0, 0, 0], std: [1, 0, 1] } })).toThrow(/std/);
  });
});

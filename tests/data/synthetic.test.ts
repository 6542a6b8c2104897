import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { openDataset } from "../../src/data/datasets.js";
import { hashKey } from "../../src/data/random.js";
import { renderSample, SyntheticDeepfakes } from "../../src/data/synthetic.js";

const sameBits = (a: Float32Array, b: Float32Array): boolean =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe("SyntheticDeepfakes", () => {
  it("is deterministic per (seed, split, index), whatever the generation order", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 }), fc.array(fc.integer({ min: 0, max: 39 }), { minLength: 2, maxLength: 6 }), (seed, order) => {
        const a = new SyntheticDeepfakes({ seed, size: 16, count: { train: 40 } });
        const b = new SyntheticDeepfakes({ seed, size: 16, count: { train: 40 } });
        const first = order.map((i) => a.sample("train", i));
        // b renders in reverse order, after rendering unrelated samples
        b.sample("val", 3);
        const second = [...order].reverse().map((i) => b.sample("train", i)).reverse();
        first.forEach((s, k) => {
          expect(sameBits(s.image, second[k].image)).toBe(true);
          expect(sameBits(s.mask, second[k].mask)).toBe(true);
          expect(s.label).toBe(second[k].label);
        });
      }),
      { numRuns: 8 },
    );
  });

  it("differs between seeds, splits and indices", () => {
    const a = new SyntheticDeepfakes({ seed: 1, size: 16 });
    const b = new SyntheticDeepfakes({ seed: 2, size: 16 });
    expect(sameBits(a.sample("train", 0).image, b.sample("train", 0).image)).toBe(false);
    expect(sameBits(a.sample("train", 0).image, a.sample("val", 0).image)).toBe(false);
    expect(sameBits(a.sample("train", 0).image, a.sample("train", 2).image)).toBe(false);
  });

  it("has balanced labels and masks only on fakes", () => {
    const g = new SyntheticDeepfakes({ seed: 7, size: 24, count: { train: 40, val: 10, test: 12 } });
    for (const split of ["train", "val", "test"] as const) {
      let fakes = 0;
      for (let i = 0; i < g.length(split); i++) {
        const s = g.sample(split, i);
        expect(s.image.length).toBe(3 * 24 * 24);
        expect(s.mask.length).toBe(24 * 24);
        expect(s.label).toBe(g.label(split, i));
        expect(s.image.every((v) => v >= 0 && v <= 1)).toBe(true);
        const maskSum = s.mask.reduce((x, y) => x + y, 0);
        if (s.label === 1) {
          fakes++;
          expect(maskSum).toBeGreaterThan(24 * 24 * 0.05);
          expect(s.mask.every((v) => v >= 0 && v <= 1)).toBe(true);
        } else {
          expect(maskSum).toBe(0);
        }
      }
      expect(fakes).toBe(g.length(split) / 2);
    }
  });

  it("a fake differs from its own un-swapped scene inside the mask, not outside it", () => {
    // renderSample with label 0 and the same key renders the fake's target scene and camera without the swap.
    let strongerAtLowDifficulty = 0;
    const N = 12;
    for (let i = 0; i < N; i++) {
      const key = hashKey(3, 1, 2 * i + 1);
      const diffs = [0, 1].map((d) => {
        const fake = renderSample(key, 1, 32, d);
        const real = renderSample(key, 0, 32, d);
        const n = 32 * 32;
        let inside = 0, nIn = 0, outside = 0, nOut = 0;
        for (let p = 0; p < n; p++) {
          let diff = 0;
          for (let c = 0; c < 3; c++) diff += Math.abs(fake.image[c * n + p] - real.image[c * n + p]);
          if (fake.mask[p] > 0.5) { inside += diff; nIn++; }
          else if (fake.mask[p] === 0) { outside += diff; nOut++; }
        }
        expect(nIn).toBeGreaterThan(20);
        return { inside: inside / nIn, outside: outside / nOut };
      });
      for (const d of diffs) {
        expect(d.inside).toBeGreaterThan(0.02);
        expect(d.inside).toBeGreaterThan(5 * d.outside);
      }
      if (diffs[0].inside > diffs[1].inside) strongerAtLowDifficulty++;
    }
    expect(strongerAtLowDifficulty).toBeGreaterThanOrEqual(N * 0.75);
  });

  it("renders the same face at different sizes", () => {
    const g = new SyntheticDeepfakes({ seed: 5, size: 64 });
    const big = g.sample("train", 4, 64).image;
    const small = g.sample("train", 4, 16).image;
    // Downscale the big one by block averaging and compare coarse structure.
    let err = 0;
    for (let c = 0; c < 3; c++) for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
      let s = 0;
      for (let dy = 0; dy < 4; dy++) for (let dx = 0; dx < 4; dx++) s += big[c * 4096 + (4 * y + dy) * 64 + 4 * x + dx];
      err += Math.abs(s / 16 - small[c * 256 + y * 16 + x]);
    }
    expect(err / (3 * 256)).toBeLessThan(0.06);
  });

  it("rejects bad options and indices", () => {
    expect(() => new SyntheticDeepfakes({ difficulty: 1.5 })).toThrow(/difficulty/);
    expect(() => new SyntheticDeepfakes({ size: 3 })).toThrow(/size/);
    const g = new SyntheticDeepfakes({ count: { train: 4 } });
    expect(() => g.sample("train", 4)).toThrow(RangeError);
  });

  it("writes an image folder that openDataset reads back with the same labels", async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), "ticketlab-synth-"));
    try {
      const g = new SyntheticDeepfakes({ seed: 9, size: 16, count: { train: 6, val: 2, test: 2 } });
      const { written } = await g.writeImageFolder(root);
      expect(written).toBe(10);
      expect((await fs.readdir(path.join(root, "train", "fake"))).sort()).toEqual(["00001.png", "00003.png", "00005.png"]);
      const ds = await openDataset(root, { size: 16, warn: () => undefined });
      expect(ds.layout).toBe("image-folder");
      expect(ds.train.length()).toBe(6);
      for (let i = 0; i < ds.train.length(); i++) {
        const s = await ds.train.get(i);
        const idx = Number(path.basename(s.path ?? "").slice(0, 5));
        expect(s.label).toBe(g.label("train", idx));
        // PNG stores 8 bits: decoded image equals the rendered one up to rounding.
        const ref = g.sample("train", idx).image;
        expect(ref.every((v, k) => Math.abs(v - s.image[k]) <= 0.5 / 255 + 1e-6)).toBe(true);
      }
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});

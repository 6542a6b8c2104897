import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  chwToRgb, cropImage, cropRect, decodeImage, decodeImageBuffer, decodeToBytes, encodePng, resizePlanar, resizeRgb, rgbToCHW,
  toCHWBytes, toCHWFloat, UnreadableImageError, writeFileAtomic, writePng, type RgbImage,
} from "../../src/data/image.js";

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "ticketlab-image-"));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const arbImage = fc
  .record({ width: fc.integer({ min: 1, max: 9 }), height: fc.integer({ min: 1, max: 9 }) })
  .chain(({ width, height }) =>
    fc.uint8Array({ minLength: width * height * 3, maxLength: width * height * 3 }).map(
      (data): RgbImage => ({ width, height, channels: 3, data }),
    ));

describe("PNG codec", () => {
  it("round-trips any RGB image bit-exactly", async () => {
    await fc.assert(
      fc.asyncProperty(arbImage, async (img) => {
        const back = await decodeImageBuffer(await encodePng(img));
        expect(back.width).toBe(img.width);
        expect(back.height).toBe(img.height);
        expect(Buffer.from(back.data).equals(Buffer.from(img.data))).toBe(true);
      }),
      { numRuns: 25 },
    );
  });

  it("writes atomically and reads back from disk", async () => {
    const img: RgbImage = { width: 3, height: 2, channels: 3, data: Uint8Array.from({ length: 18 }, (_, i) => i * 14) };
    const file = path.join(dir, "sub", "a.png");
    await writePng(file, img);
    const back = await decodeImage(file);
    expect(Array.from(back.data)).toEqual(Array.from(img.data));
    const left = (await fs.readdir(path.dirname(file))).filter((f) => f.includes(".tmp-"));
    expect(left).toEqual([]);
  });

  it("concurrent atomic writes to one path leave one whole file", async () => {
    const file = path.join(dir, "race.bin");
    const payloads = Array.from({ length: 8 }, (_, k) => new Uint8Array(50_000).fill(k));
    await Promise.all(payloads.map((p) => writeFileAtomic(file, p)));
    const got = await fs.readFile(file);
    expect(got.length).toBe(50_000);
    expect(got.every((b) => b === got[0])).toBe(true);
  });

  it("decodes gray, RGBA and JPEG inputs to 3-channel RGB", async () => {
    const gray = await sharp(Buffer.from([0, 128, 255, 64]), { raw: { width: 2, height: 2, channels: 1 } }).png().toBuffer();
    const g = await decodeImageBuffer(gray);
    expect(g.channels).toBe(3);
    expect(Array.from(g.data.subarray(0, 6))).toEqual([0, 0, 0, 128, 128, 128]);
    const rgba = await sharp(Buffer.from([10, 20, 30, 0, 40, 50, 60, 255]), { raw: { width: 2, height: 1, channels: 4 } }).png().toBuffer();
    const a = await decodeImageBuffer(rgba);
    expect(Array.from(a.data)).toEqual([10, 20, 30, 40, 50, 60]); // alpha dropped, not composited
    const jpg = await sharp({ create: { width: 16, height: 8, channels: 3, background: { r: 200, g: 100, b: 50 } } }).jpeg({ quality: 95 }).toBuffer();
    const j = await decodeImageBuffer(jpg);
    expect([j.width, j.height]).toEqual([16, 8]);
    expect(Math.abs(j.data[0] - 200)).toBeLessThan(4);
  });
});

describe("unreadable files", () => {
  it("name the path in a one-line error", async () => {
    const garbage = path.join(dir, "garbage.jpg");
    await fs.writeFile(garbage, Buffer.from("this is not an image at all"));
    const png = await encodePng({ width: 32, height: 32, channels: 3, data: new Uint8Array(32 * 32 * 3).fill(7) });
    const truncated = path.join(dir, "truncated.png");
    await fs.writeFile(truncated, png.subarray(0, Math.floor(png.length / 2)));
    const jpg = await sharp({ create: { width: 64, height: 64, channels: 3, background: "#808080" } }).jpeg().toBuffer();
    const truncJpg = path.join(dir, "truncated.jpg");
    await fs.writeFile(truncJpg, jpg.subarray(0, Math.floor(jpg.length * 0.6)));
    const missing = path.join(dir, "missing.png");
    for (const f of [garbage, truncated, truncJpg, missing]) {
      const err = await decodeImage(f).then(() => null, (e: unknown) => e);
      expect(err, f).toBeInstanceOf(UnreadableImageError);
      const msg = (err as Error).message;
      expect(msg).toContain(f);
      expect(msg.includes("\n")).toBe(false);
      expect((err as UnreadableImageError).path).toBe(f);
    }
  });
});

describe("resampling", () => {
  it("keeps constant images constant at any size", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 20 }), fc.float({ min: 0, max: 1, noNaN: true }),
        (h, w, oh, ow, v) => {
          const out = resizePlanar(new Float32Array(3 * h * w).fill(v), 3, h, w, oh, ow);
          expect(out.length).toBe(3 * oh * ow);
          for (const o of out) expect(Math.abs(o - v)).toBeLessThan(1e-5);
        }),
      { numRuns: 60 },
    );
  });

  it("averages when shrinking by an integer factor (antialiasing, no aliasing of stripes)", () => {
    // 1-pixel vertical stripes 0/1: a point-sampling resize would return all 0 or all 1.
    const S = 32;
    const src = new Float32Array(S * S);
    for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) src[y * S + x] = x & 1;
    const out = resizePlanar(src, 1, S, S, 8, 8);
    for (const v of out) expect(Math.abs(v - 0.5)).toBeLessThan(0.05);
  });

  it("is the identity at the same size and agrees with toCHWFloat", () => {
    const img: RgbImage = { width: 4, height: 4, channels: 3, data: Uint8Array.from({ length: 48 }, (_, i) => (i * 37) % 256) };
    const chw = rgbToCHW(img);
    expect(toCHWFloat(img, 4)).toEqual(chw);
    expect(chwToRgb(chw, 4, 4).data).toEqual(img.data);
    expect(resizeRgb(img, 4, 4)).toBe(img);
    expect(toCHWFloat(img, 2).length).toBe(12);
    // CHW order: first plane is red.
    expect(chw[0]).toBeCloseTo(img.data[0] / 255, 6);
    expect(chw[16]).toBeCloseTo(img.data[1] / 255, 6);
  });

  it("crops rectangles and rejects ones outside the image", () => {
    const img: RgbImage = { width: 5, height: 4, channels: 3, data: Uint8Array.from({ length: 60 }, (_, i) => i) };
    const c = cropImage(img, { left: 1, top: 2, width: 3, height: 2 });
    expect(c.width).toBe(3);
    expect(Array.from(c.data.subarray(0, 3))).toEqual([(2 * 5 + 1) * 3, (2 * 5 + 1) * 3 + 1, (2 * 5 + 1) * 3 + 2]);
    expect(() => cropImage(img, { left: 3, top: 0, width: 3, height: 1 })).toThrow(/outside/);
  });
});

/** Deterministic noise image (an LCG), so a failing case can be rebuilt from its seed. */
function noise(width: number, height: number, seed: number): RgbImage {
  let st = seed >>> 0;
  const data = new Uint8Array(width * height * 3).map(() => (st = (Math.imul(st, 1664525) + 1013904223) >>> 0) >>> 24);
  return { width, height, channels: 3, data };
}

/**
 * Float64 reference of the antialiased triangle filter (PIL's BILINEAR, torchvision's antialias=True),
 * written from its definition: a tap at source pixel j for output i has weight max(0, 1 - |j + 0.5 -
 * c| / s) with c = (i + 0.5) * in/out and s = max(in/out, 1), over the window PIL takes, normalised.
 */
function referenceResize(img: RgbImage, size: number): Float64Array {
  const weights = (inSize: number, i: number): Array<[number, number]> => {
    const scale = inSize / size, s = Math.max(scale, 1), c = (i + 0.5) * scale;
    const lo = Math.max(0, Math.floor(c - s + 0.5)), hi = Math.min(inSize, Math.floor(c + s + 0.5));
    const taps: Array<[number, number]> = [];
    for (let j = lo; j < hi; j++) taps.push([j, Math.max(0, 1 - Math.abs(j + 0.5 - c) / s)]);
    const total = taps.reduce((a, [, w]) => a + w, 0);
    return taps.map(([j, w]) => [j, total > 0 ? w / total : 1 / taps.length]);
  };
  const out = new Float64Array(3 * size * size);
  for (let y = 0; y < size; y++) {
    const wy = weights(img.height, y);
    for (let x = 0; x < size; x++) {
      const wx = weights(img.width, x);
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (const [sy, a] of wy) for (const [sx, b] of wx) acc += a * b * img.data[(sy * img.width + sx) * 3 + c];
        out[c * size * size + y * size + x] = acc;
      }
    }
  }
  return out;
}

describe("toCHWBytes (the model's input as bytes)", () => {
  it("is the planar float resize rounded to bytes, bit for bit, at large shrink factors too", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 160 }), fc.integer({ min: 1, max: 160 }), fc.integer({ min: 1, max: 48 }), fc.nat(),
        (w, h, size, seed) => {
          const img = noise(w, h, seed);
          const got = toCHWBytes(img, size);
          const ref = chwToRgb(toCHWFloat(img, size), size, size).data;
          const n = size * size;
          for (let p = 0; p < n; p++) for (let c = 0; c < 3; c++) expect(got[c * n + p]).toBe(ref[3 * p + c]);
        }),
      { numRuns: 40 },
    );
  });

  it("is within one grey level of a float64 evaluation of the filter, shrinking and enlarging", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 40 }), fc.nat(),
        (w, h, size, seed) => {
          const img = noise(w, h, seed);
          const got = toCHWBytes(img, size);
          const ref = referenceResize(img, size);
          for (let k = 0; k < got.length; k++) expect(Math.abs(got[k] - ref[k])).toBeLessThanOrEqual(1);
        }),
      { numRuns: 30 },
    );
  });

  it("resizes a region as it resizes that region copied out, and writes into a given buffer", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 60 }), fc.integer({ min: 1, max: 60 }), fc.integer({ min: 1, max: 24 }), fc.nat(),
        fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }),
        (w, h, size, seed, fl, ft, fw, fh) => {
          const img = noise(w, h, seed);
          const left = Math.floor(fl * (w - 1)), top = Math.floor(ft * (h - 1));
          const r = { left, top, width: 1 + Math.floor(fw * (w - left - 1)), height: 1 + Math.floor(fh * (h - top - 1)) };
          const out = new Uint8Array(3 * size * size + 5).fill(9);
          toCHWBytes(img, size, out.subarray(2), r);
          expect(Array.from(out.subarray(2, 2 + 3 * size * size))).toEqual(Array.from(toCHWBytes(cropImage(img, r), size)));
          expect([out[0], out[1], out[out.length - 1]]).toEqual([9, 9, 9]);
        }),
      { numRuns: 60 },
    );
    expect(() => toCHWBytes(noise(4, 4, 1), 2, undefined, { left: 3, top: 0, width: 2, height: 1 })).toThrow(/outside/);
    expect(() => toCHWBytes(noise(4, 4, 1), 2, new Uint8Array(11))).toThrow(/needs 12/);
  });

  it("decodeToBytes gives each box's crop one after another, or the whole image", async () => {
    const img = noise(50, 40, 7);
    const file = path.join(dir, "boxes.png");
    await writePng(file, img);
    const boxes = [{ box: [5, 6, 10, 12] as [number, number, number, number], scale: 1.3 }, { box: [40, 30, 9, 9] as [number, number, number, number], scale: 1.6 }];
    const got = await decodeToBytes(file, 8, boxes);
    const per = 3 * 8 * 8;
    expect(got.length).toBe(2 * per);
    boxes.forEach((b, k) => {
      const r = cropRect(b.box, img.width, img.height, b.scale);
      expect(Array.from(got.subarray(k * per, (k + 1) * per))).toEqual(Array.from(toCHWBytes(cropImage(img, r), 8)));
    });
    expect(Array.from(await decodeToBytes(file, 8))).toEqual(Array.from(toCHWBytes(img, 8)));
  });
});

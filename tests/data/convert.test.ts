// Bytes to the device, floats made there: the convert kernel against a float64 reference and against
// the float path it replaces (same flips from the same seed, same normalisation, same resize numerics).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkUnormKernel, imageBytesToFloat, isUnitTable, unitConvertReady } from '../../src/tensor/ops/convert.js';
import { convertUnormKernel } from '../../src/shaders/convert.js';
import { uploadSlots } from '../../src/tensor/ops/convert-upload.js';
import { queue } from '../../src/tensor/queue.js';
import { plannerRecord, setKernelOverride } from '../../src/tensor/plan.js';
import { conversionTable, DataLoader, IMAGENET_NORMALIZE, pixelsToFloat, type Normalize } from '../../src/data/loader.js';
import { openDataset, type Dataset } from '../../src/data/datasets.js';
import { chwToRgb, toCHWBytes, toCHWFloat, writePng, type RgbImage } from '../../src/data/image.js';
import { batchInput } from '../../src/train/batch-input.js';

const normArb: fc.Arbitrary<Normalize | undefined> = fc.option(
  fc.record({
    mean: fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true })),
    std: fc.tuple(fc.double({ min: 0.05, max: 2, noNaN: true }), fc.double({ min: 0.05, max: 2, noNaN: true }), fc.double({ min: 0.05, max: 2, noNaN: true })),
  }),
  { nil: undefined },
);

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

describe('byte batches converted on the device', () => {
  // Each variant on sides it suits; null: the static rule ('words:4' where the side is a multiple of 16,
  // else 'word' where it is a multiple of 4, else 'element') on any side.
  const anySide = fc.integer({ min: 1, max: 21 });
  const multiple = (m: number, most: number) => fc.integer({ min: 1, max: most }).map((k) => m * k);
  it.each([
    ['element', anySide],
    ['word', multiple(4, 6)],
    ['words:4', multiple(16, 2)],
    ['words:8', fc.constant(32)],
    [null, fc.oneof(anySide, multiple(4, 6), multiple(16, 2))],
  ] as const)('match a float64 reference and the host twin bit for bit, on random shapes, flips and normalisations (%s)', async (variant, sizeArb) => {
    setKernelOverride(variant && `convert:${variant}`);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 5 }), sizeArb, normArb, fc.nat(), async (n, size, norm, seed) => {
        const per = 3 * size * size;
        let s = seed >>> 0;
        const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
        const data = new Uint8Array(Math.ceil((n * per) / 4) * 4).map(() => next() >>> 24);
        const flips = new Uint8Array(n).map(() => next() & 1);
        const table = conversionTable(norm);
        const got = (await imageBytesToFloat(data, flips, table, n, size).toArray()) as Float32Array;
        const host = pixelsToFloat({ data, flips, table }, n, size);
        expect(bits(got)).toEqual(bits(host));
        for (let i = 0; i < n * per; i += Math.max(1, Math.floor((n * per) / 97))) {
          const img = Math.floor(i / per), r = i % per, c = Math.floor(r / (size * size)), x = r % size;
          const src = flips[img] ? i - x + (size - 1 - x) : i;
          const v = data[src] / 255;
          const want = norm ? (v - norm.mean[c]) / norm.std[c] : v;
          expect(Math.abs(got[i] - want)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(want)));
        }
      }),
      { numRuns: 25 },
    ).finally(() => setKernelOverride(null));
    const used = Object.entries(plannerRecord()).filter(([k]) => k.startsWith('convert')).map(([, v]) => v);
    expect(used.some((v) => v.startsWith(variant ?? 'words:4'))).toBe(true);
  });

  // The table-free form: byte / 255 only, and only where this adapter's exhaustive self-check passed.
  it.each([['unorm:1', 1], ['unorm:2', 2], ['unorm:4', 4]] as const)('%s matches a float64 reference and the host twin bit for bit where its self-check passed (plain byte / 255)', async (variant, g) => {
    const sizes = [16 * g, 32 * g, 64];
    const verdicts = await Promise.all(sizes.map((s) => unitConvertReady(s)));
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3 }), fc.constantFrom(...sizes.map((s, i) => [s, verdicts[i]] as const)), fc.nat(), async (n, [size, exact], seed) => {
        let s = seed >>> 0;
        const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
        const data = new Uint8Array(n * 3 * size * size).map(() => next() >>> 24);
        const flips = new Uint8Array(n).map(() => next() & 1);
        const table = conversionTable(undefined);
        // An adapter whose unpack rounds otherwise never gets the variant: the override is refused.
        if (!exact || size % (16 * g) !== 0) {
          setKernelOverride(`convert:${variant}`);
          try {
            expect(() => imageBytesToFloat(data, flips, table, n, size)).toThrow(/does not suit convert/);
          } finally {
            setKernelOverride(null);
          }
          return;
        }
        setKernelOverride(`convert:${variant}`);
        const got = (await imageBytesToFloat(data, flips, table, n, size).toArray().finally(() => setKernelOverride(null))) as Float32Array;
        expect(bits(got)).toEqual(bits(pixelsToFloat({ data, flips, table }, n, size)));
        for (let i = 0; i < got.length; i += 37) {
          const img = Math.floor(i / (3 * size * size)), x = i % size;
          expect(got[i]).toBe(Math.fround(data[flips[img] ? i - x + (size - 1 - x) : i] / 255));
        }
      }),
      { numRuns: 12 },
    );
  });

  it('the self-check refuses a table-free kernel that rounds one value differently, and the table stays in use for normalised tables', async () => {
    const size = 16;
    const good = convertUnormKernel(size, 1);
    // Byte 77 of each channel one ulp up: the check must see it among the 2 x 3 x 256 probed values.
    const bad = { ...good, name: 'convert_bytes_unorm_off', code: good.code.replaceAll(/unpack4x8unorm\(([^)]*)\)/g, 'nudge(unpack4x8unorm($1))').replace('@compute', 'fn nudge(v: vec4<f32>) -> vec4<f32> { return select(v, bitcast<vec4<f32>>(bitcast<vec4<u32>>(v) + vec4<u32>(1u)), abs(v - vec4<f32>(77.0 / 255.0)) < vec4<f32>(1e-7)); }\n@compute') };
    expect(await checkUnormKernel(bad, size, 1)).toBe(false);
    // A kernel that converts only the first half of the groups fails too, though the pooled buffers
    // may still hold the right floats of an earlier check.
    expect(await checkUnormKernel(good, size, 1)).toBe(await unitConvertReady(size));
    const half = { ...good, name: 'convert_bytes_unorm_half', code: good.code.replace('if (q >= p.n) { return; }', 'if (q >= p.n / 2u) { return; }') };
    expect(half.code).not.toBe(good.code);
    expect(await checkUnormKernel(half, size, 1)).toBe(false);
    expect(isUnitTable(conversionTable(undefined))).toBe(true);
    expect(isUnitTable(conversionTable(IMAGENET_NORMALIZE))).toBe(false);
    const exact = await unitConvertReady(size);
    expect(await checkUnormKernel(good, size, 1)).toBe(exact);
    // With a normalised table the default is a table kernel whatever the verdict.
    const data = new Uint8Array(3 * size * size).map((_, i) => i & 255);
    await imageBytesToFloat(data, [1], conversionTable(IMAGENET_NORMALIZE), 1, size).toArray();
    await imageBytesToFloat(data, [1], conversionTable(undefined), 1, size).toArray();
    const used = Object.entries(plannerRecord()).filter(([k]) => k.startsWith('convert')).map(([k, v]) => [k.includes(' unit'), v] as const);
    expect(used.some(([unit, v]) => !unit && v === 'words:4')).toBe(true);
    if (exact) expect(used.some(([unit, v]) => unit && v === 'unorm:1')).toBe(true);
  });

  it('byte batches arrive intact through the staging ring: more batches than slots before a submit, growing and shrinking batch sizes, unaligned views', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 1, max: 6 }), fc.boolean()), { minLength: 1, maxLength: 9 }), fc.constantFrom(4, 8, 16), fc.nat(), async (batches, size, seed) => {
        let s = seed >>> 0;
        const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
        const table = conversionTable(undefined);
        // All recorded before one submit (no endStep between): later ones find the ring busy.
        const made = batches.map(([n, offset]) => {
          const raw = new Uint8Array(n * 3 * size * size + 1).map(() => next() >>> 24);
          const data = offset ? raw.subarray(1) : raw.subarray(0, n * 3 * size * size);
          const flips = new Uint8Array(n).map(() => next() & 1);
          return { n, data, flips, t: imageBytesToFloat(data, flips, table, n, size) };
        });
        for (const m of made) {
          const got = (await m.t.toArray()) as Float32Array;
          m.t.dispose();
          expect(bits(got)).toEqual(bits(pixelsToFloat({ data: m.data, flips: m.flips, table }, m.n, size)));
        }
        await queue.endStep();
        expect(uploadSlots()).toBeLessThanOrEqual(5);
      }),
      { numRuns: 15 },
    );
  });

  it('accepts a byte view at an unaligned offset (copied) and refuses short inputs in one line', async () => {
    const buf = new Uint8Array(1 + 3 * 4);
    buf.forEach((_, i) => (buf[i] = i * 20));
    const view = buf.subarray(1);
    const t = conversionTable(undefined);
    const got = await imageBytesToFloat(view, [0], t, 1, 2).toArray();
    expect(Array.from(got)).toEqual(Array.from(view, (v) => Math.fround(v / 255)));
    expect(() => imageBytesToFloat(view, [0], t, 2, 2)).toThrow(/bytes, a 2x3x2x2 batch needs 24/);
  });

  it('toCHWBytes is the float resize rounded to bytes, on random images and sizes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 33 }), fc.nat(), (w, h, size, seed) => {
        let s = seed >>> 0;
        const data = new Uint8Array(w * h * 3).map(() => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 24);
        const img: RgbImage = { width: w, height: h, channels: 3, data };
        const bytes = toCHWBytes(img, size);
        const ref = chwToRgb(toCHWFloat(img, size), size, size).data;
        const n = size * size;
        for (let p = 0; p < n; p++) for (let c = 0; c < 3; c++) expect(bytes[c * n + p]).toBe(ref[3 * p + c]);
      }),
      { numRuns: 60 },
    );
  });

  it('an image folder gives the same input tensor through bytes as through the float path (flips, ImageNet normalisation)', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-convert-'));
    try {
      let k = 0;
      for (const split of ['train', 'val', 'test']) {
        for (const cls of ['real', 'fake']) {
          for (let i = 0; i < 5; i++, k++) {
            const w = 20 + k, h = 17 + 2 * k;
            await writePng(path.join(root, split, cls, `img_${i}.png`), { width: w, height: h, channels: 3, data: new Uint8Array(w * h * 3).map((_, j) => (j * 31 + k * 7) % 256) });
          }
        }
      }
      const d = await openDataset(root, { size: 13, decodedCache: false });
      // The float path: a dataset that only offers get() (floats), so the loader takes its float branch.
      const floats: Dataset = { name: d.train.name, size: d.train.size, length: () => d.train.length(), label: (i) => d.train.label(i), group: (i) => d.train.group(i), get: (i) => d.train.get(i) };
      for (const norm of [undefined, IMAGENET_NORMALIZE]) {
        const opts = { batchSize: 4, seed: 11, flip: true, normalize: norm };
        const a = [...(await collect(new DataLoader(d.train, opts).epoch(2)))];
        const b = [...(await collect(new DataLoader(floats, opts).epoch(2)))];
        expect(a.length).toBe(b.length);
        let flipped = 0;
        for (let j = 0; j < a.length; j++) {
          expect(a[j].pixels).toBeDefined();
          expect(b[j].pixels).toBeUndefined();
          expect(Array.from(a[j].indices)).toEqual(Array.from(b[j].indices));
          flipped += a[j].pixels!.flips.reduce((s, f) => s + f, 0);
          // The host twin first: batchInput hands the batch's bytes back to the loader.
          expect(bits(a[j].x)).toEqual(bits(b[j].x));
          const dev = (await batchInput(a[j]).toArray()) as Float32Array;
          expect(bits(dev)).toEqual(bits(b[j].x));
        }
        expect(flipped).toBeGreaterThan(0);
      }
      // Recycled byte arrays: a later batch of the epoch fills the array an earlier one handed back, and
      // every batch's tensor still equals its float-path twin; a recycled batch's x is refused in one line.
      const opts = { batchSize: 3, seed: 5, flip: true, normalize: IMAGENET_NORMALIZE, prefetch: 0 };
      const twins = await collect(new DataLoader(floats, opts).epoch(1));
      const seen = new Set<Uint8Array>();
      let reused = 0;
      let j = 0;
      for await (const bt of new DataLoader(d.train, opts).epoch(1)) {
        const data = bt.pixels!.data;
        if (seen.has(data)) reused++;
        seen.add(data);
        const dev = (await batchInput(bt).toArray()) as Float32Array;
        expect(bits(dev)).toEqual(bits(twins[j++].x));
        expect(() => bt.x).toThrow(/its bytes went back to the loader after their upload \(batchInput\); read Batch.x before batchInput/);
      }
      expect(j).toBe(twins.length);
      expect(reused).toBeGreaterThan(0);
      // And each sample's floats are the resized image rounded to bytes, / 255.
      const s0 = await d.train.get(0);
      expect(Array.from(s0.image)).toEqual(Array.from(s0.pixels!, (v) => Math.fround(v / 255)));
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

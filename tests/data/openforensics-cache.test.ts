// OpenForensics through the decoded cache: a photo is decoded once for all its faces, the faces are
// kept in shards keyed by photo identity, annotation, box, crop mode and scale, later reads (and later
// processes) read the shards, and a changed or deleted photo is never served stale.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cropImage, cropRect, decodeImage, resizeRgb, toCHWBytes, UnreadableImageError, writePng, type RgbImage } from '../../src/data/image.js';
import { openDataset, type DatasetSplits, type FaceCropper, type OpenOptions } from '../../src/data/datasets.js';
import { closeShardCaches, fillDecodedCache, isPixelDataset, type PixelDataset } from '../../src/data/decoded.js';
import { DataLoader } from '../../src/data/loader.js';

const S = 12;
const PER = 3 * S * S;
type Box = [number, number, number, number];
const BOXES: Record<string, Box[]> = { 'a.png': [[10, 8, 14, 16], [40, 20, 12, 12], [60, 40, 18, 15]], 'b.png': [[5, 5, 30, 30], [50, 30, 20, 22]] };

function photo(w: number, h: number, seed: number): RgbImage {
  return { width: w, height: h, channels: 3, data: new Uint8Array(w * h * 3).map((_, j) => (j * 31 + seed * 97 + (j >> 7)) % 256) };
}

function coco(boxes: Record<string, Box[]>): string {
  const names = Object.keys(boxes);
  let id = 0;
  return JSON.stringify({
    images: names.map((n, k) => ({ id: k + 1, file_name: n })),
    annotations: names.flatMap((n, k) => boxes[n].map((b) => ({ id: ++id, image_id: k + 1, category_id: id % 2, bbox: b }))),
    categories: [{ id: 0, name: 'Real' }, { id: 1, name: 'Fake' }],
  });
}

async function release(boxes = BOXES): Promise<string> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-of-cache-'));
  let k = 0;
  for (const n of Object.keys(boxes)) await writePng(path.join(root, 'Images', 'Train', n), photo(90 + 3 * k, 70 + k, k++));
  fs.writeFileSync(path.join(root, 'Train_poly.json'), coco(boxes));
  for (const s of ['Val', 'Test-Dev']) fs.writeFileSync(path.join(root, `${s}_poly.json`), coco({}));
  return root;
}

async function open(root: string, o: OpenOptions = {}, warnings: string[] = []): Promise<DatasetSplits> {
  closeShardCaches();
  return openDataset(root, { size: S, crop: 'box', warn: (m) => void warnings.push(m), ...o });
}

function pixelSet(d: DatasetSplits): PixelDataset {
  if (!isPixelDataset(d.train)) throw new Error('OpenForensics is not a pixel dataset');
  return d.train;
}

/** Every face's bytes through getPixelsInto, then the pending shard written. */
async function readAll(ds: PixelDataset): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let i = 0; i < ds.length(); i++) {
    const px = new Uint8Array(PER);
    await ds.getPixelsInto(i, px, 0);
    out.push(Buffer.from(px));
  }
  await ds.flushCache();
  return out;
}

/** What a face should hold: its photo as it is now, cropped around the box, resized (the PNG path's bytes). */
async function expected(root: string, name: string, box: Box, scale = 1.3): Promise<Buffer> {
  const img = await decodeImage(path.join(root, 'Images', 'Train', name));
  return Buffer.from(toCHWBytes(resizeRgb(cropImage(img, cropRect(box, img.width, img.height, scale)), S, S), S));
}

const faceOrder = (boxes = BOXES): Array<[string, Box]> => Object.keys(boxes).flatMap((n) => boxes[n].map((b) => [n, b] as [string, Box]));

describe('OpenForensics in the decoded cache', () => {
  it('caches every face of a photo in one pass, with the bytes of the PNG crop path, and later processes read the shards', async () => {
    const root = await release();
    try {
      const want = await Promise.all(faceOrder().map(([n, b]) => expected(root, n, b)));
      const off = pixelSet(await open(root, { decodedCache: false }));
      expect(off.cache).toBeNull();
      expect(await readAll(off)).toEqual(want);
      const on = pixelSet(await open(root));
      // The first face of photo a makes all three faces of a; b's are not read yet.
      const px = new Uint8Array(PER);
      await on.getPixelsInto(0, px, 0);
      expect([1, 2].map((i) => on.readCachedInto(i, px, 0))).toEqual([true, true]);
      expect(on.readCachedInto(3, px, 0)).toBe(false);
      expect(await readAll(on)).toEqual(want);
      // A new process: every face a hit, with the same bytes, through the loader too.
      const again = pixelSet(await open(root));
      const hits = again.cache!.hits;
      expect(await readAll(again)).toEqual(want);
      expect(again.cache!.hits - hits).toBe(want.length);
      const loader = new DataLoader(again, { batchSize: 2, seed: 1, flip: false });
      for await (const b of loader.epoch(0)) {
        b.indices.forEach((i, k) => expect(Buffer.from(b.pixels!.data.subarray(k * PER, (k + 1) * PER)).equals(want[i])).toBe(true));
      }
      // get() gives the bytes and their floats.
      const s0 = await again.get(0);
      expect(Buffer.from(s0.pixels!).equals(want[0])).toBe(true);
      expect(Array.from(s0.image)).toEqual(Array.from(s0.pixels!, (v) => Math.fround(v / 255)));
    } finally {
      closeShardCaches();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('keys entries by box, crop scale and crop mode: a changed annotation box misses alone, another scale is another cache', async () => {
    const root = await release();
    try {
      await readAll(pixelSet(await open(root)));
      // Move one box in the annotations: that face alone is decoded afresh, the others are hits.
      const moved = { ...BOXES, 'b.png': [BOXES['b.png'][0], [52, 31, 20, 22] as Box] };
      fs.writeFileSync(path.join(root, 'Train_poly.json'), coco(moved));
      const ds = pixelSet(await open(root));
      const px = new Uint8Array(PER);
      expect(Array.from({ length: ds.length() }, (_, i) => ds.readCachedInto(i, px, 0))).toEqual([true, true, true, true, false]);
      const want = await Promise.all(faceOrder(moved).map(([n, b]) => expected(root, n, b)));
      expect(await readAll(ds)).toEqual(want);
      // Another crop scale: nothing is shared, and the bytes are that scale's crops.
      const wide = pixelSet(await open(root, { openforensics: { cropScale: 1.6 } }));
      expect(Array.from({ length: wide.length() }, (_, i) => wide.readCachedInto(i, px, 0)).some(Boolean)).toBe(false);
      expect(await readAll(wide)).toEqual(await Promise.all(faceOrder(moved).map(([n, b]) => expected(root, n, b, 1.6))));
      expect(fs.readdirSync(path.join(root, '.ticketlab-cache', 'decoded')).length).toBe(2);
    } finally {
      closeShardCaches();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('a photo changed after caching is decoded afresh with a warning naming it; a deleted one is named as deleted', async () => {
    const root = await release();
    try {
      // One process reads a face of photo a, the photo is rewritten, then it reads another face of a:
      // that face comes from the new photo, not from the pass made before the change.
      const first = pixelSet(await open(root));
      const px0 = new Uint8Array(PER);
      await first.getPixelsInto(0, px0, 0);
      const file = path.join(root, 'Images', 'Train', 'a.png');
      await writePng(file, photo(90, 70, 41));
      const later = new Date(Date.now() + 5000);
      fs.utimesSync(file, later, later);
      await first.getPixelsInto(1, px0, 0);
      expect(Buffer.from(px0).equals(await expected(root, 'a.png', BOXES['a.png'][1]))).toBe(true);
      await readAll(first);
      fs.writeFileSync(file, fs.readFileSync(file));
      fs.utimesSync(file, new Date(Date.now() + 9000), new Date(Date.now() + 9000));
      const warnings: string[] = [];
      const ds = pixelSet(await open(root, {}, warnings));
      const px = new Uint8Array(PER);
      expect(Array.from({ length: ds.length() }, (_, i) => ds.readCachedInto(i, px, 0))).toEqual([false, false, false, true, true]);
      const got = await readAll(ds);
      expect(got).toEqual(await Promise.all(faceOrder().map(([n, b]) => expected(root, n, b))));
      expect(warnings.filter((w) => w.includes(file) && w.includes('changed since it was cached'))).toHaveLength(1);
      fs.rmSync(path.join(root, 'Images', 'Train', 'b.png'));
      const gone = pixelSet(await open(root));
      const err = await gone.getPixelsInto(3, px, 0).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(UnreadableImageError);
      expect((err as Error).message).toMatch(/b\.png.*deleted after it was cached/);
      expect((err as Error).message.includes('\n')).toBe(false);
    } finally {
      closeShardCaches();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('face mode: the detector runs once per photo, and faces that fell back to their box are still counted on shard hits', async () => {
    const root = await release();
    try {
      // A stand-in detector: finds photo a's first two faces (shifted a pixel), nothing in b.
      let calls = 0;
      const faces = async (img: RgbImage) => {
        calls++;
        if (img.width !== 90) return [];
        return BOXES['a.png'].slice(0, 2).map(([x, y, w, h]) => ({ box: { x: x + 1, y, width: w, height: h }, crop: { left: x, top: y, width: w + 2, height: h + 2 } }));
      };
      const cropper: FaceCropper = Object.assign(async () => ({ left: 0, top: 0, width: 1, height: 1 }), { faces });
      const w1: string[] = [];
      const ds = pixelSet(await open(root, { crop: 'face', openforensics: { faceCrop: cropper } }, w1));
      const got = await readAll(ds);
      expect(calls).toBe(2);
      const a = await decodeImage(path.join(root, 'Images', 'Train', 'a.png'));
      const [x, y, w, h] = BOXES['a.png'][0];
      expect(got[0].equals(Buffer.from(toCHWBytes(a, S, undefined, { left: x, top: y, width: w + 2, height: h + 2 })))).toBe(true);
      const fellBack = await Promise.all(faceOrder().slice(2).map(([n, b]) => expected(root, n, b)));
      expect(got.slice(2)).toEqual(fellBack);
      expect(w1.filter((m) => m.includes('3 of 5 annotated faces'))).toHaveLength(1);
      // A later process: all hits, no detector call, the same three fallbacks counted.
      const w2: string[] = [];
      const again = pixelSet(await open(root, { crop: 'face', openforensics: { faceCrop: cropper } }, w2));
      expect(await readAll(again)).toEqual(got);
      expect(calls).toBe(2);
      expect(w2.filter((m) => m.includes('3 of 5 annotated faces'))).toHaveLength(1);
      // Box mode is another configuration: it never reads the detector's crops.
      const box = pixelSet(await open(root));
      const px = new Uint8Array(PER);
      expect(box.readCachedInto(0, px, 0)).toBe(false);
    } finally {
      closeShardCaches();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('prepare fills the cache (every face decoded once), and a second fill finds them all cached', async () => {
    const root = await release();
    try {
      const ds = pixelSet(await open(root));
      const warn = (m: string): void => {
        throw new Error(`unexpected warning: ${m}`);
      };
      expect(await fillDecodedCache(ds, { concurrency: 3, warn })).toEqual({ images: 5, decoded: 5, cached: 0, skipped: 0 });
      const again = pixelSet(await open(root));
      expect(await fillDecodedCache(again, { concurrency: 3, warn })).toEqual({ images: 5, decoded: 0, cached: 5, skipped: 0 });
      expect(await readAll(again)).toEqual(await Promise.all(faceOrder().map(([n, b]) => expected(root, n, b))));
    } finally {
      closeShardCaches();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

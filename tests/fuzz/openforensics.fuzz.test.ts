// Fuzz: OpenForensics releases damaged after their faces were cached, with and without the decoded cache:
//   - a photo changed, or deleted, after caching;
//   - a truncated shard;
//   - a bad annotation: a field missing, a field of the wrong type, a box outside its photo;
//   - an annotation file of the wrong shape (not JSON, a list at the top, "images" or "annotations" not lists).
// Each is named in one line (a warning, a skipped sample's UnreadableImageError, or the open's error), and
// every face that is served equals a fresh crop of its photo as it is now (nothing stale); a later process
// finds every servable face in the cache again (rebuilt).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cropImage, cropRect, decodeImage, resizeRgb, toCHWBytes, UnreadableImageError, writePng } from '../../src/data/image.js';
import { openDataset } from '../../src/data/datasets.js';
import { closeShardCaches, isPixelDataset, type PixelDataset } from '../../src/data/decoded.js';
import { SHARD_EXT } from '../../src/data/shard-cache.js';
import { expectOneLineError, fuzzRuns, fuzzSeed, fuzzTimeout, snapshot, withinMs } from './fuzz-util.js';

const S = 8;
const PER = 3 * S * S;
type Box = [number, number, number, number];
interface Photo {
  w: number;
  h: number;
  boxes: Box[];
}

const photoArb: fc.Arbitrary<Photo> = fc
  .record({ w: fc.integer({ min: 20, max: 40 }), h: fc.integer({ min: 16, max: 32 }) })
  .chain(({ w, h }) =>
    fc.record({
      w: fc.constant(w),
      h: fc.constant(h),
      boxes: fc.array(
        fc.record({ x: fc.integer({ min: 0, max: w - 4 }), y: fc.integer({ min: 0, max: h - 4 }), a: fc.double({ min: 0.1, max: 1, noNaN: true }), b: fc.double({ min: 0.1, max: 1, noNaN: true }) })
          .map(({ x, y, a, b }): Box => [x, y, Math.max(2, Math.round(a * (w - x))), Math.max(2, Math.round(b * (h - y)))]),
        { minLength: 1, maxLength: 3 },
      ),
    }),
  );

// What breaks an annotation: a missing field, a field of the wrong type, or a box outside the photo.
const ANNOTATION_DAMAGE = ['no-bbox', 'no-image_id', 'no-category_id', 'bbox-strings', 'bbox-short', 'bbox-null', 'image_id-object', 'category-unknown', 'outside'] as const;
// What makes the whole file unusable.
const FILE_DAMAGE = ['not-json', 'top-list', 'images-object', 'annotations-string'] as const;

type Fault =
  | { kind: 'changed' | 'deleted'; photo: number; decodedCache: boolean }
  | { kind: 'truncated'; frac: number }
  | { kind: 'annotation'; ann: number; damage: (typeof ANNOTATION_DAMAGE)[number]; decodedCache: boolean }
  | { kind: 'file'; damage: (typeof FILE_DAMAGE)[number] };

const faultArb: fc.Arbitrary<Fault> = fc.oneof(
  fc.record({ kind: fc.constantFrom('changed' as const, 'deleted' as const), photo: fc.nat(), decodedCache: fc.boolean() }),
  fc.record({ kind: fc.constant('truncated' as const), frac: fc.double({ min: 0, max: 0.999, noNaN: true }) }),
  fc.record({ kind: fc.constant('annotation' as const), ann: fc.nat(), damage: fc.constantFrom(...ANNOTATION_DAMAGE), decodedCache: fc.boolean() }),
  fc.record({ kind: fc.constant('file' as const), damage: fc.constantFrom(...FILE_DAMAGE) }),
);

function pixelsOf(w: number, h: number, seed: number): Uint8Array {
  return new Uint8Array(w * h * 3).map((_, j) => (j * 29 + seed * 113 + (j >> 6) * 7) % 256);
}

const photoFile = (root: string, k: number) => path.join(root, 'Images', 'Train', `p${k}.png`);

/** The COCO annotations of `photos`, one annotation per box, ids 1.., in photo order. */
function coco(photos: readonly Photo[]): { images: unknown[]; annotations: Record<string, unknown>[]; categories: unknown[] } {
  let id = 0;
  return {
    images: photos.map((p, k) => ({ id: k + 1, file_name: `p${k}.png`, width: p.w, height: p.h })),
    annotations: photos.flatMap((p, k) => p.boxes.map((b) => ({ id: ++id, image_id: k + 1, category_id: id % 2, bbox: [...b] }))),
    categories: [{ id: 0, name: 'Real' }, { id: 1, name: 'Fake' }],
  };
}

async function release(photos: readonly Photo[]): Promise<string> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-of-fuzz-'));
  for (const [k, p] of photos.entries()) await writePng(photoFile(root, k), { width: p.w, height: p.h, channels: 3, data: pixelsOf(p.w, p.h, k) });
  fs.writeFileSync(path.join(root, 'Train_poly.json'), JSON.stringify(coco(photos)));
  for (const s of ['Val', 'Test-Dev']) fs.writeFileSync(path.join(root, `${s}_poly.json`), JSON.stringify(coco([])));
  return root;
}

async function open(root: string, decodedCache: boolean, warnings: string[]): Promise<PixelDataset> {
  closeShardCaches();
  const d = await openDataset(root, { size: S, crop: 'box', decodedCache, warn: (m) => void warnings.push(m) });
  if (!isPixelDataset(d.train)) throw new Error('OpenForensics is not a pixel dataset');
  return d.train;
}

/** A fresh crop of the photo as it is now (the bytes the PNG crop path and the decode pool give). */
async function expected(file: string, box: Box): Promise<Buffer> {
  const img = await decodeImage(file);
  return Buffer.from(toCHWBytes(resizeRgb(cropImage(img, cropRect(box, img.width, img.height, 1.3)), S, S), S));
}

/** Every face: its bytes, or the one-line error that skipped it. */
async function readAll(ds: PixelDataset): Promise<Array<Buffer | UnreadableImageError>> {
  const out: Array<Buffer | UnreadableImageError> = [];
  for (let i = 0; i < ds.length(); i++) {
    const px = new Uint8Array(PER);
    try {
      await ds.getPixelsInto(i, px, 0);
      out.push(Buffer.from(px));
    } catch (e) {
      if (!(e instanceof UnreadableImageError)) throw e;
      expectOneLineError(e, 'skipped face');
      out.push(e);
    }
  }
  await ds.flushCache();
  return out;
}

function shardFiles(root: string): string[] {
  const dir = path.join(root, '.ticketlab-cache', 'decoded');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).flatMap((cfg) => fs.readdirSync(path.join(dir, cfg)).filter((n) => n.endsWith(SHARD_EXT)).map((n) => path.join(dir, cfg, n)));
}

/** Damages annotation `a` in place; returns whether it is still listed (only a box outside its photo is). */
function damageAnnotation(a: Record<string, unknown>, damage: (typeof ANNOTATION_DAMAGE)[number], photo: Photo): boolean {
  const bbox = a.bbox as number[];
  switch (damage) {
    case 'no-bbox': delete a.bbox; return false;
    case 'no-image_id': delete a.image_id; return false;
    case 'no-category_id': delete a.category_id; return false;
    case 'bbox-strings': a.bbox = bbox.map(String); return false;
    case 'bbox-short': a.bbox = bbox.slice(0, 3); return false;
    case 'bbox-null': a.bbox = [bbox[0], null, bbox[2], bbox[3]]; return false;
    case 'image_id-object': a.image_id = { id: a.image_id }; return false;
    case 'category-unknown': a.category_id = 'Maybe'; return false;
    case 'outside': a.bbox = [photo.w + 3, bbox[1], bbox[2], bbox[3]]; return true;
  }
}

function damageFile(json: string, damage: (typeof FILE_DAMAGE)[number]): string {
  const c = JSON.parse(json) as Record<string, unknown>;
  switch (damage) {
    case 'not-json': return json.slice(0, Math.floor(json.length / 2));
    case 'top-list': return JSON.stringify([c]);
    case 'images-object': return JSON.stringify({ ...c, images: { first: c.images } });
    case 'annotations-string': return JSON.stringify({ ...c, annotations: 'none' });
  }
}

describe('OpenForensics faults', () => {
  it('a changed or deleted photo, a truncated shard or a bad annotation is named in one line; nothing stale is served, and the cache is rebuilt', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(photoArb, { minLength: 1, maxLength: 3 }), faultArb, async (photos, fault) => {
        const decodedCache = fault.kind === 'truncated' || fault.kind === 'file' ? true : fault.decodedCache;
        const root = await release(photos);
        try {
          // Faces in annotation order: [photo index, box].
          let faces = photos.flatMap((p, k) => p.boxes.map((b) => [k, b] as [number, Box]));
          const w0: string[] = [];
          const first = await readAll(await open(root, decodedCache, w0));
          expect(w0).toEqual([]);
          for (const [n, [k, b]] of faces.entries()) expect(first[n]).toEqual(await expected(photoFile(root, k), b));

          const json = path.join(root, 'Train_poly.json');
          let named: RegExp | null = null; // the one warning this fault must give
          let skipped: { face: number; why: RegExp } | null = null;
          let gone: number | null = null; // a deleted photo
          if (fault.kind === 'changed' || fault.kind === 'deleted') {
            const k = fault.photo % photos.length;
            const file = photoFile(root, k);
            if (fault.kind === 'deleted') {
              fs.rmSync(file);
              gone = k;
            } else {
              await writePng(file, { width: photos[k].w, height: photos[k].h, channels: 3, data: pixelsOf(photos[k].w, photos[k].h, 100 + k) });
              fs.utimesSync(file, new Date(), new Date(Date.now() + 7000));
              if (decodedCache) named = new RegExp(`^${esc(file)} changed since it was cached`);
            }
          } else if (fault.kind === 'truncated') {
            const [shard] = shardFiles(root);
            fs.truncateSync(shard, Math.floor(fs.statSync(shard).size * fault.frac));
            named = new RegExp(`${esc(shard)}.*(truncated|not a ticketlab shard)`);
          } else if (fault.kind === 'annotation') {
            const c = coco(photos);
            const n = fault.ann % c.annotations.length;
            const a = c.annotations[n];
            if (damageAnnotation(a, fault.damage, photos[faces[n][0]])) {
              skipped = { face: n, why: new RegExp(`^cannot read image ${esc(photoFile(root, faces[n][0]))}: annotation ${String(a.id)}: box .* lies outside the ${photos[faces[n][0]].w}x${photos[faces[n][0]].h} image`) };
            } else {
              named = new RegExp(`^${esc(json)}: 1 annotations .* were ignored \\(first: annotation ${String(a.id)} `);
              faces = faces.filter((_, m) => m !== n);
            }
            fs.writeFileSync(json, JSON.stringify(c));
          } else if (fault.kind === 'file') {
            fs.writeFileSync(json, damageFile(fs.readFileSync(json, 'utf8'), fault.damage));
            const before = snapshot(path.join(root, '.ticketlab-cache'));
            const err = await open(root, true, []).then(() => null, (e: unknown) => e);
            expectOneLineError(err, `damaged annotation file (${fault.damage})`);
            expect((err as Error).message).toContain(json);
            expect(snapshot(path.join(root, '.ticketlab-cache'))).toEqual(before);
            return;
          }

          const w1: string[] = [];
          const second = await withinMs(20_000, 'reading a damaged release', readAll(await open(root, decodedCache, w1)));
          for (const w of w1) expectOneLineError(new Error(w), 'warning');
          expect(w1.length, w1.join(' | ')).toBe(named ? 1 : 0);
          if (named) expect(w1[0]).toMatch(named);
          expect(second.length).toBe(faces.length);
          for (const [n, [k, b]] of faces.entries()) {
            const got = second[n];
            if (gone === k) {
              expect(got).toBeInstanceOf(UnreadableImageError);
              expect((got as Error).message).toContain(photoFile(root, k));
              if (decodedCache) expect((got as Error).message).toMatch(/deleted after it was cached/);
            } else if (skipped?.face === n) {
              expect(got).toBeInstanceOf(UnreadableImageError);
              expect((got as Error).message).toMatch(skipped.why);
            } else {
              expect(got, `face ${n}`).toEqual(await expected(photoFile(root, k), b));
            }
          }

          if (!decodedCache) return;
          // Rebuilt: a later process reads every servable face from the cache, naming nothing new.
          const ds = await open(root, true, []);
          const hits = ds.cache!.hits;
          const third = await readAll(ds);
          expect(third).toEqual(second);
          const servable = second.filter((x) => x instanceof Buffer).length;
          expect(ds.cache!.hits - hits).toBe(servable);
        } finally {
          closeShardCaches();
          fs.rmSync(root, { recursive: true, force: true });
        }
      }),
      { numRuns: fuzzRuns(16, 40), seed: fuzzSeed },
    );
  }, fuzzTimeout ?? 120_000);
});

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

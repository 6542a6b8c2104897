// The FF++ loader with an injected face cropper (data/ knows no GPU; the CLI injects the detector):
// frames are cut where the cropper says, cached under ffpp-faces/ (apart from centre crops), reused
// from the cache without asking the cropper again; 'centre' keeps the old centre square. Then the real
// detector-based cropper on a frame made from a face-api sample photo.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDataset, provideFaceCropper, type FaceCropper } from '../../src/data/datasets.js';
import { cropImage, decodeImage, resizeRgb, toCHWFloat, writePng, type Rect, type RgbImage } from '../../src/data/image.js';
import { detectorCropper } from '../../src/faces/crop.js';
import { FaceDetector } from '../../src/faces/detector.js';
import { defaultModelDir } from '../../src/faces/ssd-mobilenet.js';
import { budget } from '../budget.js';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-ffcrop-'));
});
afterAll(() => {
  provideFaceCropper(null);
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** 40x30 frame whose pixels encode their position, so any crop is recognisable. */
function frame(seed: number): RgbImage {
  const data = new Uint8Array(40 * 30 * 3);
  for (let i = 0; i < 40 * 30; i++) data.set([(i * 7 + seed) % 256, (i >> 2) % 256, (i * 13) % 256], 3 * i);
  return { width: 40, height: 30, channels: 3, data };
}

async function ffTree(): Promise<string> {
  const root = path.join(tmp, 'ffpp');
  for (const [dir, seed] of [['original_sequences/youtube/c23/images/000', 1], ['manipulated_sequences/Deepfakes/c23/images/000_001', 2]] as const) {
    for (let f = 0; f < 2; f++) await writePng(path.join(root, dir, `000${f}.png`), frame(seed + f));
  }
  return root;
}

describe('FF++ loader with a face cropper', { timeout: budget(300_000) }, () => {
  it('crops where the cropper says, caches apart from centre crops, and reuses the cache', async () => {
    const root = await ffTree();
    const rect: Rect = { left: 3, top: 5, width: 12, height: 12 };
    let calls = 0;
    const cropper: FaceCropper = async () => {
      calls++;
      return rect;
    };
    const opts = (faceCrop: FaceCropper) => ({ size: 8, faceforensics: { framesPerVideo: 2, faceCrop }, warn: () => {} });
    const ds = await openDataset(root, opts(cropper));
    const all = [ds.train, ds.val, ds.test].flatMap((d) => Array.from({ length: d.length() }, (_, i) => [d, i] as const));
    expect(all.length).toBe(4);
    for (const [d, i] of all) {
      const s = await d.get(i);
      const want = toCHWFloat(resizeRgb(cropImage(await decodeImage(s.path!), rect), 8, 8), 8);
      expect(Array.from(s.image)).toEqual(Array.from(want));
    }
    expect(calls).toBe(4);
    const cached = fs.readdirSync(path.join(root, '.ticketlab-cache', '8'));
    expect(cached).toEqual(['ffpp-faces']);
    // A second open reads the cache: the cropper is not asked again.
    const again = await openDataset(root, opts(async () => { throw new Error('cropper called despite the cache'); }));
    for (const d of [again.train, again.val, again.test]) for (let i = 0; i < d.length(); i++) await d.get(i);
    // 'centre' ignores a provided cropper and gives the centre square.
    provideFaceCropper(async () => cropper);
    const centre = await openDataset(root, { size: 8, faceforensics: { framesPerVideo: 2, crop: 'centre' }, warn: () => {} });
    const d = [centre.train, centre.val, centre.test].find((x) => x.length() > 0)!;
    const s = await d.get(0);
    const img = await decodeImage(s.path!);
    const want = toCHWFloat(resizeRgb(cropImage(img, { left: 5, top: 0, width: 30, height: 30 }), 8, 8), 8);
    expect(Array.from(s.image)).toEqual(Array.from(want));
    expect(calls).toBe(4);
  });

  it('the detector-based cropper centres a 1.3x square on the face, and the centre square on a face-free frame', async () => {
    const photo = await decodeImage(path.join(path.dirname(defaultModelDir()), 'demo', 'sample1.jpg'));
    const window = cropImage(photo, { left: 200, top: 150, width: 560, height: 480 });
    const det = new FaceDetector();
    const crop = detectorCropper(det, { margin: 1.3 });
    const r = await crop(window);
    // face-api's box of that face on the whole photo (tests/fixtures/faces): x 414, y 355, 177 x 240.
    const [cx, cy] = [414 + 177 / 2 - 200, 355 + 240 / 2 - 150];
    expect(Math.abs(r.left + r.width / 2 - cx)).toBeLessThan(25);
    expect(Math.abs(r.top + r.height / 2 - cy)).toBeLessThan(25);
    expect(r.width).toBe(r.height);
    expect(r.width).toBeGreaterThan(177 * 1.3 * 0.9);
    expect(r.width).toBeLessThan(240 * 1.3 * 1.1);
    const blank: RgbImage = { width: 64, height: 48, channels: 3, data: new Uint8Array(64 * 48 * 3).fill(90) };
    expect(await crop(blank)).toEqual({ left: 8, top: 0, width: 48, height: 48 });
    det.dispose();
  });
});

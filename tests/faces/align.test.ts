// --align: the warp's geometry on a synthetic image (no network), and end to end on a face-api sample
// face that the test rotates by a known angle with sharp: the aligned crops have level eyes (measured
// by running the landmark net again on them), faces.jsonl holds the landmarks, and the recorded angle
// differs from the unrotated photo's by the rotation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { decodeImage, type RgbImage } from '../../src/data/image.js';
import { ALIGN_EYE_DISTANCE, ALIGN_EYE_Y, alignedCrop, eyeAlignment } from '../../src/faces/align.js';
import { FaceDetector } from '../../src/faces/detector.js';
import { FACES_FILES, extractFaces, type FaceIndexRecord } from '../../src/faces/extract.js';
import { FaceLandmark68Net, type Point } from '../../src/faces/landmarks.js';
import { defaultModelDir } from '../../src/faces/ssd-mobilenet.js';
import { budget } from '../budget.js';

const ROOT = path.resolve(__dirname, '..', '..');
const SAMPLE = path.join(path.dirname(defaultModelDir()), 'demo', 'sample1.jpg');
const fixture = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'fixtures', 'faces', 'ssd_mobilenetv1.json'), 'utf8')) as {
  cases: { image: string; crop?: unknown; faces: { box: [number, number, number, number] }[] }[];
};
// The left face of sample1 as face-api finds it on the whole photo.
const FACE = fixture.cases.find((c) => c.image === 'sample1.jpg' && !c.crop)!.faces.map((f) => f.box).sort((a, b) => a[0] - b[0])[0];
const ROTATION = 20;
const SIZE = 96;

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-align-'));
});
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** 68 points with the two eyes at l and r (each eye's six points on its centre). */
function eyesOnly(l: Point, r: Point): Point[] {
  return Array.from({ length: 68 }, (_, i): Point => (i >= 36 && i <= 41 ? l : i >= 42 && i <= 47 ? r : [0, 0]));
}

/** Intensity-weighted centroid of the pixels brighter than 128 in channel ch, over x in [x0, x1). */
function blob(img: RgbImage, ch: number, x0: number, x1: number): Point {
  let sx = 0, sy = 0, n = 0;
  for (let y = 0; y < img.height; y++)
    for (let x = x0; x < x1; x++) {
      const v = img.data[(y * img.width + x) * 3 + ch];
      if (v > 128) (sx += x * v), (sy += y * v), (n += v);
    }
  return [sx / n, sy / n];
}

describe('alignedCrop geometry', () => {
  it('puts two marked eyes level, at the documented row and distance', () => {
    // A red disc (left eye) and a green disc (right eye) 60 px apart on a line at -33 degrees.
    const W = 300, H = 240;
    const data = new Uint8Array(W * H * 3);
    const th = (-33 * Math.PI) / 180;
    const l: Point = [110, 150];
    const r: Point = [l[0] + 60 * Math.cos(th), l[1] + 60 * Math.sin(th)];
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        if (Math.hypot(x - l[0], y - l[1]) < 4) data[(y * W + x) * 3] = 255;
        if (Math.hypot(x - r[0], y - r[1]) < 4) data[(y * W + x) * 3 + 1] = 255;
      }
    const a = eyeAlignment(eyesOnly(l, r));
    expect(a.angle).toBeCloseTo(-33, 6);
    const out = alignedCrop({ width: W, height: H, channels: 3, data }, a, 200);
    const gl = blob(out, 0, 0, 200);
    const gr = blob(out, 1, 0, 200);
    expect(Math.abs(gl[1] - gr[1])).toBeLessThan(0.5);
    expect(gl[1]).toBeCloseTo(ALIGN_EYE_Y * 200, 0);
    expect(gr[0] - gl[0]).toBeCloseTo(ALIGN_EYE_DISTANCE * 200, 0);
    expect((gl[0] + gr[0]) / 2).toBeCloseTo(100, 0);
  });
});

describe('ticketlab faces --align', { timeout: budget(300_000) }, () => {
  it(`levels a face rotated by ${ROTATION} degrees and records its landmarks`, async () => {
    const [x, y, w, h] = FACE;
    const side = Math.round(Math.max(w, h) * 2.2);
    const region = { left: Math.max(0, Math.round(x + w / 2 - side / 2)), top: Math.max(0, Math.round(y + h / 2 - side / 2)), width: side, height: side };
    const src = path.join(tmp, 'src');
    fs.mkdirSync(path.join(src, 'real'), { recursive: true });
    await sharp(SAMPLE).extract(region).png().toFile(path.join(src, 'real', 'flat.png'));
    await sharp(SAMPLE).extract(region).rotate(ROTATION, { background: '#000' }).png().toFile(path.join(src, 'real', 'rot.png'));
    const out = path.join(tmp, 'out');
    const detector = new FaceDetector();
    const landmarks = new FaceLandmark68Net();
    try {
      const settings = { every: 1, perVideo: 0, pick: 'largest' as const, margin: 1.3, size: SIZE, minConfidence: 0.5, seed: 0, align: true };
      const r = await extractFaces({ src, out, settings, detector, landmarks, quiet: true, log: () => {} });
      expect(r.crops).toBe(2);
      const recs = fs.readFileSync(path.join(out, FACES_FILES.index), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as FaceIndexRecord);
      const flat = recs.find((q) => q.source.includes('flat'))!;
      const rot = recs.find((q) => q.source.includes('rot'))!;
      for (const q of [flat, rot]) {
        expect(q.landmarks).toHaveLength(68);
        expect(q.eyes).toHaveLength(2);
        expect(typeof q.angle).toBe('number');
      }
      // sharp rotates clockwise; y points down, so the eye line's angle grows by the rotation.
      const turned = rot.angle! - flat.angle!;
      console.log(`align: eye line ${flat.angle} deg on the photo, ${rot.angle} deg after a ${ROTATION} deg rotation`);
      expect(Math.abs(turned - ROTATION)).toBeLessThan(3);
      for (const q of [flat, rot]) {
        const crop = await decodeImage(path.join(out, q.file));
        expect([crop.width, crop.height]).toEqual([SIZE, SIZE]);
        const [pts] = await landmarks.detect([crop]);
        const a = eyeAlignment(pts);
        const [le, re] = a.eyes;
        console.log(`align: ${q.source}: measured eye angle ${a.angle.toFixed(2)} deg in the aligned crop, eyes at (${le.map((v) => v.toFixed(1))}) (${re.map((v) => v.toFixed(1))})`);
        expect(Math.abs(a.angle)).toBeLessThan(3);
        expect(Math.abs((le[1] + re[1]) / 2 - ALIGN_EYE_Y * SIZE)).toBeLessThan(0.05 * SIZE);
        expect(Math.abs(re[0] - le[0] - ALIGN_EYE_DISTANCE * SIZE)).toBeLessThan(0.05 * SIZE);
      }
      // An unaligned run cannot resume into an aligned folder.
      await expect(extractFaces({ src, out, settings: { ...settings, align: false }, detector, quiet: true, log: () => {} })).rejects.toThrow(
        /holds crops made with align=true, not false/,
      );
    } finally {
      detector.dispose();
      landmarks.dispose();
    }
  });
});

// The SSD-MobileNet-v1 port against the original: boxes recorded from @vladmandic/face-api itself on
// its sample photos (scripts/face-fixtures.cjs -> tests/fixtures/faces/ssd_mobilenetv1.json). Same number
// of faces at the same threshold, IoU >= 0.95 per face, and no box on the face-free crop. Plus NMS
// invariants on random boxes.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cropImage, decodeImage, type Rect } from '../../src/data/image.js';
import { iou, iouCorners, nonMaxSuppression, type FaceBox } from '../../src/faces/boxes.js';
import { FaceDetector } from '../../src/faces/detector.js';
import { defaultModelDir } from '../../src/faces/ssd-mobilenet.js';
import { budget } from '../budget.js';

interface FixtureCase {
  image: string;
  crop?: Rect;
  width: number;
  height: number;
  faces: { score: number; box: [number, number, number, number] }[];
}
const fixture = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'faces', 'ssd_mobilenetv1.json'), 'utf8')) as {
  minConfidence: number;
  cases: FixtureCase[];
};
const demoDir = path.join(path.dirname(defaultModelDir()), 'demo');

// Seven 512x512 detections: seconds each on lavapipe, much longer on a loaded machine.
describe('face detector vs @vladmandic/face-api', { timeout: budget(600_000) }, () => {
  it('finds the same faces on the sample photos (IoU >= 0.95 each) and none on a face-free crop', async () => {
    const det = new FaceDetector();
    const images = await Promise.all(
      fixture.cases.map(async (c) => {
        const img = await decodeImage(path.join(demoDir, c.image));
        return c.crop ? cropImage(img, c.crop) : img;
      }),
    );
    // One photo per forward: a batch of seven keeps the (software) GPU busy for minutes on a loaded
    // machine without a pause for the test worker's messages.
    const got: FaceBox[][] = [];
    for (const img of images) got.push((await det.detect([img], { minConfidence: fixture.minConfidence }))[0]);
    det.dispose();
    expect(fixture.cases.some((c) => c.faces.length === 0)).toBe(true);
    fixture.cases.forEach((c, k) => {
      const what = `${c.image}${c.crop ? ' (crop)' : ''}`;
      expect([images[k].width, images[k].height], what).toEqual([c.width, c.height]);
      expect(got[k].length, `${what}: number of faces`).toBe(c.faces.length);
      const unused = new Set(got[k]);
      for (const f of c.faces) {
        const want: FaceBox = { x: f.box[0], y: f.box[1], width: f.box[2], height: f.box[3], score: f.score };
        let best: FaceBox | null = null;
        for (const g of unused) if (!best || iou(g, want) > iou(best, want)) best = g;
        expect(best && iou(best, want), `${what}: face at ${f.box.map(Math.round)}`).toBeGreaterThanOrEqual(0.95);
        expect(Math.abs(best!.score - f.score), `${what}: score`).toBeLessThan(0.01);
        unused.delete(best!);
      }
    });
  });
});

describe('non-maximum suppression', () => {
  const boxArb = fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0.01, max: 0.5, noNaN: true }), fc.double({ min: 0.01, max: 0.5, noNaN: true }));
  it('keeps the best boxes, none overlapping another kept one, and suppresses only boxes under a better kept one', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(boxArb, fc.double({ min: 0, max: 1, noNaN: true })), { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 10 }), (items, maxResults) => {
        const boxes = items.flatMap(([[y, x, h, w]]) => [y, x, y + h, x + w]);
        const scores = items.map(([, s]) => s);
        const kept = nonMaxSuppression(boxes, scores, maxResults, 0.5, 0.3);
        expect(kept.length).toBeLessThanOrEqual(maxResults);
        for (let a = 0; a < kept.length; a++) {
          expect(scores[kept[a]]).toBeGreaterThan(0.3);
          if (a > 0) expect(scores[kept[a]]).toBeLessThanOrEqual(scores[kept[a - 1]]);
          for (let b = 0; b < a; b++) expect(iouCorners(boxes, kept[a], kept[b])).toBeLessThanOrEqual(0.5);
        }
        if (kept.length < maxResults) {
          for (let i = 0; i < scores.length; i++) {
            if (scores[i] <= 0.3 || kept.includes(i)) continue;
            expect(kept.some((k) => scores[k] >= scores[i] && iouCorners(boxes, i, k) > 0.5)).toBe(true);
          }
        }
      }),
    );
  });
});

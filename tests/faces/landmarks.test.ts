// The FaceLandmark68Net port against the original: points recorded from @vladmandic/face-api itself on
// face crops of its sample photos (scripts/face-landmark-fixtures.cjs ->
// tests/fixtures/faces/face_landmark_68.json), the same crop rectangles here. Some crops are one pixel
// off square (clipped), which exercises the centred padding.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cropImage, decodeImage, type Rect } from '../../src/data/image.js';
import { FaceLandmark68Net } from '../../src/faces/landmarks.js';
import { defaultModelDir } from '../../src/faces/ssd-mobilenet.js';
import { budget } from '../budget.js';

interface FixtureFace {
  image: string;
  crop: Rect;
  points: [number, number][];
}
const fixture = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'faces', 'face_landmark_68.json'), 'utf8')) as { faces: FixtureFace[] };
const demoDir = path.join(path.dirname(defaultModelDir()), 'demo');

// Small forwards (112 x 112): a fraction of a second each on lavapipe; one crop per forward.
// Tolerances: measured 1e-7 of the crop side (float32 on both sides); the bounds leave three orders of
// magnitude, yet a one-pixel slip breaks them (padding the off-square crops on the wrong side gave a 0.49% mean error).
describe('68-point landmark net vs @vladmandic/face-api', { timeout: budget(300_000) }, () => {
  it('gives the same points on every sample face (mean error < 0.01% of the crop side)', async () => {
    const net = new FaceLandmark68Net();
    const photos = new Map<string, Awaited<ReturnType<typeof decodeImage>>>();
    let worstMean = 0;
    let worstPoint = 0;
    try {
      for (const f of fixture.faces) {
        if (!photos.has(f.image)) photos.set(f.image, await decodeImage(path.join(demoDir, f.image)));
        const crop = cropImage(photos.get(f.image)!, f.crop);
        const [got] = await net.detect([crop]);
        expect(got).toHaveLength(68);
        const side = Math.max(f.crop.width, f.crop.height);
        const errs = got.map(([x, y], i) => Math.hypot(x - f.points[i][0], y - f.points[i][1]) / side);
        worstMean = Math.max(worstMean, errs.reduce((a, b) => a + b, 0) / errs.length);
        worstPoint = Math.max(worstPoint, ...errs);
      }
    } finally {
      net.dispose();
    }
    console.log(`landmarks: ${fixture.faces.length} faces, worst mean point error ${(worstMean * 100).toFixed(5)}% of the crop side, worst point ${(worstPoint * 100).toFixed(5)}%`);
    expect(worstMean).toBeLessThan(1e-4);
    expect(worstPoint).toBeLessThan(1e-3);
  });
});

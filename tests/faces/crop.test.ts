// The crop rectangle around a detected face (no network): always a square inside the frame, centred on
// the face where it fits, shifted inside the frame at a border rather than clipped (a clipped rectangle
// resized to --size would squash the face), and holding the whole face box whenever the square fits.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { faceRect, pickFaces } from '../../src/faces/crop.js';

describe('faceRect', () => {
  it('a face at the frame border gives a square shifted inside the frame, not a clipped rectangle', () => {
    // 100 x 80 face against the left edge of a 640 x 480 frame: side 130, centred it would start at -15.
    expect(faceRect({ x: 0, y: 200, width: 100, height: 80, score: 0.9 }, { width: 640, height: 480 }, 1.3)).toEqual({ left: 0, top: 175, width: 130, height: 130 });
    // Bottom-right corner.
    expect(faceRect({ x: 560, y: 420, width: 80, height: 60, score: 0.9 }, { width: 640, height: 480 }, 1.5)).toEqual({ left: 520, top: 360, width: 120, height: 120 });
    // Larger than the frame's shorter side: the square shrinks to it.
    expect(faceRect({ x: 100, y: 0, width: 300, height: 240, score: 0.9 }, { width: 640, height: 240 }, 1.3)).toEqual({ left: 130, top: 0, width: 240, height: 240 });
  });

  it('is a square inside the frame, centred on the face where it fits, holding the whole face box', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 8, max: 2000 }),
        fc.integer({ min: 8, max: 2000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.double({ min: 1, max: 3, noNaN: true }),
        (W, H, u, v, fw, fh, margin) => {
          const width = Math.max(1, fw * W);
          const height = Math.max(1, fh * H);
          const f = { x: u * (W - width), y: v * (H - height), width, height, score: 0.9 };
          const r = faceRect(f, { width: W, height: H }, margin);
          expect(r.width).toBe(r.height);
          expect(r.left).toBeGreaterThanOrEqual(0);
          expect(r.top).toBeGreaterThanOrEqual(0);
          expect(r.left + r.width).toBeLessThanOrEqual(W);
          expect(r.top + r.height).toBeLessThanOrEqual(H);
          const want = Math.round(Math.max(width, height) * margin);
          if (want > Math.min(W, H)) {
            expect(r.width).toBe(Math.min(W, H));
            return;
          }
          expect(r.width).toBe(want);
          // The whole face box (to the rounding pixel) is inside the square.
          expect(r.left).toBeLessThanOrEqual(f.x + 0.5);
          expect(r.top).toBeLessThanOrEqual(f.y + 0.5);
          expect(r.left + r.width).toBeGreaterThanOrEqual(f.x + width - 0.5);
          expect(r.top + r.height).toBeGreaterThanOrEqual(f.y + height - 0.5);
          // Centred unless a border pushed it.
          const [cx, cy] = [f.x + width / 2, f.y + height / 2];
          if (cx - want / 2 >= 0 && cx + want / 2 <= W) expect(Math.abs(r.left + r.width / 2 - cx)).toBeLessThanOrEqual(0.5);
          if (cy - want / 2 >= 0 && cy + want / 2 <= H) expect(Math.abs(r.top + r.height / 2 - cy)).toBeLessThanOrEqual(0.5);
        },
      ),
    );
  });
});

describe('pickFaces', () => {
  it('largest keeps the largest box; all keeps every face, largest first', () => {
    const faces = [
      { x: 0, y: 0, width: 10, height: 10, score: 0.99 },
      { x: 0, y: 0, width: 30, height: 20, score: 0.6 },
      { x: 0, y: 0, width: 20, height: 20, score: 0.8 },
    ];
    expect(pickFaces(faces, 'largest')).toEqual([faces[1]]);
    expect(pickFaces(faces, 'all')).toEqual([faces[1], faces[2], faces[0]]);
    expect(pickFaces([], 'largest')).toEqual([]);
  });
});

// Landmark alignment: a similarity transform (rotation about the eye midpoint, uniform scale, shift)
// that puts the eyes level at fixed places of a size x size crop, applied on the host with bilinear
// sampling from the whole frame (pixels outside the frame are black).
//
// Convention (the aligned crop, side S): the eye centres are the means of the 68-point scheme's points
// 36-41 (the eye on the image's left) and 42-47; they land on one row at ALIGN_EYE_Y * S from the top,
// ALIGN_EYE_DISTANCE * S apart, symmetric about the vertical centre line. Coordinates put pixel i's
// centre at i (as the networks' resize rule does).
import type { RgbImage } from '../data/image.js';
import type { Point } from './landmarks.js';

/** Eye row, as a fraction of the crop side from the top. */
export const ALIGN_EYE_Y = 0.35;
/** Distance between the eye centres, as a fraction of the crop side. */
export const ALIGN_EYE_DISTANCE = 0.3;

export interface Alignment {
  /** Eye centres in frame pixels: the eye on the image's left (points 36-41), then 42-47. */
  eyes: [Point, Point];
  /** Angle of the eye line in the frame, degrees, clockwise positive (y points down); 0 = level. */
  angle: number;
}

function mean(points: readonly Point[], from: number, to: number): Point {
  let x = 0;
  let y = 0;
  for (let i = from; i <= to; i++) {
    x += points[i][0];
    y += points[i][1];
  }
  const n = to - from + 1;
  return [x / n, y / n];
}

export function eyeAlignment(points: readonly Point[]): Alignment {
  if (points.length !== 68) throw new Error(`face alignment: ${points.length} landmarks, expected 68`);
  const l = mean(points, 36, 41);
  const r = mean(points, 42, 47);
  return { eyes: [l, r], angle: (Math.atan2(r[1] - l[1], r[0] - l[0]) * 180) / Math.PI };
}

/** The size x size crop with the eyes level (see the convention above). */
export function alignedCrop(img: RgbImage, a: Alignment, size: number): RgbImage {
  const [l, r] = a.eyes;
  const mx = (l[0] + r[0]) / 2;
  const my = (l[1] + r[1]) / 2;
  const dist = Math.hypot(r[0] - l[0], r[1] - l[1]);
  if (!(dist > 0)) throw new Error('face alignment: the two eye centres coincide');
  // Source = mid + R(angle) * (dest - destMid) / scale, scale = output eye distance / source eye distance.
  const k = dist / (ALIGN_EYE_DISTANCE * size);
  const th = (a.angle * Math.PI) / 180;
  const c = Math.cos(th) * k;
  const s = Math.sin(th) * k;
  const cx = size / 2;
  const cy = ALIGN_EYE_Y * size;
  const W = img.width;
  const H = img.height;
  const src = img.data;
  const out = new Uint8Array(size * size * 3);
  const at = (x: number, y: number, ch: number) => (x >= 0 && y >= 0 && x < W && y < H ? src[(y * W + x) * 3 + ch] : 0);
  for (let v = 0; v < size; v++) {
    for (let u = 0; u < size; u++) {
      const du = u - cx;
      const dv = v - cy;
      const sx = mx + c * du - s * dv;
      const sy = my + s * du + c * dv;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      const o = (v * size + u) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const top = at(x0, y0, ch) * (1 - fx) + at(x0 + 1, y0, ch) * fx;
        const bottom = at(x0, y0 + 1, ch) * (1 - fx) + at(x0 + 1, y0 + 1, ch) * fx;
        out[o + ch] = Math.round(top * (1 - fy) + bottom * fy);
      }
    }
  }
  return { width: size, height: size, channels: 3, data: out };
}

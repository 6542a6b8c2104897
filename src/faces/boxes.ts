// Host arithmetic of the SSD head: anchor (prior) box decoding, IoU, non-maximum suppression and the
// mapping back to image pixels, written to give what @vladmandic/face-api's SsdMobilenetv1 gives
// (outputLayer.ts, nonMaxSuppression.ts, locateFaces). Boxes inside the net are [ymin, xmin, ymax, xmax]
// relative to the zero-padded square input.

/** A detected face in image pixels. */
export interface FaceBox {
  x: number;
  y: number;
  width: number;
  height: number;
  score: number;
}

/**
 * TF Object Detection's box coder (scales 10, 10, 5, 5): anchor a = [ymin, xmin, ymax, xmax], encoding
 * e = [ty, tx, th, tw] -> box [ymin, xmin, ymax, xmax]. Float64 throughout.
 */
export function decodeBoxes(anchors: ArrayLike<number>, enc: ArrayLike<number>, count: number): Float64Array {
  const out = new Float64Array(count * 4);
  for (let i = 0; i < count; i++) {
    const [a0, a1, a2, a3] = [anchors[4 * i], anchors[4 * i + 1], anchors[4 * i + 2], anchors[4 * i + 3]];
    const h = a2 - a0;
    const w = a3 - a1;
    const cy = a0 + h / 2;
    const cx = a1 + w / 2;
    const halfH = (Math.exp(enc[4 * i + 2] / 5) * h) / 2;
    const halfW = (Math.exp(enc[4 * i + 3] / 5) * w) / 2;
    const y = (enc[4 * i] / 10) * h + cy;
    const x = (enc[4 * i + 1] / 10) * w + cx;
    out.set([y - halfH, x - halfW, y + halfH, x + halfW], 4 * i);
  }
  return out;
}

/** IoU of boxes i and j of a [ymin, xmin, ymax, xmax] array (corners in either order), 0 if either is empty. */
export function iouCorners(b: ArrayLike<number>, i: number, j: number): number {
  const y0i = Math.min(b[4 * i], b[4 * i + 2]);
  const x0i = Math.min(b[4 * i + 1], b[4 * i + 3]);
  const y1i = Math.max(b[4 * i], b[4 * i + 2]);
  const x1i = Math.max(b[4 * i + 1], b[4 * i + 3]);
  const y0j = Math.min(b[4 * j], b[4 * j + 2]);
  const x0j = Math.min(b[4 * j + 1], b[4 * j + 3]);
  const y1j = Math.max(b[4 * j], b[4 * j + 2]);
  const x1j = Math.max(b[4 * j + 1], b[4 * j + 3]);
  const ai = (y1i - y0i) * (x1i - x0i);
  const aj = (y1j - y0j) * (x1j - x0j);
  if (ai <= 0 || aj <= 0) return 0;
  const inter = Math.max(Math.min(y1i, y1j) - Math.max(y0i, y0j), 0) * Math.max(Math.min(x1i, x1j) - Math.max(x0i, x0j), 0);
  return inter / (ai + aj - inter);
}

/** IoU of two pixel boxes. */
export function iou(a: Pick<FaceBox, 'x' | 'y' | 'width' | 'height'>, b: Pick<FaceBox, 'x' | 'y' | 'width' | 'height'>): number {
  return iouCorners([a.y, a.x, a.y + a.height, a.x + a.width, b.y, b.x, b.y + b.height, b.x + b.width], 0, 1);
}

/**
 * Greedy NMS: candidates with score > minScore, best first (stable), each kept unless it overlaps a kept
 * box by IoU > iouThreshold; at most maxResults. Returns indices into `scores`.
 */
export function nonMaxSuppression(boxes: ArrayLike<number>, scores: ArrayLike<number>, maxResults: number, iouThreshold: number, minScore: number): number[] {
  const cand: number[] = [];
  for (let i = 0; i < scores.length; i++) if (scores[i] > minScore) cand.push(i);
  cand.sort((a, b) => scores[b] - scores[a]);
  const kept: number[] = [];
  const limit = Math.min(maxResults, scores.length);
  for (const c of cand) {
    if (kept.length >= limit) break;
    if (kept.every((k) => iouCorners(boxes, c, k) <= iouThreshold)) kept.push(c);
  }
  return kept;
}

/**
 * Relative [ymin, xmin, ymax, xmax] of the padded square -> pixels of a width x height image, clipped to
 * [0, 1] first. `inputSize` is the net's side: face-api scales by inputSize / the letterboxed side
 * (rounded), which we mirror so that boxes agree to the pixel.
 */
export function toPixels(b: ArrayLike<number>, i: number, score: number, width: number, height: number, inputSize: number): FaceBox {
  const scale = inputSize / Math.max(width, height);
  const padX = inputSize / Math.round(width * scale);
  const padY = inputSize / Math.round(height * scale);
  const top = Math.max(0, b[4 * i]) * padY;
  const bottom = Math.min(1, b[4 * i + 2]) * padY;
  const left = Math.max(0, b[4 * i + 1]) * padX;
  const right = Math.min(1, b[4 * i + 3]) * padX;
  return { x: left * width, y: top * height, width: (right - left) * width, height: (bottom - top) * height, score };
}

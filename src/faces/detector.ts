// The face detector: images in, pixel boxes out. Preprocessing, the network on our kernels, then the
// head outputs are read back and decoded on the host (5118 anchors per image: microseconds of work).
import type { RgbImage } from '../data/image.js';
import { fromArray } from '../tensor/tensor.js';
import { decodeBoxes, nonMaxSuppression, toPixels, type FaceBox } from './boxes.js';
import { batchInput, detectorInput } from './preprocess.js';
import { SSD_INPUT_SIZE, SsdMobilenetV1, defaultModelDir, type SsdRawOutput } from './ssd-mobilenet.js';

export interface DetectOptions {
  /** Keep boxes whose face score is above this (face-api's minConfidence; default 0.5). */
  minConfidence?: number;
  /** At most this many faces per image (default 100). */
  maxResults?: number;
  /** NMS overlap above which the weaker box goes (default 0.5, as face-api). */
  iouThreshold?: number;
}

export const DEFAULT_MIN_CONFIDENCE = 0.5;

export class FaceDetector {
  private readonly net: SsdMobilenetV1;

  constructor(modelDir = defaultModelDir()) {
    this.net = new SsdMobilenetV1(modelDir);
  }

  /** Detects faces in each image (one forward for the batch). */
  async detect(images: readonly RgbImage[], opts: DetectOptions = {}): Promise<FaceBox[][]> {
    if (images.length === 0) return [];
    const minConfidence = opts.minConfidence ?? DEFAULT_MIN_CONFIDENCE;
    if (!(minConfidence > 0 && minConfidence < 1)) throw new Error(`face detector: minConfidence ${minConfidence} must be in (0, 1)`);
    const S = SSD_INPUT_SIZE;
    const x = fromArray(batchInput(images, S, detectorInput), [images.length, 3, S, S]);
    let raw: SsdRawOutput;
    try {
      raw = this.net.forward(x);
    } finally {
      x.dispose();
    }
    let boxesHost: Float32Array[];
    let classesHost: Float32Array[];
    try {
      boxesHost = (await Promise.all(raw.boxes.map((t) => t.toArray()))) as Float32Array[];
      classesHost = (await Promise.all(raw.classes.map((t) => t.toArray()))) as Float32Array[];
    } finally {
      for (const t of [...raw.boxes, ...raw.classes]) t.dispose();
    }
    const total = this.net.anchors.length / 4;
    return images.map((img, n) => {
      const enc = new Float64Array(total * 4);
      const scores = new Float64Array(total);
      let at = 0;
      raw.boxes.forEach((bt, k) => {
        const [, c4, H, W] = bt.shape;
        const A = c4 / 4;
        const bh = boxesHost[k];
        const ch = classesHost[k];
        const hw = H * W;
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++)
            for (let a = 0; a < A; a++, at++) {
              for (let j = 0; j < 4; j++) enc[4 * at + j] = bh[(n * c4 + a * 4 + j) * hw + y * W + x];
              scores[at] = 1 / (1 + Math.exp(-ch[(n * 3 * A + a * 3 + 1) * hw + y * W + x]));
            }
      });
      if (at !== total) throw new Error(`face detector: the heads give ${at} boxes but the model has ${total} anchors`);
      const boxes = decodeBoxes(this.net.anchors, enc, total);
      const keep = nonMaxSuppression(boxes, scores, opts.maxResults ?? 100, opts.iouThreshold ?? 0.5, minConfidence);
      return keep.map((i) => toPixels(boxes, i, scores[i], img.width, img.height, S));
    });
  }

  dispose(): void {
    this.net.dispose();
  }
}

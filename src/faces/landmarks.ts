// face-api's 68-point face landmark net (FaceLandmark68Net, from justadudewhohacks/face-api.js), built
// from ticketlab's own kernels. Inference only.
//
// The net: four dense blocks (112 -> 56 -> 28 -> 14 -> 7 pixels; 32, 64, 128, 256 channels), each
//   out1 = relu(conv0(x))                 conv0: a 3x3 stride-2 convolution in the first block, else a
//   out2 = sep1(out1)                            depthwise-separable one (3x3 depthwise, then 1x1 + bias)
//   out3 = sep2(relu(out1 + out2))
//   out4 = sep3(relu(out1 + out2 + out3))
//   y    = relu(out1 + out2 + out3 + out4)
// then a 7x7 average pool (one cell: global average) and a fully connected 256 -> 136 layer that gives
// the 68 (x, y) points relative to the padded square input. TF 'same' padding, as the detector.
//
// Weights: model/face_landmark_68_model-* of @vladmandic/face-api (TF.js manifest, uint8-quantised),
// read by io/tfjs-weights.ts; layouts converted on the host (HWIO -> OIHW, depthwise HWC1 -> C1HW,
// pointwise [1, 1, Cin, Cout] -> [Cout, Cin]).
import * as path from 'node:path';
import type { RgbImage } from '../data/image.js';
import { readTfjsWeights, type TfjsWeight } from '../io/tfjs-weights.js';
import { conv2dForward } from '../tensor/ops/conv.js';
import { groupedConv2dForward } from '../tensor/ops/depthwise.js';
import { mapExpr } from '../tensor/ops/map.js';
import { matmul } from '../tensor/ops/matmul.js';
import { adaptiveAvgPool2dTo1 } from '../tensor/ops/pool.js';
import { fromArray, keep, tidy, type Tensor } from '../tensor/tensor.js';
import { batchInput, landmarkInput } from './preprocess.js';
import { defaultModelDir, hwioToOihw } from './ssd-mobilenet.js';

/** The net's input side (face-api's FaceLandmark68Net always runs at 112). */
export const LANDMARK_INPUT_SIZE = 112;
export const LANDMARK_POINTS = 68;
const MANIFEST = 'face_landmark_68_model-weights_manifest.json';
const BLOCKS = 4;

/** [x, y] in pixels of the image the net was given. */
export type Point = [number, number];

interface Sep {
  dw: Tensor;
  pw: Tensor;
  b: Tensor;
}

function get(weights: Map<string, TfjsWeight>, file: string, name: string, shape: (number | null)[]): TfjsWeight {
  const t = weights.get(name);
  if (!t) throw new Error(`${file}: weight "${name}" is missing`);
  if (t.shape.length !== shape.length || shape.some((d, i) => d !== null && d !== t.shape[i])) {
    throw new Error(`${file}: weight "${name}" has shape [${t.shape.join(', ')}], expected [${shape.map((d) => d ?? '?').join(', ')}]`);
  }
  return t;
}

/** Rows-by-columns transpose of a row-major [r, c] array. */
function transpose(a: ArrayLike<number>, r: number, c: number): Float32Array {
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = a[i * c + j];
  return out;
}

export class FaceLandmark68Net {
  private readonly first: { w: Tensor; b: Tensor };
  private readonly seps = new Map<string, Sep>();
  private readonly fc: { w: Tensor; b: Tensor };

  constructor(modelDir = defaultModelDir()) {
    const file = path.join(modelDir, MANIFEST);
    const weights = readTfjsWeights(file);
    const f = get(weights, file, 'dense0/conv0/filters', [3, 3, 3, null]);
    const c0 = f.shape[3];
    this.first = { w: fromArray(hwioToOihw(f), [c0, 3, 3, 3]), b: fromArray(get(weights, file, 'dense0/conv0/bias', [c0]).data, [c0]) };
    for (let d = 0; d < BLOCKS; d++) {
      for (let k = d === 0 ? 1 : 0; k <= 3; k++) {
        const p = `dense${d}/conv${k}`;
        const dw = get(weights, file, `${p}/depthwise_filter`, [3, 3, null, 1]);
        const cin = dw.shape[2];
        const pw = get(weights, file, `${p}/pointwise_filter`, [1, 1, cin, null]);
        const cout = pw.shape[3];
        this.seps.set(p, {
          dw: fromArray(transpose(dw.data, 9, cin), [cin, 1, 3, 3]),
          pw: fromArray(transpose(pw.data, cin, cout), [cout, cin]),
          b: fromArray(get(weights, file, `${p}/bias`, [cout]).data, [1, cout, 1, 1]),
        });
      }
    }
    const fw = get(weights, file, 'fc/weights', [null, LANDMARK_POINTS * 2]);
    this.fc = { w: fromArray(fw.data, fw.shape), b: fromArray(get(weights, file, 'fc/bias', [LANDMARK_POINTS * 2]).data, [1, LANDMARK_POINTS * 2]) };
    for (const t of this.tensors()) keep(t);
  }

  private tensors(): Tensor[] {
    return [this.first.w, this.first.b, this.fc.w, this.fc.b, ...[...this.seps.values()].flatMap((s) => [s.dw, s.pw, s.b])];
  }

  /** Depthwise 3x3 (no bias), then the 1x1 convolution as a GEMM, plus bias. */
  private sep(x: Tensor, key: string, stride: number): Tensor {
    const { dw, pw, b } = this.seps.get(key)!;
    const d = groupedConv2dForward(x, dw, null, { groups: x.shape[1], stride, padding: 'same' });
    const [n, c, h, w] = d.shape;
    const y = matmul(pw, d.reshape([n, c, h * w])).reshape([n, pw.shape[0], h, w]);
    return mapExpr('bias_add', 'x0 + x1', [y, b]);
  }

  private denseBlock(x: Tensor, d: number): Tensor {
    const out1 =
      d === 0
        ? conv2dForward(x, this.first.w, this.first.b, { stride: 2, padding: 'same' })
        : this.sep(x, `dense${d}/conv0`, 2);
    const a1 = mapExpr('relu', 'max(x0, 0.0)', [out1]);
    const out2 = this.sep(a1, `dense${d}/conv1`, 1);
    const out3 = this.sep(mapExpr('add_relu2', 'max(x0 + x1, 0.0)', [a1, out2]), `dense${d}/conv2`, 1);
    const out4 = this.sep(mapExpr('add_relu3', 'max(x0 + x1 + x2, 0.0)', [a1, out2, out3]), `dense${d}/conv3`, 1);
    return mapExpr('add_relu4', 'max(x0 + x1 + x2 + x3, 0.0)', [a1, out2, out3, out4]);
  }

  /** x: [N, 3, 112, 112] (landmarkInput). Returns [N, 136]: x0, y0, x1, ... relative to the padded square. */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let y = x;
      for (let d = 0; d < BLOCKS; d++) y = this.denseBlock(y, d);
      const [n, c] = y.shape;
      const pooled = adaptiveAvgPool2dTo1(y).reshape([n, c]);
      return mapExpr('bias_add', 'x0 + x1', [matmul(pooled, this.fc.w), this.fc.b]);
    });
  }

  /** The 68 points of each image (a face crop), in its pixels. One forward for the batch. */
  async detect(images: readonly RgbImage[]): Promise<Point[][]> {
    if (images.length === 0) return [];
    const S = LANDMARK_INPUT_SIZE;
    const x = fromArray(batchInput(images, S, landmarkInput), [images.length, 3, S, S]);
    let out: Tensor;
    try {
      out = this.forward(x);
    } finally {
      x.dispose();
    }
    let host: Float32Array;
    try {
      host = (await out.toArray()) as Float32Array;
    } finally {
      out.dispose();
    }
    return images.map((img, n) => toImagePoints(host.subarray(n * 2 * LANDMARK_POINTS, (n + 1) * 2 * LANDMARK_POINTS), img.width, img.height, S));
  }

  dispose(): void {
    for (const t of this.tensors()) t.dispose();
    this.seps.clear();
  }
}

/**
 * The net's relative output to image pixels, as face-api's postProcess: scale by the input size, remove
 * half the padding (|w' - h'| / 2 on the shorter axis, w' and h' the image's size scaled into the input)
 * and divide by w' (h'); then multiply by the image's width (height).
 */
export function toImagePoints(out: ArrayLike<number>, width: number, height: number, inputSize: number): Point[] {
  const s = inputSize / Math.max(width, height);
  const w = width * s;
  const h = height * s;
  const padX = w < h ? Math.abs(w - h) / 2 : 0;
  const padY = h < w ? Math.abs(w - h) / 2 : 0;
  const pts: Point[] = [];
  for (let i = 0; i < LANDMARK_POINTS; i++) {
    pts.push([((out[2 * i] * inputSize - padX) / w) * width, ((out[2 * i + 1] * inputSize - padY) / h) * height]);
  }
  return pts;
}

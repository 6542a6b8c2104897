// SSD-MobileNet-v1 face detector (the network of @vladmandic/face-api's SsdMobilenetv1, itself from
// justadudewhohacks/face-api.js), built from ticketlab's own kernels: conv2d (implicit GEMM) for the
// full and pointwise convolutions, the grouped-conv family for the depthwise ones, ReLU6 as a fused or
// elementwise clamp. Inference only (no autograd, no training).
//
// Weights come from the TF.js manifest that package ships (model/ssd_mobilenetv1_model-*), read by our
// own loader (io/tfjs-weights.ts); only those files are read, never the package's code. TF's layouts
// are converted on the host: conv HWIO -> OIHW, depthwise HWC1 -> C1HW, and each depthwise layer's
// inference batch norm is folded into its weights and a bias (w * gamma / sqrt(var + eps),
// beta - mean * gamma / sqrt(var + eps)), so a depthwise block is one kernel launch.
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { readTfjsWeights, type TfjsWeight } from '../io/tfjs-weights.js';
import { conv2dForward } from '../tensor/ops/conv.js';
import { groupedConv2dForward } from '../tensor/ops/depthwise.js';
import { mapExpr, unary } from '../tensor/ops/map.js';
import { matmul } from '../tensor/ops/matmul.js';
import { fromArray, keep, tidy, type Tensor } from '../tensor/tensor.js';

/** The net's input side (face-api's SsdMobilenetv1 always runs at 512). */
export const SSD_INPUT_SIZE = 512;
const BN_EPSILON = 0.0010000000474974513;
const MANIFEST = 'ssd_mobilenetv1_model-weights_manifest.json';

/** The folder of the shipped TF.js models (inside the installed @vladmandic/face-api package). */
export function defaultModelDir(): string {
  const req = createRequire(import.meta.url);
  return path.join(path.dirname(req.resolve('@vladmandic/face-api/package.json')), 'model');
}

interface ConvW {
  w: Tensor;
  b: Tensor;
}

/** Raw head outputs of one forward: per source feature map, NCHW box encodings and class logits. */
export interface SsdRawOutput {
  /** [N, 4A, H, W] per feature map, in the order the anchors list them. */
  boxes: Tensor[];
  /** [N, 3A, H, W]. */
  classes: Tensor[];
}

function get(weights: Map<string, TfjsWeight>, file: string, name: string, rank: number): TfjsWeight {
  const t = weights.get(name);
  if (!t) throw new Error(`${file}: weight "${name}" is missing`);
  if (t.shape.length !== rank) throw new Error(`${file}: weight "${name}" has shape [${t.shape.join(', ')}], expected rank ${rank}`);
  return t;
}

/** TF conv filter [KH, KW, Cin, Cout] -> [Cout, Cin, KH, KW]. */
export function hwioToOihw(t: TfjsWeight): Float32Array {
  const [kh, kw, ci, co] = t.shape;
  const out = new Float32Array(t.data.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let i = 0; i < ci; i++)
        for (let o = 0; o < co; o++) out[((o * ci + i) * kh + y) * kw + x] = t.data[((y * kw + x) * ci + i) * co + o];
  return out;
}

export class SsdMobilenetV1 {
  private readonly convs = new Map<string, ConvW>();
  /** [5118 * 4] anchors as [ymin, xmin, ymax, xmax], relative to the square input. */
  readonly anchors: Float32Array;

  constructor(modelDir = defaultModelDir()) {
    const file = path.join(modelDir, MANIFEST);
    const weights = readTfjsWeights(file);
    const conv = (key: string, prefix: string, biasName: string) => {
      const w = get(weights, file, `${prefix}/weights`, 4);
      const b = get(weights, file, `${prefix}/${biasName}`, 1);
      const shape = [w.shape[3], w.shape[2], w.shape[0], w.shape[1]];
      this.convs.set(key, { w: fromArray(hwioToOihw(w), shape), b: fromArray(b.data, [b.shape[0]]) });
    };
    conv('mb0', 'MobilenetV1/Conv2d_0_pointwise', 'convolution_bn_offset');
    for (let i = 1; i <= 13; i++) {
      const p = `MobilenetV1/Conv2d_${i}_depthwise`;
      const w = get(weights, file, `${p}/depthwise_weights`, 4);
      const [kh, kw, c] = w.shape;
      const [gamma, beta, mean, variance] = ['gamma', 'beta', 'moving_mean', 'moving_variance'].map((n) => get(weights, file, `${p}/BatchNorm/${n}`, 1).data);
      const fw = new Float32Array(c * kh * kw);
      const fb = new Float32Array(c);
      for (let ch = 0; ch < c; ch++) {
        const s = gamma[ch] / Math.sqrt(variance[ch] + BN_EPSILON);
        fb[ch] = beta[ch] - mean[ch] * s;
        for (let k = 0; k < kh * kw; k++) fw[ch * kh * kw + k] = w.data[k * c + ch] * s;
      }
      this.convs.set(`dw${i}`, { w: fromArray(fw, [c, 1, kh, kw]), b: fromArray(fb, [c]) });
      conv(`mb${i}`, `MobilenetV1/Conv2d_${i}_pointwise`, 'convolution_bn_offset');
    }
    for (let i = 0; i <= 7; i++) conv(`pr${i}`, `Prediction/Conv2d_${i}_pointwise`, 'convolution_bn_offset');
    for (let i = 0; i <= 5; i++) {
      conv(`box${i}`, `Prediction/BoxPredictor_${i}/BoxEncodingPredictor`, 'biases');
      conv(`cls${i}`, `Prediction/BoxPredictor_${i}/ClassPredictor`, 'biases');
    }
    const anchors = get(weights, file, 'Output/extra_dim', 3);
    this.anchors = anchors.data as Float32Array;
    // The detector owns its weights: an enclosing tidy() must not free them.
    for (const { w, b } of this.convs.values()) keep(w), keep(b);
  }

  private c(key: string): ConvW {
    return this.convs.get(key)!;
  }

  /**
   * conv (stride, TF 'same') + bias, then clamp to [lo, hi] when given. A 1x1 stride-1 convolution is a
   * plain GEMM, W [Cout, Cin] x X [Cin, H*W] per image, and goes to the matmul kernels, which on
   * lavapipe ran these shapes 1.4-2.8x faster than the conv2d kernels (the bias and clamp then take one
   * fused elementwise pass); other convolutions use conv2d.
   */
  private conv(x: Tensor, key: string, stride: number, clamp?: readonly [number, number]): Tensor {
    const { w, b } = this.c(key);
    const [co, ci, kh, kw] = w.shape;
    if (kh === 1 && kw === 1 && stride === 1) {
      const [n, , h, wd] = x.shape;
      const y = matmul(w.reshape([co, ci]), x.reshape([n, ci, h * wd])).reshape([n, co, h, wd]);
      const expr = clamp ? 'clamp(x0 + x1, p.alpha, p.beta)' : 'x0 + x1';
      return mapExpr(clamp ? 'bias_clamp' : 'bias_add', expr, [y, b.reshape([1, co, 1, 1])], clamp?.[0] ?? 0, clamp?.[1] ?? 0);
    }
    const y = conv2dForward(x, w, b, { stride, padding: 'same' });
    return clamp ? unary('clamp', y, clamp[0], clamp[1]) : y;
  }

  /** Full/pointwise conv + bias (BN folded by the converter) + ReLU6. */
  private pointwise(x: Tensor, key: string, stride: number): Tensor {
    return this.conv(x, key, stride, [0, 6]);
  }

  private depthwise(x: Tensor, key: string, stride: number): Tensor {
    const { w, b } = this.c(key);
    return groupedConv2dForward(x, w, b, { groups: x.shape[1], stride, padding: 'same', clamp: [0, 6] });
  }

  private head(x: Tensor, key: string): Tensor {
    return this.conv(x, key, 1);
  }

  /** x: [N, 3, 512, 512] in -1..1 (see detectorInput). Returns the heads' raw outputs. */
  forward(x: Tensor): SsdRawOutput {
    const run = (): Tensor[][] => {
      let out = this.pointwise(x, 'mb0', 2);
      let conv11: Tensor | null = null;
      for (let i = 1; i <= 13; i++) {
        out = this.depthwise(out, `dw${i}`, [2, 4, 6, 12].includes(i) ? 2 : 1);
        out = this.pointwise(out, `mb${i}`, 1);
        if (i === 11) conv11 = out;
      }
      const p: Tensor[] = [];
      let y = out;
      for (let i = 0; i <= 7; i++) {
        y = this.pointwise(y, `pr${i}`, i % 2 ? 2 : 1);
        p.push(y);
      }
      const sources = [conv11!, out, p[1], p[3], p[5], p[7]];
      return [sources.map((s, i) => this.head(s, `box${i}`)), sources.map((s, i) => this.head(s, `cls${i}`))];
    };
    const [boxes, classes] = tidy(run);
    return { boxes, classes };
  }

  dispose(): void {
    for (const { w, b } of this.convs.values()) {
      w.dispose();
      b.dispose();
    }
    this.convs.clear();
  }
}

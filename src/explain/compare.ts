// Numbers for "where do dense and pruned detectors look": per image, between the dense model's map and
// a pruned model's map of the same input, and per level, their mean and spread.
//
//   frobenius   ||L_dense - L_pruned||_F over the normalised maps at the input size (the study's
//               measure; it grows with the image side, so compare runs at the same size only)
//   pearson     Pearson correlation of the two maps (NaN when either map is constant)
//   confidence  pytorch-grad-cam's CamMultImageConfidenceChange: sigmoid(score(x * cam)) -
//               sigmoid(score(x)), score = the target's +-logit, cam = this level's own normalised map
//   mass ratio  (CAM mass per pixel inside a region) / (per pixel outside), e.g. a fake's blend mask
//               (> 0.5): above 1 when the map favours the manipulated region
import type { Detector } from '../nn/models/index.js';
import { fromArray, tidy, type Tensor } from '../tensor/tensor.js';
import { binary } from '../tensor/ops/map.js';
import { concat } from '../tensor/ops/layout.js';
import { noGrad } from '../autograd/tape.js';
import type { CamTarget } from './gradcam.js';

/** Frobenius norm of a - b (float64 sum). */
export function frobeniusDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`frobeniusDistance: ${a.length} vs ${b.length} values`);
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return Math.sqrt(s);
}

/** Pearson correlation (float64, two-pass); NaN when either input has zero variance or is empty. */
export function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`pearson: ${a.length} vs ${b.length} values`);
  const n = a.length;
  if (n === 0) return NaN;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i];
    mb += b[i];
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i] - ma;
    const db = b[i] - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  if (saa === 0 || sbb === 0) return NaN;
  return Math.max(-1, Math.min(1, sab / Math.sqrt(saa * sbb)));
}

/**
 * CAM mass per unit area where region > threshold, divided by that outside. NaN when either part is
 * empty or the map has no mass outside and none inside; Infinity when all mass is inside.
 */
export function massRatio(cam: ArrayLike<number>, region: ArrayLike<number>, threshold = 0.5): number {
  if (cam.length !== region.length) throw new Error(`massRatio: map of ${cam.length} values, region of ${region.length}`);
  let inSum = 0;
  let inN = 0;
  let outSum = 0;
  let outN = 0;
  for (let i = 0; i < cam.length; i++) {
    if (region[i] > threshold) {
      inSum += cam[i];
      inN++;
    } else {
      outSum += cam[i];
      outN++;
    }
  }
  if (inN === 0 || outN === 0) return NaN;
  const inside = inSum / inN;
  const outside = outSum / outN;
  if (outside === 0) return inside === 0 ? NaN : Infinity;
  return inside / outside;
}

/** The `i`-th of `n` equal slices of a flat array (a view). */
export function mapOf(maps: Float32Array, n: number, i: number): Float32Array {
  const size = maps.length / n;
  if (!Number.isInteger(size)) throw new Error(`mapOf: ${maps.length} values do not split into ${n} maps`);
  return maps.subarray(i * size, (i + 1) * size);
}

export interface ConfidenceChange {
  /** sigmoid(score(x)) per image. */
  before: Float32Array;
  /** sigmoid(score(x * cam)) per image. */
  after: Float32Array;
  /** after - before. */
  change: Float32Array;
}

const sigmoid = (v: number) => (v >= 0 ? 1 / (1 + Math.exp(-v)) : Math.exp(v) / (1 + Math.exp(v)));

/**
 * pytorch-grad-cam's confidence change when each input x [N, C, H, W] is multiplied by its
 * normalised map (cams [N, H, W], broadcast over channels): sigmoid of the target score on x * cam
 * minus on x. Eval mode, no gradients; the model's training flag is restored.
 */
export async function confidenceChange(model: Detector, x: Tensor, cams: Float32Array, target: CamTarget = 'fake'): Promise<ConfidenceChange> {
  if (x.rank !== 4) throw new Error(`confidenceChange: input must be [N, C, H, W], got [${x.shape.join(', ')}]`);
  const [n, , H, W] = x.shape;
  if (cams.length !== n * H * W) throw new Error(`confidenceChange: ${cams.length} map values for ${n} maps of ${H}x${W}`);
  const sign = target === 'fake' ? 1 : target === 'real' ? -1 : NaN;
  if (Number.isNaN(sign)) throw new Error(`target '${String(target)}' is not one of fake, real`);
  const wasTraining = model.training;
  model.eval();
  let logits: Tensor;
  try {
    logits = noGrad(() =>
      tidy(() => {
        const m = fromArray(cams, [n, 1, H, W]);
        const xm = binary('mul', x, m);
        const both = [model.forward(x), model.forward(xm)];
        for (const y of both) {
          if (y.rank !== 2 || y.shape[0] !== n || y.shape[1] !== 1) throw new Error(`confidenceChange needs a single-logit model: output is [${y.shape.join(', ')}]`);
        }
        // One buffer [2N] (x rows, then x * cam rows): one readback serves both.
        return concat([both[0].reshape([n]), both[1].reshape([n])], 0);
      }),
    );
  } finally {
    if (wasTraining) model.train();
  }
  try {
    const v = (await logits.toArray()) as Float32Array;
    const before = new Float32Array(n);
    const after = new Float32Array(n);
    const change = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      before[i] = sigmoid(sign * v[i]);
      after[i] = sigmoid(sign * v[n + i]);
      change[i] = after[i] - before[i];
    }
    return { before, after, change };
  } finally {
    logits.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Summaries

export interface Stats {
  mean: number;
  /** Sample standard deviation (n - 1); NaN when fewer than two values. */
  std: number;
  /** Finite values counted. */
  n: number;
}

/** Mean and sample standard deviation of the finite values. */
export function stats(values: ArrayLike<number>): Stats {
  const v: number[] = [];
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i])) v.push(values[i]);
  if (!v.length) return { mean: NaN, std: NaN, n: 0 };
  const m = v.reduce((s, x) => s + x, 0) / v.length;
  const std = v.length < 2 ? NaN : Math.sqrt(v.reduce((s, x) => s + (x - m) * (x - m), 0) / (v.length - 1));
  return { mean: m, std, n: v.length };
}

/** One image at one level: the numbers per_image.csv holds. */
export interface ImageComparison {
  level: number;
  sparsity: number;
  /** Position in the image set. */
  image: number;
  /** Where it came from (dataset index or file). */
  source: string;
  /** 1 = fake, 0 = real, null = unknown. */
  label: 0 | 1 | null;
  logit: number;
  frobenius: number;
  pearson: number;
  confidenceBefore: number;
  confidenceAfter: number;
  confidenceChange: number;
  /** CAM mass ratio inside the blend mask (fakes with a known mask), else NaN. */
  maskRatio: number;
}

/**
 * Per-image numbers for one level against the reference (dense) maps. `cams` and `reference` are the
 * [N, H, W] normalised maps of the same images.
 */
export function compareLevel(o: {
  level: number;
  sparsity: number;
  cams: Float32Array;
  reference: Float32Array;
  logits: Float32Array;
  confidence: ConfidenceChange;
  sources: readonly string[];
  labels: readonly (0 | 1 | null)[];
  /** Blend masks [H, W] per image (null where unknown or real). */
  masks?: readonly (Float32Array | null)[];
}): ImageComparison[] {
  const n = o.sources.length;
  if (o.cams.length !== o.reference.length) throw new Error(`compareLevel: ${o.cams.length} vs ${o.reference.length} map values`);
  const out: ImageComparison[] = [];
  for (let i = 0; i < n; i++) {
    const a = mapOf(o.cams, n, i);
    const r = mapOf(o.reference, n, i);
    const mask = o.masks?.[i] ?? null;
    out.push({
      level: o.level,
      sparsity: o.sparsity,
      image: i,
      source: o.sources[i],
      label: o.labels[i],
      logit: o.logits[i],
      frobenius: frobeniusDistance(r, a),
      pearson: pearson(r, a),
      confidenceBefore: o.confidence.before[i],
      confidenceAfter: o.confidence.after[i],
      confidenceChange: o.confidence.change[i],
      maskRatio: mask ? massRatio(a, mask) : NaN,
    });
  }
  return out;
}

export interface LevelSummary {
  level: number;
  sparsity: number;
  n: number;
  frobenius_mean: number;
  frobenius_std: number;
  pearson_mean: number;
  pearson_std: number;
  /** Images whose correlation is defined (both maps non-constant). */
  pearson_n: number;
  confidence_change_mean: number;
  confidence_change_std: number;
  /** Fraction of images the level classifies correctly (logit > 0 = fake), over labelled ones. */
  accuracy: number;
  mask_ratio_mean: number;
  mask_ratio_std: number;
  mask_ratio_n: number;
}

/** summary.csv's row for one level. */
export function summarizeLevel(rows: readonly ImageComparison[]): LevelSummary {
  if (!rows.length) throw new Error('summarizeLevel: no images');
  const f = stats(rows.map((r) => r.frobenius));
  const p = stats(rows.map((r) => r.pearson));
  const c = stats(rows.map((r) => r.confidenceChange));
  const m = stats(rows.map((r) => r.maskRatio));
  const labelled = rows.filter((r) => r.label !== null);
  const correct = labelled.filter((r) => (r.logit > 0 ? 1 : 0) === r.label).length;
  return {
    level: rows[0].level,
    sparsity: rows[0].sparsity,
    n: rows.length,
    frobenius_mean: f.mean,
    frobenius_std: f.std,
    pearson_mean: p.mean,
    pearson_std: p.std,
    pearson_n: p.n,
    confidence_change_mean: c.mean,
    confidence_change_std: c.std,
    accuracy: labelled.length ? correct / labelled.length : NaN,
    mask_ratio_mean: m.mean,
    mask_ratio_std: m.std,
    mask_ratio_n: m.n,
  };
}

// Grad-CAM and Grad-CAM++ for the detectors (any Module; the layer is a named module whose output a
// forward hook takes), batched, on the GPU.
//
// Conventions follow pytorch-grad-cam, for a single-logit binary detector:
//   target 'fake': score = +logit; target 'real': score = -logit.
//   A = the tapped block's output [N, K, h, w]; g = d(score)/dA (per image: eval mode makes images
//   independent, so one backward of the batch's summed score gives every image's own gradient).
//   Grad-CAM:    w_k = mean_ij g_kij
//   Grad-CAM++:  alpha_kij = g^2 / (2 g^2 + (sum_ab A_kab) g^3 + 1e-6), alpha = 0 where g = 0,
//                w_k = sum_ij alpha_kij relu(g_kij)
//   cam = relu(sum_k w_k A_k)                          [N, h, w], kept as `raw`
//   then per image, as scale_cam_image(): (x - min) / (max - min + 1e-7), bilinear resize to the input
//   size, and (the multi-layer aggregation step) the same min-max normalisation once more -> `cam`.
//
// Grad-CAM++ and the exp score. The paper (Chattopadhyay et al. 2018, eq. 19) takes S = exp(Y) so
// that higher derivatives of S are powers of dY/dA; its alpha is then written in dY/dA alone, and
// w_k = exp(Y) sum_ij alpha relu(dY/dA). We use Y = the target score (+-logit) and drop the exp(Y)
// factor: a positive per-image constant that the min-max normalisation removes, so the normalised map
// is the paper's (up to the 1e-6 guard), and the raw map is the paper's divided by exp(Y). This is what
// pytorch-grad-cam computes with the logit as the score.
//
// Where the work happens: forward, backward, weights and the low-resolution map run as tensor ops on
// the GPU (raw reduce/map kernels; the tape only records from the tapped activation on, because the
// parameters are made constants for the duration). The upsampling runs on the host in float64 and is
// stored as float32: the maps are tiny (h*w is 4..196 for our detectors), the full-size maps have to
// come back to the host anyway (PNG overlays, metrics), and src/shaders is shared with other work, so a
// dedicated resize kernel would not pay for itself. The resize is torch's F.interpolate(mode='bilinear',
// align_corners=False) (half-pixel centres, edge clamping); cv2.resize(INTER_LINEAR), which
// pytorch-grad-cam uses, is the same formula in 11-bit fixed point.
import type { Detector } from '../nn/models/index.js';
import type { Module } from '../nn/module.js';
import { TAP_LAYERS, MODEL_NAMES, type ModelName } from '../nn/models/index.js';
import { tidy, type Tensor } from '../tensor/tensor.js';
import { binary, fill, mapExpr, unary } from '../tensor/ops/map.js';
import { mean as rawMean, sum as rawSum } from '../tensor/ops/reduce.js';
import { backward, noGrad } from '../autograd/tape.js';

export type CamMethod = 'gradcam' | 'gradcam++';
export type CamTarget = 'fake' | 'real';
export const CAM_METHODS: readonly CamMethod[] = ['gradcam', 'gradcam++'];
export const CAM_TARGETS: readonly CamTarget[] = ['fake', 'real'];

/** Added to max - min in the min-max normalisation, as pytorch-grad-cam's scale_cam_image. */
export const NORM_EPS = 1e-7;
/** Added to Grad-CAM++'s alpha denominator, as pytorch-grad-cam. */
export const GRADCAM_PP_EPS = 1e-6;

export interface CamOptions {
  /** Tap name (see TAP_LAYERS); default: the last tap the model's forward calls (its last block). */
  layer?: string;
  /** 'fake' = +logit (default), 'real' = -logit. */
  target?: CamTarget;
  /** 'gradcam' (default) or 'gradcam++'. */
  method?: CamMethod;
  /** Also return A and d(score)/dA (host copies; for tests and fixtures). */
  keepActivations?: boolean;
}

export interface CamResult {
  method: CamMethod;
  target: CamTarget;
  layer: string;
  n: number;
  /** Channels K of the tapped activation. */
  channels: number;
  /** [h, w] of the tapped activation. */
  mapSize: [number, number];
  /** [H, W] of the input. */
  inputSize: [number, number];
  /** The model's logit per image [N] (+ = fake). */
  logits: Float32Array;
  /** The target score per image [N]: +logit for 'fake', -logit for 'real'. */
  scores: Float32Array;
  /** Channel weights [N, K]. */
  weights: Float32Array;
  /** sum_k w_k A_k before the ReLU [N, h, w]. */
  prerelu: Float32Array;
  /** The raw map relu(sum_k w_k A_k) [N, h, w], unnormalised. */
  raw: Float32Array;
  /** The map at the input size, per image min-max normalised to [0, 1) [N, H, W]. */
  cam: Float32Array;
  /** A [N, K, h, w] (with keepActivations). */
  activations?: Float32Array;
  /** d(score)/dA [N, K, h, w] (with keepActivations). */
  gradients?: Float32Array;
}

/** The default Grad-CAM layer of a detector by CLI name: the last of TAP_LAYERS (its last block). */
export function defaultCamLayer(model: string): string {
  if (!(MODEL_NAMES as readonly string[]).includes(model)) throw new Error(`model '${model}' is not one of ${MODEL_NAMES.join(', ')}`);
  const taps = TAP_LAYERS[model as ModelName];
  return taps[taps.length - 1];
}

/**
 * Grad-CAM (or Grad-CAM++) of a batch x [N, C, H, W] for a single-logit detector. The model runs in
 * eval mode (batch-norm running statistics, dropout off); its training flag and its parameters'
 * requiresGrad are restored afterwards. x is not modified or disposed.
 */
export async function gradCam(model: Detector, x: Tensor, o: CamOptions = {}): Promise<CamResult> {
  const target = o.target ?? 'fake';
  const method = o.method ?? 'gradcam';
  if (!CAM_TARGETS.includes(target)) throw new Error(`Grad-CAM target '${String(target)}' is not one of ${CAM_TARGETS.join(', ')}`);
  if (!CAM_METHODS.includes(method)) throw new Error(`Grad-CAM method '${String(method)}' is not one of ${CAM_METHODS.join(', ')}`);
  if (x.rank !== 4) throw new Error(`Grad-CAM input must be [N, C, H, W], got [${x.shape.join(', ')}]`);
  const [n, , H, W] = x.shape;
  const sign = target === 'fake' ? 1 : -1;

  const params = model.parameters();
  const paramGrad = params.map((p) => p.requiresGrad);
  const wasTraining = model.training;
  model.eval();
  for (const p of params) p.requiresGrad = false;
  let out: { logits: Tensor; weights: Tensor; pre: Tensor; A: Tensor | null; G: Tensor | null };
  let layer = '';
  let shapeA: readonly number[] = [];
  try {
    const taps = tapNames(model, x);
    if (!taps.length) throw new Error('the model has no tap layers: no named module gives a [N, K, h, w] output once per forward');
    layer = o.layer ?? defaultTap(taps);
    if (!taps.includes(layer)) throw new Error(`layer '${layer}' is not a tap of this model (taps: ${taps.join(', ')})`);
    const tapped = moduleNamed(model, layer);
    out = tidy(() => {
      let leaf: Tensor | null = null;
      // A forward hook on the layer makes its output a leaf view (same storage, no history): the tape
      // records from there on, and backward leaves d(score)/dA in its .grad. Only one output may become
      // a leaf: nodes recorded after an earlier leaf but cut off by a later one would never run their
      // backward, and the tensors they saved for it would leak.
      const hook = tapped.registerForwardHook((_m, _x, a) => {
        if (leaf) return a;
        const l = a.reshape(a.shape);
        l.requiresGrad = true;
        leaf = l;
        return l;
      });
      let logits: Tensor;
      try {
        logits = model.forward(x);
      } finally {
        hook.remove();
      }
      if (!leaf) throw new Error(`tap '${layer}' was not called`);
      if (logits.rank !== 2 || logits.shape[0] !== n || logits.shape[1] !== 1) {
        throw new Error(`Grad-CAM needs a single-logit model: output is [${logits.shape.join(', ')}], expected [${n}, 1]`);
      }
      const A = leaf as Tensor;
      shapeA = A.shape;
      if (A.rank !== 4) throw new Error(`tap '${layer}' gives [${A.shape.join(', ')}], expected [N, K, h, w]`);
      if (!logits.requiresGrad) throw new Error(`the logits do not depend on tap '${layer}'`);
      backward(logits, fill(logits.shape, sign));
      const G = A.grad ?? fill(A.shape, 0);
      const weights = method === 'gradcam' ? rawMean(G, [2, 3], true) : gradCamPPWeights(A, G);
      const wA = binary('mul', A, weights);
      const pre = rawSum(wA, [1], false);
      return {
        logits: unary('copy', logits),
        weights: weights.reshape([n, A.shape[1]]),
        pre,
        A: o.keepActivations ? unary('copy', A) : null,
        G: o.keepActivations ? unary('copy', G) : null,
      };
    });
  } finally {
    params.forEach((p, i) => (p.requiresGrad = paramGrad[i]));
    if (wasTraining) model.train();
  }
  try {
    const [, K, h, w] = shapeA;
    const logits = (await out.logits.toArray()) as Float32Array;
    const weights = (await out.weights.toArray()) as Float32Array;
    const prerelu = (await out.pre.toArray()) as Float32Array;
    const raw = prerelu.map((v) => (v > 0 ? v : 0));
    const res: CamResult = {
      method,
      target,
      layer,
      n,
      channels: K,
      mapSize: [h, w],
      inputSize: [H, W],
      logits,
      scores: logits.map((v) => sign * v),
      weights,
      prerelu,
      raw,
      cam: camToInputSize(raw, n, h, w, H, W),
    };
    if (out.A) res.activations = (await out.A.toArray()) as Float32Array;
    if (out.G) res.gradients = (await out.G.toArray()) as Float32Array;
    return res;
  } finally {
    for (const t of [out.logits, out.weights, out.pre, out.A, out.G]) t?.dispose();
  }
}

const tapCache = new WeakMap<object, { key: string; names: string[] }>();

/**
 * The layers Grad-CAM can take for input x's shape: the named modules whose forward runs exactly once
 * and gives a [N, K, h, w] output, in call order (forward hooks on every module during a gradient-free
 * eval forward, cached per model and input shape). A module run several times per forward (a shared
 * pooling layer) has no single activation to explain. The model must already be in the mode the
 * caller wants.
 */
export function tapNames(model: Detector, x: Tensor): string[] {
  const key = x.shape.join('x');
  const hit = tapCache.get(model);
  if (hit && hit.key === key) return hit.names;
  const calls = new Map<string, number>();
  const order: string[] = [];
  const hooks = [...model.namedModules()]
    .filter(([name]) => name !== '')
    .map(([name, m]) =>
      m.registerForwardHook((_m, _x, y) => {
        calls.set(name, (calls.get(name) ?? 0) + 1);
        if (y.rank === 4 && !order.includes(name)) order.push(name);
      }),
    );
  try {
    noGrad(() => tidy(() => void model.forward(x)));
  } finally {
    for (const h of hooks) h.remove();
  }
  const names = order.filter((n) => calls.get(n) === 1);
  tapCache.set(model, { key, names });
  return names;
}

/**
 * The default layer: for a zoo detector the last of its TAP_LAYERS (the longest list whose layers it
 * all has: cnn5's five blocks contain Meso-4's four), else the last tap.
 */
function defaultTap(taps: readonly string[]): string {
  const zoo = Object.values(TAP_LAYERS)
    .filter((names) => names.every((n) => taps.includes(n)))
    .sort((a, b) => b.length - a.length)[0];
  return zoo ? zoo[zoo.length - 1] : taps[taps.length - 1];
}

function moduleNamed(model: Module, name: string): Module {
  for (const [n, m] of model.namedModules()) if (n === name) return m;
  throw new Error(`the model has no module '${name}'`);
}

/** Grad-CAM++ channel weights [N, K, 1, 1] from A and g = d(score)/dA (see the file comment). */
function gradCamPPWeights(A: Tensor, G: Tensor): Tensor {
  const sumA = rawSum(A, [2, 3], true);
  const alpha = mapExpr(
    'gradcampp_alpha',
    `select(0.0, x0 * x0 / (2.0 * x0 * x0 + x1 * x0 * x0 * x0 + ${GRADCAM_PP_EPS.toExponential()}), x0 != 0.0)`,
    [G, sumA],
  );
  const t = mapExpr('gradcampp_term', 'x0 * max(x1, 0.0)', [alpha, G]);
  return rawSum(t, [2, 3], true);
}

// ---------------------------------------------------------------------------------------------
// Host-side map processing

/**
 * Per-image min-max normalisation of `n` maps of `size` values each: (x - min) / (max - min + eps),
 * computed in float64. A constant map becomes all zeros. Returns a new array.
 */
export function normalizeMaps(maps: ArrayLike<number>, n: number, size: number, eps = NORM_EPS): Float32Array {
  if (maps.length !== n * size) throw new Error(`normalizeMaps: ${maps.length} values for ${n} maps of ${size}`);
  const out = new Float32Array(n * size);
  for (let i = 0; i < n; i++) {
    const o = i * size;
    let lo = Infinity;
    let hi = -Infinity;
    for (let p = 0; p < size; p++) {
      const v = maps[o + p];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const d = hi - lo + eps;
    for (let p = 0; p < size; p++) out[o + p] = (maps[o + p] - lo) / d;
  }
  return out;
}

/** Source index pairs and weights of a 1-D bilinear resize (half-pixel centres, edges clamped). */
function axisTaps(inSize: number, outSize: number): { i0: Int32Array; i1: Int32Array; f: Float64Array } {
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const f = new Float64Array(outSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const s = Math.min(Math.max((o + 0.5) * scale - 0.5, 0), inSize - 1);
    const a = Math.floor(s);
    i0[o] = a;
    i1[o] = Math.min(a + 1, inSize - 1);
    f[o] = s - a;
  }
  return { i0, i1, f };
}

/**
 * Bilinear resize of `n` maps [h, w] to [H, W], as torch's F.interpolate(mode='bilinear',
 * align_corners=False) (no antialiasing; used here to upsample). Float64 arithmetic, float32 result.
 * Each output is a convex combination of inputs, so the output range lies inside the input's.
 */
export function resizeBilinear(maps: ArrayLike<number>, n: number, h: number, w: number, H: number, W: number): Float32Array {
  if (maps.length !== n * h * w) throw new Error(`resizeBilinear: ${maps.length} values for ${n} maps of ${h}x${w}`);
  for (const [v, what] of [[h, 'h'], [w, 'w'], [H, 'H'], [W, 'W']] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`resizeBilinear: ${what} = ${v} must be a positive integer`);
  }
  const ty = axisTaps(h, H);
  const tx = axisTaps(w, W);
  const out = new Float32Array(n * H * W);
  for (let i = 0; i < n; i++) {
    const src = i * h * w;
    const dst = i * H * W;
    for (let y = 0; y < H; y++) {
      const r0 = src + ty.i0[y] * w;
      const r1 = src + ty.i1[y] * w;
      const fy = ty.f[y];
      for (let x = 0; x < W; x++) {
        const a = tx.i0[x];
        const b = tx.i1[x];
        const fx = tx.f[x];
        const top = maps[r0 + a] * (1 - fx) + maps[r0 + b] * fx;
        const bot = maps[r1 + a] * (1 - fx) + maps[r1 + b] * fx;
        out[dst + y * W + x] = top * (1 - fy) + bot * fy;
      }
    }
  }
  return out;
}

/**
 * Raw maps [N, h, w] -> normalised maps at the input size [N, H, W]: normalise, resize, normalise
 * (pytorch-grad-cam's scale_cam_image, then its aggregation's second scale_cam_image). Every output
 * map has min 0 and max (max - min) / (max - min + 1e-7) ~ 1, or is all zero when the raw map is flat.
 */
export function camToInputSize(raw: ArrayLike<number>, n: number, h: number, w: number, H: number, W: number): Float32Array {
  const up = resizeBilinear(normalizeMaps(raw, n, h * w), n, h, w, H, W);
  return normalizeMaps(up, n, H * W);
}

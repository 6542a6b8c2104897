// The two steps after rendering: a face swap (the donor's inner face degraded, misaligned, partly
// colour-corrected and blended through a feathered ellipse) and a camera model applied to real and fake
// alike, so the blend is the only label signal.
import { resizePlanar } from "./image.js";
import { Rng } from "./random.js";
import { Canvas, clamp01, lerp, normalize3, scaleRGB, type FaceFrame, type RGB } from "./synthetic-render.js";

export interface SwapParams {
  /** donor resolution factor before re-upsampling (the "GAN output size" blur) */
  resample: number;
  /** fraction of the donor-target mean colour difference left uncorrected */
  colourKeep: number;
  tint: RGB;
  /** mask feather as a fraction of the mask radius */
  feather: number;
  scale: number; rotate: number; tx: number; ty: number;
  maskCx: number; maskCy: number; maskRx: number; maskRy: number;
  /** how far the donor's light moves toward the target's (1 = same lighting) */
  lightMatch: number;
}

export function drawSwap(r: Rng, d: number): SwapParams {
  const jit = (lo: number, hi: number): number => lerp(lo, hi, d) * r.range(0.5, 1);
  const tintMag = lerp(0.09, 0.012, d);
  const tintDir = normalize3([r.range(-1, 1), r.range(-1, 1), r.range(-1, 1)]);
  return {
    resample: clamp01(lerp(0.28, 0.8, d) * r.range(0.85, 1.15)),
    colourKeep: lerp(0.85, 0.12, d) * r.range(0.6, 1.1),
    tint: scaleRGB(tintDir, tintMag * r.range(0.5, 1)),
    feather: lerp(0.05, 0.32, d) * r.range(0.8, 1.2),
    scale: 1 + (r.bool() ? 1 : -1) * jit(0.12, 0.02),
    rotate: (r.bool() ? 1 : -1) * jit(0.16, 0.02),
    tx: (r.bool() ? 1 : -1) * jit(0.1, 0.015),
    ty: (r.bool() ? 1 : -1) * jit(0.08, 0.012),
    maskCx: r.range(-0.04, 0.04),
    maskCy: r.range(0.08, 0.18),
    maskRx: r.range(0.74, 0.86),
    maskRy: r.range(0.74, 0.84),
    lightMatch: clamp01(d * r.range(0.8, 1.25)),
  };
}

function bilinearPlanar(img: Float32Array, S: number, c: number, x: number, y: number): number {
  // x, y in pixel-centre coordinates; edges clamp.
  x = x < 0 ? 0 : x > S - 1 ? S - 1 : x;
  y = y < 0 ? 0 : y > S - 1 ? S - 1 : y;
  const x0 = Math.floor(x), y0 = Math.floor(y);
  const x1 = Math.min(S - 1, x0 + 1), y1 = Math.min(S - 1, y0 + 1);
  const fx = x - x0, fy = y - y0;
  const o = c * S * S;
  const a = img[o + y0 * S + x0], b = img[o + y0 * S + x1];
  const cc = img[o + y1 * S + x0], dd = img[o + y1 * S + x1];
  return lerp(lerp(a, b, fx), lerp(cc, dd, fx), fy);
}

/** Blend the donor's inner face into the target; returns the blend mask. Mutates `target`. */
export function faceSwap(target: Canvas, tf: FaceFrame, donor: Canvas, df: FaceFrame, sw: SwapParams): Float32Array {
  const S = target.S, n = target.n;
  const Sd = Math.max(4, Math.round(S * sw.resample));
  const low = resizePlanar(donor.rgb, 3, S, S, Sd, Sd);
  const mask = new Float32Array(n);
  const warped = new Float32Array(3 * n);
  const tc = Math.cos(tf.rot), ts = Math.sin(tf.rot);
  const dc = Math.cos(df.rot), ds = Math.sin(df.rot);
  const wc = Math.cos(sw.rotate) * sw.scale, ws = Math.sin(sw.rotate) * sw.scale;
  const sum = [0, 0, 0, 0, 0, 0];
  let wsum = 0;
  for (let y = 0; y < S; y++) {
    const dy = (y + 0.5) / S - tf.cy;
    for (let x = 0; x < S; x++) {
      const dx = (x + 0.5) / S - tf.cx;
      const fx = (dx * tc + dy * ts) / tf.a;
      const fy = (-dx * ts + dy * tc) / tf.b;
      const mx = (fx - sw.maskCx) / sw.maskRx, my = (fy - sw.maskCy) / sw.maskRy;
      const rr = Math.sqrt(mx * mx + my * my);
      let a = (1 - rr) / sw.feather;
      if (a <= 0) continue;
      a = a >= 1 ? 1 : a * a * (3 - 2 * a);
      const p = y * S + x;
      mask[p] = a;
      // Target face frame -> (imperfectly aligned) donor face frame -> donor pixels.
      const gx = wc * fx - ws * fy + sw.tx, gy = ws * fx + wc * fy + sw.ty;
      const qx = gx * df.a, qy = gy * df.b;
      const u = df.cx + qx * dc - qy * ds, v = df.cy + qx * ds + qy * dc;
      for (let c = 0; c < 3; c++) {
        const val = bilinearPlanar(low, Sd, c, u * Sd - 0.5, v * Sd - 0.5);
        warped[c * n + p] = val;
        sum[c] += a * val;
        sum[3 + c] += a * target.rgb[c * n + p];
      }
      wsum += a;
    }
  }
  if (wsum === 0) return mask;
  const shift = [0, 1, 2].map((c) => (1 - sw.colourKeep) * (sum[3 + c] - sum[c]) / wsum + sw.tint[c]);
  for (let p = 0; p < n; p++) {
    const a = mask[p];
    if (a === 0) continue;
    for (let c = 0; c < 3; c++) {
      const i = c * n + p;
      target.rgb[i] += (warped[i] + shift[c] - target.rgb[i]) * a;
    }
  }
  return mask;
}

// Camera: applied to real and fake alike, so it carries no label information.

export function applyCamera(cv: Canvas, r: Rng, d: number): void {
  const S = cv.S, n = cv.n;
  // Global softness: at higher difficulty some real images are as soft as a swapped face, so blur alone
  // is not a label.
  let rgb = cv.rgb;
  if (r.bool(0.25 + 0.5 * d)) {
    const f = r.range(lerp(0.75, 0.45, d), 0.95);
    const Sd = Math.max(4, Math.round(S * f));
    rgb = resizePlanar(resizePlanar(rgb, 3, S, S, Sd, Sd), 3, Sd, Sd, S, S);
  }
  const temp = r.range(-0.06, 0.06);
  const gain: RGB = [1 + temp, 1, 1 - temp];
  const exposure = r.range(0.85, 1.15);
  const gamma = r.range(0.88, 1.12);
  const vignette = r.range(0, 0.35);
  const sigma = r.range(0.004, 0.03);
  // Gamma through a table: Math.pow per channel and pixel was most of the render time.
  const LUT_MAX = 1.5, LUT_N = 1536;
  const lut = new Float32Array(LUT_N + 2);
  for (let k = 0; k <= LUT_N + 1; k++) lut[k] = Math.pow((k / LUT_N) * LUT_MAX, gamma);
  // Noise from sums of 16-bit uniforms (Irwin-Hall): close enough to Gaussian for sensor noise, and far
  // cheaper than Box-Muller.
  const U = 1 / 65536;
  const lumScale = sigma * Math.sqrt(3); // sum of 4 uniforms: sd 1/sqrt(3)
  const chromaScale = 0.35 * sigma * Math.sqrt(12);
  for (let y = 0; y < S; y++) {
    const v = (y + 0.5) / S - 0.5;
    for (let x = 0; x < S; x++) {
      const u = (x + 0.5) / S - 0.5;
      const vig = 1 - vignette * (u * u + v * v) * 2;
      const p = y * S + x;
      const r1 = r.u32(), r2 = r.u32(), r3 = r.u32(), r4 = r.u32();
      const lum = lumScale * (((r1 & 0xffff) + (r1 >>> 16) + (r2 & 0xffff) + (r2 >>> 16)) * U - 2);
      const ch0 = chromaScale * ((r3 & 0xffff) * U - 0.5);
      const ch1 = chromaScale * ((r3 >>> 16) * U - 0.5);
      const ch2 = chromaScale * ((r4 & 0xffff) * U - 0.5);
      for (let c = 0; c < 3; c++) {
        let val = rgb[c * n + p] * gain[c] * exposure * vig;
        if (val <= 0) val = 0;
        else {
          const t = (val >= LUT_MAX ? LUT_MAX : val) * (LUT_N / LUT_MAX);
          const k = Math.floor(t);
          val = lut[k] + (lut[k + 1] - lut[k]) * (t - k);
        }
        val += lum + (c === 0 ? ch0 : c === 1 ? ch1 : ch2);
        cv.rgb[c * n + p] = clamp01(val);
      }
    }
  }
}

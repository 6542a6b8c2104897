// Image codecs and resampling for the data layer. Decoding/encoding goes through sharp (libvips);
// resampling is our own so that every layout produces the same bits for the same pixels, whatever
// libvips version or shrink-on-load shortcut is present.
import { writeFileAtomic } from '../io/atomic.js';
import { promises as fs } from "node:fs";
import * as path from "node:path";
import sharp from "sharp";

/** 8-bit RGB image, rows top to bottom, pixels interleaved (HWC). */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly channels: 3;
  readonly data: Uint8Array;
}

/** Integer pixel rectangle; `left + width <= image width` etc. */
export interface Rect {
  readonly left: number;
  readonly top: number;
  readonly width: number;
  readonly height: number;
}

/**
 * Thrown when a file cannot be read or decoded. The loader catches exactly this class to skip a sample,
 * so that programming errors still surface instead of being counted as "bad images".
 */
export class UnreadableImageError extends Error {
  readonly path: string;
  constructor(file: string, reason: string) {
    super(`cannot read image ${file}: ${firstLine(reason)}`);
    this.name = "UnreadableImageError";
    this.path = file;
  }
}

function firstLine(s: string): string {
  const line = s.split("\n").find((l) => l.trim().length > 0) ?? s;
  return line.trim();
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Largest image we decode, in pixels (width x height): 40 Mpx, about 7700x5200 (more than an 8K UHD
 * frame). A 16000x16000 PNG compresses to a few kilobytes and would take 4 GB per decode; anything above
 * the limit is refused from its header, before any pixel is decoded, and the loader skips it with a
 * warning naming the file. TICKETLAB_MAX_PIXELS overrides the limit.
 */
export const DEFAULT_MAX_PIXELS = 40_000_000;

export function maxImagePixels(): number {
  const env = Number(process.env.TICKETLAB_MAX_PIXELS);
  return Number.isSafeInteger(env) && env > 0 ? env : DEFAULT_MAX_PIXELS;
}

function tooLarge(width: number, height: number, limit: number): string {
  return `image is ${width}x${height} (${((width * height) / 1e6).toFixed(1)} Mpx), above the ${(limit / 1e6).toFixed(1)} Mpx limit (TICKETLAB_MAX_PIXELS)`;
}

/** Decode an encoded JPEG/PNG (8/16-bit, gray/RGB/RGBA) into 8-bit RGB. `label` names the source in errors. */
export async function decodeImageBuffer(buf: Uint8Array, label = "<buffer>"): Promise<RgbImage> {
  const limit = maxImagePixels();
  try {
    // failOn 'warning' turns truncated JPEGs into errors instead of silently grey-filled images.
    // No EXIF auto-rotation: PIL/torchvision do not rotate either, and reference pipelines feed raw pixels.
    // Alpha is dropped (as PIL's convert('RGB') does), not composited. limitInputPixels makes libvips
    // refuse an oversized image from its header, before allocating its pixels.
    const { data, info } = await sharp(buf, { failOn: "warning", limitInputPixels: limit })
      .removeAlpha()
      .toColourspace("srgb")
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return {
      width: info.width,
      height: info.height,
      channels: 3,
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    };
  } catch (e) {
    if (/pixel limit/i.test(errorText(e))) {
      const meta = await sharp(buf, { limitInputPixels: false }).metadata().catch(() => null);
      if (meta?.width && meta.height) throw new UnreadableImageError(label, tooLarge(meta.width, meta.height, limit));
    }
    throw new UnreadableImageError(label, errorText(e));
  }
}

/** Read and decode an image file; any failure (missing, truncated, not an image) names the path. */
export async function decodeImage(file: string): Promise<RgbImage> {
  let buf: Buffer;
  try {
    buf = await fs.readFile(file);
  } catch (e) {
    throw new UnreadableImageError(file, errorText(e));
  }
  return decodeImageBuffer(buf, file);
}

/** Width and height from the header only (cheap: no pixel decode). */
export async function imageSize(file: string): Promise<{ width: number; height: number }> {
  try {
    const meta = await sharp(file, { limitInputPixels: false }).metadata();
    if (!meta.width || !meta.height) throw new Error("no dimensions in header");
    const limit = maxImagePixels();
    if (meta.width * meta.height > limit) throw new Error(tooLarge(meta.width, meta.height, limit));
    return { width: meta.width, height: meta.height };
  } catch (e) {
    throw new UnreadableImageError(file, errorText(e));
  }
}

/** Encode RGB HWC to PNG bytes. */
export async function encodePng(img: RgbImage): Promise<Buffer> {
  checkImage(img);
  return sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  })
    .png({ compressionLevel: 6 })
    .toBuffer();
}

/** Rasterise an SVG document (text included: sharp's librsvg) to PNG bytes, at its own size. */
export async function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg, 'utf8')).png({ compressionLevel: 6 }).toBuffer();
}

// One atomic-write implementation serves the whole project (temp file + fsync + rename).
export { writeFileAtomic };

/** Encode to PNG and write atomically. */
export async function writePng(file: string, img: RgbImage): Promise<void> {
  await writeFileAtomic(file, await encodePng(img));
}

function checkImage(img: RgbImage): void {
  if (!Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width < 1 || img.height < 1) {
    throw new Error(`bad image size ${img.width}x${img.height}`);
  }
  if (img.data.length !== img.width * img.height * 3) {
    throw new Error(`image data has ${img.data.length} bytes, expected ${img.width * img.height * 3}`);
  }
}

/** Copy a rectangle out of an image. The rectangle must lie inside the image. */
export function cropImage(img: RgbImage, r: Rect): RgbImage {
  if (r.left < 0 || r.top < 0 || r.width < 1 || r.height < 1 ||
      r.left + r.width > img.width || r.top + r.height > img.height ||
      !Number.isInteger(r.left) || !Number.isInteger(r.top) || !Number.isInteger(r.width) || !Number.isInteger(r.height)) {
    throw new Error(`crop ${r.left},${r.top} ${r.width}x${r.height} outside image ${img.width}x${img.height}`);
  }
  const out = new Uint8Array(r.width * r.height * 3);
  const rowBytes = r.width * 3;
  for (let y = 0; y < r.height; y++) {
    const src = ((r.top + y) * img.width + r.left) * 3;
    out.set(img.data.subarray(src, src + rowBytes), y * rowBytes);
  }
  return { width: r.width, height: r.height, channels: 3, data: out };
}

// ---------------------------------------------------------------------------------------------
// Resampling: separable triangle (bilinear) filter whose support widens with the shrink factor,
// the same scheme as PIL's Image.resize(BILINEAR) and torchvision's antialias=True. Without the
// widening, shrinking a 1024px photo to 64px would alias (moire) and leak a resolution cue.

interface AxisWeights {
  start: Int32Array; // first source index per output index
  count: Int32Array; // number of taps per output index
  taps: number; // max taps (stride in `w`)
  w: Float32Array; // normalised weights, out * taps
}

const weightCache = new Map<string, AxisWeights>();

function axisWeights(inSize: number, outSize: number): AxisWeights {
  const key = `${inSize}>${outSize}`;
  const hit = weightCache.get(key);
  if (hit) return hit;
  const scale = inSize / outSize;
  const fscale = Math.max(scale, 1);
  const support = fscale; // triangle filter has radius 1, scaled when shrinking
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const w = new Float32Array(outSize * taps);
  const tmp = new Float64Array(taps);
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - support + 0.5));
    const hi = Math.min(inSize, Math.floor(center + support + 0.5));
    let total = 0;
    const n = hi - lo;
    for (let j = 0; j < n; j++) {
      const t = Math.abs((lo + j + 0.5 - center) / fscale);
      const v = t < 1 ? 1 - t : 0;
      tmp[j] = v;
      total += v;
    }
    start[i] = lo;
    count[i] = n;
    for (let j = 0; j < n; j++) w[i * taps + j] = total > 0 ? tmp[j] / total : 1 / n;
  }
  const res = { start, count, taps, w };
  if (weightCache.size > 256) weightCache.clear();
  weightCache.set(key, res);
  return res;
}

/**
 * Resize planar float images (C planes of H x W, e.g. CHW) to outH x outW with antialiased bilinear
 * filtering. Returns `src` itself when the size is unchanged.
 */
export function resizePlanar(
  src: Float32Array, channels: number, h: number, w: number, outH: number, outW: number,
): Float32Array {
  if (src.length !== channels * h * w) throw new Error(`resizePlanar: ${src.length} values, expected ${channels}x${h}x${w}`);
  if (outH < 1 || outW < 1 || !Number.isInteger(outH) || !Number.isInteger(outW)) {
    throw new Error(`resizePlanar: bad output size ${outW}x${outH}`);
  }
  if (outH === h && outW === w) return src;
  const ax = axisWeights(w, outW);
  const ay = axisWeights(h, outH);
  const mid = new Float32Array(h * outW);
  const out = new Float32Array(channels * outH * outW);
  for (let c = 0; c < channels; c++) {
    const plane = c * h * w;
    // horizontal pass
    for (let y = 0; y < h; y++) {
      const row = plane + y * w;
      for (let x = 0; x < outW; x++) {
        const s = row + ax.start[x];
        const n = ax.count[x];
        const wo = x * ax.taps;
        let acc = 0;
        for (let k = 0; k < n; k++) acc += src[s + k] * ax.w[wo + k];
        mid[y * outW + x] = acc;
      }
    }
    // vertical pass
    const oplane = c * outH * outW;
    for (let y = 0; y < outH; y++) {
      const s = ay.start[y];
      const n = ay.count[y];
      const wo = y * ay.taps;
      const orow = oplane + y * outW;
      for (let x = 0; x < outW; x++) out[orow + x] = 0;
      for (let k = 0; k < n; k++) {
        const wk = ay.w[wo + k];
        const mrow = (s + k) * outW;
        for (let x = 0; x < outW; x++) out[orow + x] += mid[mrow + x] * wk;
      }
    }
  }
  return out;
}

/** HWC uint8 -> CHW float in [0,1] at the image's own size. */
export function rgbToCHW(img: RgbImage): Float32Array {
  checkImage(img);
  const n = img.width * img.height;
  const out = new Float32Array(3 * n);
  const d = img.data;
  for (let p = 0; p < n; p++) {
    out[p] = d[3 * p] / 255;
    out[n + p] = d[3 * p + 1] / 255;
    out[2 * n + p] = d[3 * p + 2] / 255;
  }
  return out;
}

/**
 * CHW float in [0,1] (values outside are clamped) -> HWC uint8, rounding to nearest.
 */
export function chwToRgb(chw: Float32Array, width: number, height: number): RgbImage {
  const n = width * height;
  if (chw.length !== 3 * n) throw new Error(`chwToRgb: ${chw.length} values, expected 3x${height}x${width}`);
  const out = new Uint8Array(3 * n);
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) {
      const v = chw[c * n + p] * 255 + 0.5;
      out[3 * p + c] = v <= 0 ? 0 : v >= 255 ? 255 : v; // Uint8Array truncates: +0.5 makes it round
    }
  }
  return { width, height, channels: 3, data: out };
}

/** Resize an 8-bit image (antialiased bilinear, rounded back to 8 bits). */
export function resizeRgb(img: RgbImage, width: number, height: number): RgbImage {
  if (img.width === width && img.height === height) return img;
  const chw = resizePlanar(rgbToCHW(img), 3, img.height, img.width, height, width);
  return chwToRgb(chw, width, height);
}

/**
 * The model's input: CHW float32 in [0,1], stretched to size x size (aspect is not preserved: every layout
 * we read is already a square face crop, and stretching keeps the whole face in view for the odd one that is not).
 */
export function toCHWFloat(img: RgbImage, size: number): Float32Array {
  return resizePlanar(rgbToCHW(img), 3, img.height, img.width, size, size);
}

// Float32 value of every byte as rgbToCHW stores it (d / 255 rounded to float32), so the fused resize
// below reads exactly the numbers the planar one reads.
const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, v) => v / 255);

/**
 * The model's input as bytes: CHW uint8 at size x size, the same pixels as
 * `chwToRgb(toCHWFloat(img, size))` (antialiased bilinear in float32, rounded to the nearest byte as
 * PIL's Resize on an 8-bit image does before torchvision's ToTensor divides by 255). Fused: reads HWC
 * bytes directly and keeps one channel's intermediate rows, with the same operations in the same order
 * as resizePlanar + chwToRgb, so the bytes are identical (tested) at about a third of the memory traffic.
 */
export function toCHWBytes(img: RgbImage, size: number, out = new Uint8Array(3 * size * size)): Uint8Array {
  checkImage(img);
  if (!Number.isInteger(size) || size < 1) throw new Error(`toCHWBytes: bad output size ${size}`);
  if (out.length < 3 * size * size) throw new Error(`toCHWBytes: output holds ${out.length} bytes, needs ${3 * size * size}`);
  const { width: w, height: h, data: d } = img;
  const plane = size * size;
  if (w === size && h === size) {
    // resizePlanar returns its input at the same size, and byte -> /255 -> *255 rounds back to the byte.
    for (let p = 0; p < plane; p++) {
      out[p] = d[3 * p];
      out[plane + p] = d[3 * p + 1];
      out[2 * plane + p] = d[3 * p + 2];
    }
    return out;
  }
  const ax = axisWeights(w, size);
  const ay = axisWeights(h, size);
  // Horizontal pass for the three channels at once (taps and weights are shared; each channel's sum
  // still runs over k in order, so the floats are resizePlanar's), into three planes of h x size.
  const mid = new Float32Array(3 * h * size);
  const midPlane = h * size;
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = 0; x < size; x++) {
      const s = 3 * (row + ax.start[x]);
      const n = ax.count[x];
      const wo = x * ax.taps;
      let a0 = 0, a1 = 0, a2 = 0;
      for (let k = 0; k < n; k++) {
        const wk = ax.w[wo + k];
        const o = s + 3 * k;
        a0 += BYTE_TO_UNIT[d[o]] * wk;
        a1 += BYTE_TO_UNIT[d[o + 1]] * wk;
        a2 += BYTE_TO_UNIT[d[o + 2]] * wk;
      }
      const m = y * size + x;
      mid[m] = a0;
      mid[midPlane + m] = a1;
      mid[2 * midPlane + m] = a2;
    }
  }
  const acc = new Float32Array(size);
  for (let c = 0; c < 3; c++) {
    const oplane = c * plane;
    const mbase = c * midPlane;
    for (let y = 0; y < size; y++) {
      const s = ay.start[y];
      const n = ay.count[y];
      const wo = y * ay.taps;
      acc.fill(0);
      for (let k = 0; k < n; k++) {
        const wk = ay.w[wo + k];
        const mrow = mbase + (s + k) * size;
        for (let x = 0; x < size; x++) acc[x] += mid[mrow + x] * wk;
      }
      const orow = oplane + y * size;
      for (let x = 0; x < size; x++) {
        const v = acc[x] * 255 + 0.5;
        out[orow + x] = v <= 0 ? 0 : v >= 255 ? 255 : v;
      }
    }
  }
  return out;
}

/** CHW uint8 -> CHW float in [0,1], each value the float32 of byte / 255 (what rgbToCHW stores). */
export function bytesToUnit(bytes: Uint8Array, out = new Float32Array(bytes.length)): Float32Array {
  for (let i = 0; i < bytes.length; i++) out[i] = BYTE_TO_UNIT[bytes[i]];
  return out;
}

// Image codecs and resampling for the data layer. Decoding/encoding goes through sharp (libvips), JPEGs
// through libjpeg-turbo directly where it can give sharp's pixels (jpeg-turbo.ts); resampling is our own so that every layout produces the same bits for the same pixels, whatever
// libvips version or shrink-on-load shortcut is present.
import { writeFileAtomic } from '../io/atomic.js';
import { promises as fs, readFileSync } from "node:fs";
import * as path from "node:path";
import sharp from "sharp";
import { turboJpeg, type TurboJpeg } from "./jpeg-turbo.js";
import { resizeWasm } from "./resize-wasm.js";

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

/**
 * The fast path: a JPEG decoded by libjpeg-turbo, the same pixels sharp gives (jpeg-turbo.ts says which
 * files qualify). Null when the file is not one (then sharp decodes it, or names what is wrong with it).
 * An image above the pixel limit is refused from its header. `into` gives the buffer to decode into.
 */
function decodeTurbo(turbo: TurboJpeg, buf: Uint8Array, label: string, into: (bytes: number) => Uint8Array): RgbImage | null {
  const h = turbo.header(buf);
  if (!h) return null;
  const limit = maxImagePixels();
  if (h.width * h.height > limit) throw new UnreadableImageError(label, tooLarge(h.width, h.height, limit));
  const bytes = h.width * h.height * 3;
  const data = into(bytes).subarray(0, bytes);
  // A libjpeg warning (truncated, corrupt data) stops the decode; sharp then decodes it with
  // failOn 'warning' and names the file with its own message, as it always has.
  return turbo.decodeInto(buf, h, data) ? { width: h.width, height: h.height, channels: 3, data } : null;
}

const fresh = (bytes: number): Uint8Array => new Uint8Array(bytes);

/** Decode an encoded JPEG/PNG (8/16-bit, gray/RGB/RGBA) into 8-bit RGB. `label` names the source in errors. */
export async function decodeImageBuffer(buf: Uint8Array, label = "<buffer>"): Promise<RgbImage> {
  const turbo = await turboJpeg();
  return (turbo && decodeTurbo(turbo, buf, label, fresh)) || decodeWithSharp(buf, label);
}

/** decodeImageBuffer through sharp alone (non-JPEGs, JPEGs the fast path declines, no libjpeg-turbo). */
export async function decodeWithSharp(buf: Uint8Array, label = "<buffer>"): Promise<RgbImage> {
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

async function readImageFile(file: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (e) {
    throw new UnreadableImageError(file, errorText(e));
  }
}

/**
 * readImageFile without the thread pool: a decode worker reads its file and decodes it in one go, and
 * fs.promises' open/stat/read/close hops through libuv cost it more than the JPEG decode itself.
 */
export function readImageFileSync(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new UnreadableImageError(file, errorText(e));
  }
}

/** Read and decode an image file; any failure (missing, truncated, not an image) names the path. */
export async function decodeImage(file: string): Promise<RgbImage> {
  return decodeImageBuffer(await readImageFile(file), file);
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

function checkRect(img: RgbImage, r: Rect): void {
  if (r.left < 0 || r.top < 0 || r.width < 1 || r.height < 1 ||
      r.left + r.width > img.width || r.top + r.height > img.height ||
      !Number.isInteger(r.left) || !Number.isInteger(r.top) || !Number.isInteger(r.width) || !Number.isInteger(r.height)) {
    throw new Error(`crop ${r.left},${r.top} ${r.width}x${r.height} outside image ${img.width}x${img.height}`);
  }
}

/** Copy a rectangle out of an image. The rectangle must lie inside the image. */
export function cropImage(img: RgbImage, r: Rect): RgbImage {
  checkRect(img, r);
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
// The same values as doubles: the fused resize's inner loops then load doubles instead of converting.
const BYTE_TO_UNIT_F64 = Float64Array.from(BYTE_TO_UNIT);

/** One axis of toCHWBytes: per output index its first tap and tap count, weights as doubles (stride `taps`). */
interface TrimmedAxis {
  start: Int32Array;
  count: Int32Array;
  taps: number;
  w: Float64Array;
}

const trimmedCache = new Map<string, TrimmedAxis>();

/**
 * axisWeights without the zero weights at either end of a window (a triangle is zero only at its
 * ends). Dropping them keeps every sum bit for bit: a finite value times +0 is +0, and x + 0 is x in
 * float64, and x rounded to float32 is x again when x already is one; and they are 1/4 to 1/3 of the taps
 * when shrinking by a non-integer factor.
 */
function trimmedAxis(inSize: number, outSize: number): TrimmedAxis {
  const key = `${inSize}>${outSize}`;
  const hit = trimmedCache.get(key);
  if (hit) return hit;
  const a = axisWeights(inSize, outSize);
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const w = new Float64Array(outSize * a.taps);
  for (let i = 0; i < outSize; i++) {
    let lo = 0, hi = a.count[i];
    while (hi - lo > 1 && a.w[i * a.taps + lo] === 0) lo++;
    while (hi - lo > 1 && a.w[i * a.taps + hi - 1] === 0) hi--;
    start[i] = a.start[i] + lo;
    count[i] = hi - lo;
    for (let k = lo; k < hi; k++) w[i * a.taps + k - lo] = a.w[i * a.taps + k];
  }
  const res = { start, count, taps: a.taps, w };
  if (trimmedCache.size > 256) trimmedCache.clear();
  trimmedCache.set(key, res);
  return res;
}

/**
 * Which implementation of toCHWBytes' two passes runs: the WebAssembly one (resize-wasm.ts, about twice as
 * fast) or the JavaScript one below, its reference. Both give the same bytes (tested).
 */
let engine: "wasm" | "js" = "wasm";
export function setResizeEngine(e: "wasm" | "js"): void {
  engine = e;
}

// The horizontal pass's rows, kept between calls (a decode worker resizes one image at a time): a
// 320 px image's intermediate is about a megabyte, which would otherwise be allocated and zeroed per image.
let midScratch = new Float32Array(0);

/**
 * The model's input as bytes: CHW uint8 at size x size, the same pixels as
 * `chwToRgb(toCHWFloat(crop, size))` (antialiased bilinear in float32, rounded to the nearest byte as
 * PIL's Resize on an 8-bit image does before torchvision's ToTensor divides by 255). `region` resizes
 * that rectangle of the image (a face crop) without copying it out first.
 *
 * Fused and bit-identical to the planar path (tested): the horizontal pass sums each output pixel's
 * taps in order in float64 and rounds the sum to float32, as resizePlanar's does; the vertical pass
 * rounds its running sum to float32 after every tap, as resizePlanar's float32 accumulator row does.
 * Reads HWC bytes directly, keeps the intermediate rows interleaved (three independent sums per tap)
 * and sums a pixel's vertical taps in registers instead of sweeping an accumulator row per tap.
 */
export function toCHWBytes(img: RgbImage, size: number, out: Uint8Array = new Uint8Array(3 * size * size), region?: Rect): Uint8Array {
  checkImage(img);
  if (!Number.isInteger(size) || size < 1) throw new Error(`toCHWBytes: bad output size ${size}`);
  if (out.length < 3 * size * size) throw new Error(`toCHWBytes: output holds ${out.length} bytes, needs ${3 * size * size}`);
  const r = region ?? { left: 0, top: 0, width: img.width, height: img.height };
  if (region) checkRect(img, region);
  const d = img.data;
  const stride = 3 * img.width;
  const base = r.top * stride + 3 * r.left;
  const w = r.width, h = r.height;
  const plane = size * size;
  if (w === size && h === size) {
    // resizePlanar returns its input at the same size, and byte -> /255 -> *255 rounds back to the byte.
    for (let y = 0; y < size; y++) {
      const row = base + y * stride;
      const o = y * size;
      for (let x = 0; x < size; x++) {
        out[o + x] = d[row + 3 * x];
        out[plane + o + x] = d[row + 3 * x + 1];
        out[2 * plane + o + x] = d[row + 3 * x + 2];
      }
    }
    return out;
  }
  const ax = trimmedAxis(w, size);
  const ay = trimmedAxis(h, size);
  if (engine === "wasm") {
    resizeWasm(d, base, stride, w, ax, ay, size, BYTE_TO_UNIT_F64, out);
    return out;
  }
  // Only the rows some output row reads (all of them when shrinking).
  const y0 = ay.start[0];
  const y1 = ay.start[size - 1] + ay.count[size - 1];
  const midRow = 3 * size;
  if (midScratch.length < (y1 - y0) * midRow) midScratch = new Float32Array((y1 - y0) * midRow);
  const mid = midScratch;
  horizontalPass(d, base, stride, y0, y1, ax, size, mid);
  verticalPass(mid, ay, y0, size, out);
  return out;
}

/** toCHWBytes' first pass: rows y0..y1 of the region, each resized to `size` columns (float32, HWC). */
function horizontalPass(d: Uint8Array, base: number, stride: number, y0: number, y1: number, ax: TrimmedAxis, size: number, mid: Float32Array): void {
  const U = BYTE_TO_UNIT_F64;
  const xs = ax.start, xn = ax.count, xw = ax.w, xt = ax.taps;
  for (let y = y0; y < y1; y++) {
    const row = base + y * stride;
    let m = (y - y0) * 3 * size;
    for (let x = 0; x < size; x++) {
      let o = row + 3 * xs[x];
      const n = xn[x];
      let wi = x * xt;
      // The first two taps outside the loop (0 + p0 + p1 is p0 + p1): most windows have two or three.
      const w0 = xw[wi];
      let a0 = U[d[o]] * w0, a1 = U[d[o + 1]] * w0, a2 = U[d[o + 2]] * w0;
      if (n > 1) {
        const w1 = xw[wi + 1];
        a0 += U[d[o + 3]] * w1;
        a1 += U[d[o + 4]] * w1;
        a2 += U[d[o + 5]] * w1;
      }
      o += 6;
      wi += 2;
      for (let k = 2; k < n; k++, o += 3, wi++) {
        const wk = xw[wi];
        a0 += U[d[o]] * wk;
        a1 += U[d[o + 1]] * wk;
        a2 += U[d[o + 2]] * wk;
      }
      mid[m] = a0;
      mid[m + 1] = a1;
      mid[m + 2] = a2;
      m += 3;
    }
  }
}

/** toCHWBytes' second pass: the intermediate rows resized to `size` rows, rounded to CHW bytes. */
function verticalPass(mid: Float32Array, ay: TrimmedAxis, y0: number, size: number, out: Uint8Array): void {
  const fr = Math.fround;
  const midRow = 3 * size;
  const plane = size * size;
  const ys = ay.start, yn = ay.count, yw = ay.w, yt = ay.taps;
  for (let y = 0; y < size; y++) {
    const first = (ys[y] - y0) * midRow;
    const n = yn[y];
    const wo = y * yt;
    const w0 = yw[wo];
    const o0 = y * size, o1 = plane + o0, o2 = 2 * plane + o0;
    for (let x = 0; x < size; x++) {
      let m = first + 3 * x;
      let a0 = fr(mid[m] * w0), a1 = fr(mid[m + 1] * w0), a2 = fr(mid[m + 2] * w0);
      for (let k = 1; k < n; k++) {
        m += midRow;
        const wk = yw[wo + k];
        a0 = fr(a0 + mid[m] * wk);
        a1 = fr(a1 + mid[m + 1] * wk);
        a2 = fr(a2 + mid[m + 2] * wk);
      }
      const v0 = a0 * 255 + 0.5, v1 = a1 * 255 + 0.5, v2 = a2 * 255 + 0.5;
      out[o0 + x] = v0 <= 0 ? 0 : v0 >= 255 ? 255 : v0; // Uint8Array truncates: +0.5 makes it round
      out[o1 + x] = v1 <= 0 ? 0 : v1 >= 255 ? 255 : v1;
      out[o2 + x] = v2 <= 0 ? 0 : v2 >= 255 ? 255 : v2;
    }
  }
}

/**
 * Square crop of side max(w,h)*scale centred on an [x, y, w, h] box, clipped to the image (so crops at
 * the border are not square; they are stretched to the model size later, as the reference
 * preprocessing of OpenForensics does).
 */
export function cropRect(bbox: readonly [number, number, number, number], imgW: number, imgH: number, scale = 1.3): Rect {
  const [x, y, w, h] = bbox;
  const side = Math.max(w, h) * scale;
  const cx = x + w / 2, cy = y + h / 2;
  let left = Math.round(cx - side / 2), top = Math.round(cy - side / 2);
  let right = Math.round(cx + side / 2), bottom = Math.round(cy + side / 2);
  left = Math.min(Math.max(left, 0), imgW - 1);
  top = Math.min(Math.max(top, 0), imgH - 1);
  right = Math.min(Math.max(right, left + 1), imgW);
  bottom = Math.min(Math.max(bottom, top + 1), imgH);
  return { left, top, width: right - left, height: bottom - top };
}

/** A box of an image to crop around (cropRect) before resizing: an annotated face. */
export interface BoxCrop {
  box: [number, number, number, number];
  scale: number;
}

/**
 * A file as model inputs: decoded, then each box's crop (or, without boxes, the whole image) resized
 * to size x size CHW bytes, one after another in one buffer (one transfer from a decode worker).
 */
export async function decodeToBytes(file: string, size: number, boxes?: readonly BoxCrop[]): Promise<Uint8Array> {
  return decodeBufferToBytes(await readImageFile(file), file, size, boxes);
}

/** decodeToBytes of a file's bytes read already (`file` names it in errors). */
export async function decodeBufferToBytes(buf: Uint8Array, file: string, size: number, boxes?: readonly BoxCrop[]): Promise<Uint8Array> {
  const turbo = await turboJpeg();
  // From here to the resize nothing awaits, so the decode buffer reused between images (decodeScratch)
  // is read by this image's resize before another image's decode can overwrite it.
  const img = (turbo && decodeTurbo(turbo, buf, file, decodeScratch)) || (await decodeWithSharp(buf, file));
  return resizeToBytes(img, size, boxes);
}

// Decoded pixels between a JPEG's decode and its resize, kept between images (a decode worker decodes
// one after another): about 300 KB for a 320 px image. Larger images than SCRATCH_MAX get their own.
let scratch = new Uint8Array(0);
const SCRATCH_MAX = 3 * 2048 * 2048;
function decodeScratch(bytes: number): Uint8Array {
  if (bytes > SCRATCH_MAX) return new Uint8Array(bytes);
  if (scratch.length < bytes) scratch = new Uint8Array(bytes);
  return scratch;
}

function resizeToBytes(img: RgbImage, size: number, boxes?: readonly BoxCrop[]): Uint8Array {
  if (!boxes) return toCHWBytes(img, size);
  const per = 3 * size * size;
  const out = new Uint8Array(per * boxes.length);
  boxes.forEach((b, k) => toCHWBytes(img, size, out.subarray(k * per, (k + 1) * per), cropRect(b.box, img.width, img.height, b.scale)));
  return out;
}

/** CHW uint8 -> CHW float in [0,1], each value the float32 of byte / 255 (what rgbToCHW stores). */
export function bytesToUnit(bytes: Uint8Array, out = new Float32Array(bytes.length)): Float32Array {
  for (let i = 0; i < bytes.length; i++) out[i] = BYTE_TO_UNIT[bytes[i]];
  return out;
}

// Pictures of Grad-CAM maps: a JET heat map blended over the face (pytorch-grad-cam's
// show_cam_on_image), and text-free grids of such pictures (labels belong in the HTML around them).
import { writePng, type RgbImage } from '../data/image.js';

/**
 * The JET colour map at v in [0, 1] (clamped) as 8-bit RGB: the classic piecewise-linear jet
 * (dark blue -> blue -> cyan -> yellow -> red -> dark red), r = clamp(1.5 - |4v - 3|) and likewise g
 * (centre 2) and b (centre 1), which is what OpenCV's COLORMAP_JET and matplotlib's 'jet' tabulate.
 */
export function jet(v: number): [number, number, number] {
  const x = Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0;
  const ch = (c: number) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * x - c))));
  return [ch(3), ch(2), ch(1)];
}

const JET_LUT: Uint8Array = (() => {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) lut.set(jet(i / 255), 3 * i);
  return lut;
})();

/** Index into the 256-entry LUT as OpenCV does: uint8(255 * v), truncating. */
function lutIndex(v: number): number {
  const x = Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0;
  return Math.floor(255 * x) | 0;
}

/** The heat map alone: a map [H, W] in [0, 1] as a JET-coloured image. */
export function heatmapImage(cam: ArrayLike<number>, width: number, height: number): RgbImage {
  if (cam.length !== width * height) throw new Error(`heatmapImage: ${cam.length} values for ${width}x${height}`);
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    const k = lutIndex(cam[p]) * 3;
    data[3 * p] = JET_LUT[k];
    data[3 * p + 1] = JET_LUT[k + 1];
    data[3 * p + 2] = JET_LUT[k + 2];
  }
  return { width, height, channels: 3, data };
}

export interface OverlayOptions {
  /** Weight of the face in the blend (pytorch-grad-cam's image_weight); default 0.5. */
  imageWeight?: number;
  /**
   * Divide the blend by its maximum before quantising, as show_cam_on_image does (brightens images
   * whose blend does not reach 1); default true.
   */
  rescale?: boolean;
}

/**
 * The map over the face: (1 - w) * jet(cam) + w * image, as pytorch-grad-cam's show_cam_on_image.
 * `image` is CHW float in [0, 1] (3 x H x W, the model's input), `cam` a normalised [H, W] map.
 */
export function overlayCam(image: Float32Array, cam: ArrayLike<number>, width: number, height: number, o: OverlayOptions = {}): RgbImage {
  const n = width * height;
  if (image.length !== 3 * n) throw new Error(`overlayCam: image has ${image.length} values, expected 3x${height}x${width}`);
  if (cam.length !== n) throw new Error(`overlayCam: map has ${cam.length} values, expected ${height}x${width}`);
  const w = o.imageWeight ?? 0.5;
  if (!(w >= 0 && w <= 1)) throw new Error(`overlayCam: imageWeight ${w} is not in [0, 1]`);
  const blend = new Float32Array(3 * n);
  let max = 0;
  for (let p = 0; p < n; p++) {
    const k = lutIndex(cam[p]) * 3;
    for (let c = 0; c < 3; c++) {
      const px = Math.min(1, Math.max(0, image[c * n + p]));
      const v = (1 - w) * (JET_LUT[k + c] / 255) + w * px;
      blend[3 * p + c] = v;
      if (v > max) max = v;
    }
  }
  const scale = (o.rescale ?? true) && max > 0 ? 1 / max : 1;
  const data = new Uint8Array(3 * n);
  // uint8(255 * v) truncates, as numpy's cast in show_cam_on_image.
  for (let i = 0; i < 3 * n; i++) data[i] = Math.min(255, Math.floor(255 * blend[i] * scale));
  return { width, height, channels: 3, data };
}

/** The model's input (CHW float in [0, 1]) as an 8-bit image, rounding to nearest. */
export function inputImage(image: Float32Array, width: number, height: number): RgbImage {
  const n = width * height;
  if (image.length !== 3 * n) throw new Error(`inputImage: ${image.length} values, expected 3x${height}x${width}`);
  const data = new Uint8Array(3 * n);
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) data[3 * p + c] = Math.round(255 * Math.min(1, Math.max(0, image[c * n + p])));
  }
  return { width, height, channels: 3, data };
}

/** Nearest-neighbour enlargement by an integer factor (keeps the map's cells crisp in small images). */
export function scaleImage(img: RgbImage, factor: number): RgbImage {
  if (!Number.isInteger(factor) || factor < 1) throw new Error(`scaleImage: factor ${factor} must be a positive integer`);
  if (factor === 1) return img;
  const W = img.width * factor;
  const H = img.height * factor;
  const data = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    const sy = Math.floor(y / factor);
    for (let x = 0; x < W; x++) {
      const s = (sy * img.width + Math.floor(x / factor)) * 3;
      const d = (y * W + x) * 3;
      data[d] = img.data[s];
      data[d + 1] = img.data[s + 1];
      data[d + 2] = img.data[s + 2];
    }
  }
  return { width: W, height: H, channels: 3, data };
}

export interface GridOptions {
  /** Pixels between cells (default 4). */
  gap?: number;
  /** Extra pixels between the first column and the rest, e.g. inputs vs maps (default 0). */
  firstColumnGap?: number;
  /** Extra pixels between row groups, after each row index listed (e.g. reals then fakes). */
  rowBreaks?: readonly number[];
  /** Background grey level 0..255 (default 255, white). */
  background?: number;
}

/**
 * Lays images out as rows x columns (cells[r][c]); every cell must have the same size. Text-free on
 * purpose: the page around it names rows and columns.
 */
export function imageGrid(cells: readonly (readonly RgbImage[])[], o: GridOptions = {}): RgbImage {
  const rows = cells.length;
  const cols = rows ? cells[0].length : 0;
  if (!rows || !cols) throw new Error('imageGrid: no cells');
  const cw = cells[0][0].width;
  const ch = cells[0][0].height;
  cells.forEach((row, r) => {
    if (row.length !== cols) throw new Error(`imageGrid: row ${r} has ${row.length} cells, row 0 has ${cols}`);
    row.forEach((c, k) => {
      if (c.width !== cw || c.height !== ch) throw new Error(`imageGrid: cell (${r}, ${k}) is ${c.width}x${c.height}, expected ${cw}x${ch}`);
    });
  });
  const gap = o.gap ?? 4;
  const breakGap = gap * 2;
  const xs: number[] = [];
  let x = gap;
  for (let c = 0; c < cols; c++) {
    xs.push(x);
    x += cw + gap + (c === 0 ? (o.firstColumnGap ?? 0) : 0);
  }
  const W = x;
  const ys: number[] = [];
  let y = gap;
  for (let r = 0; r < rows; r++) {
    ys.push(y);
    y += ch + gap + (o.rowBreaks?.includes(r) ? breakGap : 0);
  }
  const H = y;
  const data = new Uint8Array(W * H * 3).fill(Math.min(255, Math.max(0, Math.round(o.background ?? 255))));
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const img = cells[r][c];
      for (let yy = 0; yy < ch; yy++) {
        const src = yy * cw * 3;
        data.set(img.data.subarray(src, src + cw * 3), ((ys[r] + yy) * W + xs[c]) * 3);
      }
    }
  }
  return { width: W, height: H, channels: 3, data };
}

/** Writes an image as PNG (atomically, creating folders). */
export function savePng(file: string, img: RgbImage): Promise<void> {
  return writePng(file, img);
}

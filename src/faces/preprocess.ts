// The networks' inputs, made on the host as face-api makes them (NetInput.toBatchTensor): zero-pad the
// image to a square, resize to size x size with TF's legacy bilinear rule (align_corners = false,
// half_pixel_centers = false: source = dest * in / out, neighbours floor and ceil clipped to the image),
// then map each channel's 0..255 to the net's range. Output CHW float32.
//
// The detector pads at the bottom or right (toBatchTensor(512, false)); the landmark net centres the
// image (toBatchTensor(112, true): padToSquare puts round(diff / 2) rows or columns after the image and
// the rest before it).
import type { RgbImage } from '../data/image.js';

/** face-api's mean RGB for the landmark net's input: (v - mean) / 255. */
export const LANDMARK_MEAN_RGB = [122.782, 117.001, 104.298] as const;

function squareResize(img: RgbImage, size: number, centre: boolean, norm: (v: number, c: number) => number, out: Float32Array): Float32Array {
  const side = Math.max(img.width, img.height);
  const diff = side - Math.min(img.width, img.height);
  const before = centre ? diff - Math.round(diff * 0.5) : 0;
  const offX = img.width < img.height ? before : 0;
  const offY = img.height < img.width ? before : 0;
  const ratio = side / size;
  const px = (y: number, x: number, c: number) => {
    const iy = y - offY;
    const ix = x - offX;
    return iy >= 0 && ix >= 0 && iy < img.height && ix < img.width ? img.data[(iy * img.width + ix) * 3 + c] : 0;
  };
  const plane = size * size;
  for (let oy = 0; oy < size; oy++) {
    const sy = oy * ratio;
    const y0 = Math.floor(sy);
    const y1 = Math.min(side - 1, Math.ceil(sy));
    const fy = sy - y0;
    for (let ox = 0; ox < size; ox++) {
      const sx = ox * ratio;
      const x0 = Math.floor(sx);
      const x1 = Math.min(side - 1, Math.ceil(sx));
      const fx = sx - x0;
      for (let c = 0; c < 3; c++) {
        const tl = px(y0, x0, c);
        const top = tl + (px(y0, x1, c) - tl) * fx;
        const bl = px(y1, x0, c);
        const bottom = bl + (px(y1, x1, c) - bl) * fx;
        out[c * plane + oy * size + ox] = norm(top + (bottom - top) * fy, c);
      }
    }
  }
  return out;
}

/** A batch [N, 3, size, size] (flat) of one net's inputs, one image per slot. */
export function batchInput(images: readonly RgbImage[], size: number, prep: (img: RgbImage, size: number, out: Float32Array) => Float32Array): Float32Array {
  const plane = 3 * size * size;
  const out = new Float32Array(images.length * plane);
  images.forEach((img, i) => prep(img, size, out.subarray(i * plane, (i + 1) * plane)));
  return out;
}

/** SSD-MobileNet's input: padded at the bottom/right, 0..255 -> -1..1. */
export function detectorInput(img: RgbImage, size: number, out: Float32Array = new Float32Array(3 * size * size)): Float32Array {
  return squareResize(img, size, false, (v) => v / 127.5 - 1, out);
}

/** The landmark net's input: padded on both sides (centred), (v - mean RGB) / 255. */
export function landmarkInput(img: RgbImage, size: number, out: Float32Array = new Float32Array(3 * size * size)): Float32Array {
  return squareResize(img, size, true, (v, c) => (v - LANDMARK_MEAN_RGB[c]) / 255, out);
}

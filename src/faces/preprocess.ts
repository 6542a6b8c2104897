// The detector's input, made on the host as face-api makes it (NetInput.toBatchTensor(512, false)):
// zero-pad the image at the bottom or right to a square, resize to size x size with TF's legacy bilinear
// rule (align_corners = false, half_pixel_centers = false: source = dest * in / out, neighbours floor and
// ceil clipped to the image), then map 0..255 to -1..1. Output CHW float32.
import type { RgbImage } from '../data/image.js';

export function detectorInput(img: RgbImage, size: number, out = new Float32Array(3 * size * size)): Float32Array {
  const side = Math.max(img.width, img.height);
  const ratio = side / size;
  const px = (y: number, x: number, c: number) => (y < img.height && x < img.width ? img.data[(y * img.width + x) * 3 + c] : 0);
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
        out[c * plane + oy * size + ox] = (top + (bottom - top) * fy) / 127.5 - 1;
      }
    }
  }
  return out;
}

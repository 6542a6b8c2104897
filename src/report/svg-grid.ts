// A small labelled heatmap as an SVG string: a rows x cols grid of cells shaded by a value in [0, 1],
// each cell optionally printing its value. Used for the surviving kernel taps of a mask (3x3, 5x5, ...);
// larger grids (filter-by-channel pictures) are PNGs, where one SVG element per cell would not scale.
import { escapeXml } from '../util/escape.js';

export interface HeatmapOptions {
  title: string;
  rows: number;
  cols: number;
  /** rows x cols values in [0, 1], row-major. */
  values: ArrayLike<number>;
  /** Cell text; default: the value as a percentage. null: no text. */
  label?: ((v: number) => string) | null;
  /** Cell size in px (default 34). */
  cell?: number;
}

/** Colour of a value in [0, 1]: white (0) to dark blue (1), readable in print and for colour-blind readers. */
export function shade(v: number): [number, number, number] {
  const t = Math.max(0, Math.min(1, Number.isFinite(v) ? v : 0));
  return [Math.round(255 - t * (255 - 8)), Math.round(255 - t * (255 - 48)), Math.round(255 - t * (255 - 107))];
}

export function heatmapSvg(o: HeatmapOptions): string {
  const cell = o.cell ?? 34;
  const label = o.label === undefined ? (v: number) => `${Math.round(v * 100)}%` : o.label;
  const top = 26;
  const pad = 8;
  const w = Math.max(o.cols * cell + 2 * pad, o.title.length * 7 + 2 * pad);
  const h = top + o.rows * cell + pad;
  const x0 = (w - o.cols * cell) / 2;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="system-ui, 'DejaVu Sans', Helvetica, Arial, sans-serif">`,
    `<title>${escapeXml(o.title)}</title>`,
    `<rect width="${w}" height="${h}" fill="#fff"/>`,
    `<text x="${w / 2}" y="17" text-anchor="middle" font-size="12" fill="#222">${escapeXml(o.title)}</text>`,
  ];
  for (let r = 0; r < o.rows; r++) {
    for (let c = 0; c < o.cols; c++) {
      const v = o.values[r * o.cols + c];
      const [R, G, B] = shade(v);
      const x = x0 + c * cell;
      const y = top + r * cell;
      parts.push(`<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="rgb(${R},${G},${B})" stroke="#999" stroke-width="0.5"/>`);
      if (label) parts.push(`<text x="${x + cell / 2}" y="${y + cell / 2 + 4}" text-anchor="middle" font-size="10.5" fill="${v > 0.55 ? '#fff' : '#222'}">${escapeXml(label(v))}</text>`);
    }
  }
  parts.push('</svg>');
  return parts.join('\n');
}

export interface PictureGridOptions {
  title: string;
  /** What the rows and columns are ('filters (output channels)', 'input channels', 'inputs', ...). */
  rowsLabel: string;
  colsLabel: string;
  rows: number;
  cols: number;
  /** The picture (one cell per row x column, shaded by `shade`) as PNG bytes, and its size in px. */
  png: Uint8Array;
  width: number;
  height: number;
  /** What the shade means, for the legend (values 0 to 1 are shown as 0% to 100%). */
  legend: string;
}

/**
 * A large grid as a titled, labelled figure: the pixel picture (a PNG, embedded; one SVG element per
 * cell would not scale to 512 x 512) framed by the title, axis names with their first and last index,
 * and a colour legend. Rasterised by svgToPng, it is also the PNG the report shows.
 */
export function pictureGridSvg(o: PictureGridOptions): string {
  const left = 44;
  const top = 30;
  const legendH = 46;
  const titleW = o.title.length * 6.6 + 16;
  const w = Math.ceil(Math.max(left + o.width + 16, titleW, left + 160 + 16 + o.legend.length * 5.8));
  // A flat picture (a linear layer: few rows) still leaves room for the rotated row label.
  const ph = Math.max(o.height, (o.rowsLabel.length + 6) * 6.2);
  const h = Math.ceil(top + ph + 34 + legendH);
  const x1 = left + o.width;
  const y1 = top + o.height;
  const lx = left;
  const lw = 160;
  const ly = top + ph + 40;
  const stops = [0, 0.25, 0.5, 0.75, 1].map((t) => {
    const [r, g, b] = shade(t);
    return `<stop offset="${t}" stop-color="rgb(${r},${g},${b})"/>`;
  });
  const b64 = Buffer.from(o.png).toString('base64');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="'DejaVu Sans', system-ui, Helvetica, Arial, sans-serif">`,
    `<title>${escapeXml(o.title)}</title>`,
    `<rect width="${w}" height="${h}" fill="#fff"/>`,
    `<text x="${w / 2}" y="18" text-anchor="middle" font-size="12" fill="#222">${escapeXml(o.title)}</text>`,
    `<image x="${left}" y="${top}" width="${o.width}" height="${o.height}" image-rendering="pixelated" xlink:href="data:image/png;base64,${b64}" href="data:image/png;base64,${b64}"/>`,
    `<rect x="${left}" y="${top}" width="${o.width}" height="${o.height}" fill="none" stroke="#666" stroke-width="0.75"/>`,
    // Axes: the first and last index of each, and what they count.
    `<text x="${left - 4}" y="${top + 9}" text-anchor="end" font-size="9" fill="#444">0</text>`,
    `<text x="${left - 4}" y="${y1}" text-anchor="end" font-size="9" fill="#444">${o.rows - 1}</text>`,
    `<text x="${left}" y="${y1 + 11}" font-size="9" fill="#444">0</text>`,
    `<text x="${x1}" y="${y1 + 11}" text-anchor="end" font-size="9" fill="#444">${o.cols - 1}</text>`,
    `<text x="${left + o.width / 2}" y="${y1 + 23}" text-anchor="middle" font-size="10.5" fill="#222">${escapeXml(o.colsLabel)} (${o.cols})</text>`,
    `<text transform="translate(14 ${top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="10.5" fill="#222">${escapeXml(o.rowsLabel)} (${o.rows})</text>`,
    // Legend: the colour ramp with its ends.
    `<defs><linearGradient id="ramp">${stops.join('')}</linearGradient></defs>`,
    `<rect x="${lx}" y="${ly}" width="${lw}" height="10" fill="url(#ramp)" stroke="#666" stroke-width="0.5"/>`,
    `<text x="${lx}" y="${ly + 21}" font-size="9" fill="#444">0%</text>`,
    `<text x="${lx + lw}" y="${ly + 21}" text-anchor="end" font-size="9" fill="#444">100%</text>`,
    `<text x="${lx + lw + 8}" y="${ly + 9}" font-size="9.5" fill="#222">${escapeXml(o.legend)}</text>`,
    '</svg>',
  ].join('\n');
}

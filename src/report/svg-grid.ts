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

// Dependency-free SVG charts for run reports: line plots (accuracy vs sparsity, loss curves) and
// grouped bar charts (per-layer sparsity). Output is a standalone SVG string that renders the same in
// browsers, when inlined into HTML, and through librsvg (sharp), so only presentation attributes are
// used: a <style> block would leak into the page an SVG is inlined into.
import { escapeXml } from '../util/escape.js';

/**
 * Okabe–Ito palette: distinguishable under the common colour-vision deficiencies. Yellow comes last
 * because it is faint on white; black before it so eight series still read.
 */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'] as const;

/** Marker shapes cycle with colours so series stay apart in greyscale prints too. */
export type MarkerShape = 'circle' | 'square' | 'triangle' | 'diamond' | 'triangle-down' | 'cross';
const MARKERS: readonly MarkerShape[] = ['circle', 'square', 'triangle', 'diamond', 'triangle-down', 'cross'];

export type Point = readonly [number, number];

export interface LineSeries {
  name: string;
  points: readonly Point[];
  dashed?: boolean;
  /** Overrides the palette colour (any SVG colour). */
  color?: string;
  marker?: MarkerShape;
  /**
   * A shaded band around the line (e.g. +-1 sd over seeds): [x, low, high] per point, drawn under the
   * lines in the series' colour; non-finite entries are skipped.
   */
  band?: readonly (readonly [number, number, number])[];
}

export type TickFormat = (value: number) => string;

export interface LinePlotOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly LineSeries[];
  /** Explicit x tick positions (e.g. the sparsity of each pruning round) instead of automatic ones. */
  xTicks?: readonly number[];
  /** Fixed y extent; data outside it is clipped at the plot edge. */
  yRange?: readonly [number, number];
  xRange?: readonly [number, number];
  xScale?: 'linear' | 'log';
  xTickFormat?: TickFormat;
  yTickFormat?: TickFormat;
  /** Default true; markers make single points and sparse series visible. */
  markers?: boolean;
  width?: number;
  height?: number;
}

export interface BarSeries {
  name: string;
  /** One value per category; null or NaN leaves a gap. */
  values: readonly (number | null)[];
  color?: string;
}

export interface BarChartOptions {
  title: string;
  xLabel?: string;
  yLabel: string;
  categories: readonly string[];
  series: readonly BarSeries[];
  yRange?: readonly [number, number];
  yTickFormat?: TickFormat;
  /** Print each bar's value above it (readable up to a few dozen bars). */
  valueLabels?: boolean;
  /** Minimum width; grows when there are many bars so none gets thinner than a few pixels. */
  width?: number;
  height?: number;
}

const FONT = "system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', Helvetica, Arial, sans-serif";
const TEXT = '#222';
const MUTED = '#555';
const GRID = '#e3e3e3';
const AXIS = '#444';
const TICK_FONT = 11;
const LABEL_FONT = 12.5;
const TITLE_FONT = 15;
// Average advance of a sans-serif glyph relative to the font size: enough to reserve space and avoid
// overlaps without measuring text (which an SVG string cannot do).
const CHAR_WIDTH = 0.6;
// Keeps markers at the extremes off the axis lines.
const INSET = 10;

function textWidth(text: string, fontSize: number): number {
  return [...text].length * fontSize * CHAR_WIDTH;
}

function n(v: number): string {
  return String(Math.round(v * 100) / 100);
}

// Stable per-chart id: several charts inlined into one HTML page must not share clip-path ids, and a
// content hash (unlike a counter) keeps the output deterministic.
function chartId(seed: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < seed.length; i++) {
    h ^= seed.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return `tl${(h >>> 0).toString(36)}`;
}

// ---------------------------------------------------------------------------------------------------
// Ticks and number formatting

/**
 * Orders a range and widens it when it is too narrow to subdivide: spans below a billionth of the values
 * (or absurdly small ones) become the single value +-10% (+-1 around zero), so a lone point sits mid-axis.
 */
function widenDegenerate(lo: number, hi: number): [number, number] {
  if (lo > hi) [lo, hi] = [hi, lo];
  if (hi - lo > Math.abs(lo + hi) * 1e-9 && hi - lo >= 1e-290) return [lo, hi];
  const mid = (lo + hi) / 2;
  const pad = Math.abs(mid) < 1e-200 ? 1 : Math.abs(mid) * 0.1;
  return [mid - pad, mid + pad];
}

/** The 1-2-5 step nearest to span/target. */
export function niceStep(span: number, target: number): number {
  const raw = span / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const r = raw / mag;
  // Geometric midpoints between 1, 2, 5 and 10 (as d3 does), so the step closest in ratio wins.
  const m = r >= Math.sqrt(50) ? 10 : r >= Math.sqrt(10) ? 5 : r >= Math.SQRT2 ? 2 : 1;
  return m * mag;
}

// Clamped to toFixed's limit; such tiny steps are labelled in exponent form anyway (formatTicks).
function decimalsOf(step: number): number {
  return Math.min(100, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

export interface NiceScale {
  lo: number;
  hi: number;
  step: number;
  ticks: number[];
}

/**
 * Nice ticks covering [lo, hi] on a 1-2-5 step. With `extend` the domain grows to the enclosing ticks
 * (axes end on a labelled value); without, it stays as given and only ticks inside are returned.
 * Degenerate ranges (one value) are widened so a lone point sits mid-axis.
 */
export function niceTicks(lo: number, hi: number, target = 6, extend = true): NiceScale {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return niceTicks(0, 1, target, extend);
  [lo, hi] = widenDegenerate(lo, hi);
  const step = niceStep(hi - lo, target);
  // Integer tick indices avoid accumulating 0.1 + 0.2 style drift; 15 significant digits remove what
  // remains (3 * 0.1 -> 0.3) at any magnitude, and spans are at least 1e-9 relative, so ticks stay distinct.
  const first = extend ? Math.floor(lo / step + 1e-9) : Math.ceil(lo / step - 1e-9);
  const last = extend ? Math.ceil(hi / step - 1e-9) : Math.floor(hi / step + 1e-9);
  const ticks: number[] = [];
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toPrecision(15)) + 0);
  return extend ? { lo: ticks[0], hi: ticks[ticks.length - 1], step, ticks } : { lo, hi, step, ticks };
}

/** Ticks for a log axis: powers of ten, with 2x and 5x between them when the range is short. */
export function logTicks(lo: number, hi: number): number[] {
  const kLo = Math.floor(Math.log10(lo));
  const kHi = Math.ceil(Math.log10(hi));
  const inRange = (v: number): boolean => v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9);
  const build = (mults: number[]): number[] => {
    const out: number[] = [];
    for (let k = kLo; k <= kHi; k++) for (const m of mults) out.push(Number((m * 10 ** k).toPrecision(12)));
    return out.filter(inRange);
  };
  let ticks = build([1]);
  if (ticks.length < 4) ticks = build([1, 2, 5]);
  if (ticks.length < 3) ticks = build([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  return ticks;
}

const SI: readonly [number, string][] = [
  [1e12, 'T'],
  [1e9, 'G'],
  [1e6, 'M'],
  [1e3, 'k'],
];

// Typographic minus: a hyphen looks like a dash next to digits.
function minus(text: string): string {
  return text.replace(/^-/, '\u2212');
}

/** Formats ticks sharing one step with the same number of decimals; large values get k/M/G suffixes. */
export function formatTicks(ticks: readonly number[], step: number): string[] {
  const maxAbs = Math.max(0, ...ticks.map(Math.abs));
  const si = maxAbs >= 1e4 ? SI.find(([div]) => maxAbs >= div) : undefined;
  const div = si ? si[0] : 1;
  const suffix = si ? si[1] : '';
  const d = decimalsOf(step / div);
  if (d > 6) {
    // Steps like 1e-7: fixed notation would be all zeros; give just enough significant digits instead.
    const digits = Math.min(21, Math.max(1, Math.floor(Math.log10(maxAbs)) + 1 + decimalsOf(step)));
    return ticks.map((t) => (t === 0 ? '0' : minus(t.toPrecision(digits))));
  }
  return ticks.map((t) => (t === 0 ? '0' : minus((t / div).toFixed(d)) + suffix));
}

/** Concise standalone number: 3 significant digits, SI suffix from 10k. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const abs = Math.abs(v);
  const si = abs >= 1e4 ? SI.find(([div]) => abs >= div) : undefined;
  const scaled = si ? v / si[0] : v;
  const text = abs < 1e-3 ? scaled.toExponential(1) : String(Number(scaled.toPrecision(3)));
  return minus(text) + (si ? si[1] : '');
}

// ---------------------------------------------------------------------------------------------------
// Shared drawing pieces

interface Scale {
  (v: number): number;
}

function linearScale(d0: number, d1: number, r0: number, r1: number): Scale {
  const k0 = (r1 - r0) / (d1 - d0);
  // Callers widen degenerate domains first; this only keeps a slip from turning into NaN coordinates.
  const k = Number.isFinite(k0) ? k0 : 0;
  return (v) => r0 + (v - d0) * k;
}

function logScale(d0: number, d1: number, r0: number, r1: number): Scale {
  const s = linearScale(Math.log10(d0), Math.log10(d1), r0, r1);
  return (v) => s(Math.log10(v));
}

function svgOpen(id: string, width: number, height: number, title: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${n(width)}" height="${n(height)}" viewBox="0 0 ${n(width)} ${n(height)}" ` +
      `font-family="${escapeXml(FONT)}" role="img" aria-labelledby="${id}-title">`,
    `<title id="${id}-title">${escapeXml(title)}</title>`,
    `<rect width="${n(width)}" height="${n(height)}" fill="#ffffff"/>`,
  ];
}

function text(x: number, y: number, content: string, attrs: Record<string, string | number> = {}): string {
  const a = Object.entries(attrs)
    .map(([k, v]) => ` ${k}="${escapeXml(typeof v === 'number' ? n(v) : v)}"`)
    .join('');
  return `<text x="${n(x)}" y="${n(y)}"${a}>${escapeXml(content)}</text>`;
}

interface Frame {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

/** Horizontal grid lines, y tick labels and the y axis line. */
function drawYAxis(out: string[], frame: Frame, y: Scale, ticks: readonly number[], labels: readonly string[]): void {
  out.push('<g>');
  for (let i = 0; i < ticks.length; i++) {
    const py = y(ticks[i]);
    out.push(`<line x1="${n(frame.left)}" x2="${n(frame.right)}" y1="${n(py)}" y2="${n(py)}" stroke="${GRID}" stroke-width="1"/>`);
    out.push(text(frame.left - 7, py + TICK_FONT * 0.35, labels[i], { 'font-size': TICK_FONT, fill: MUTED, 'text-anchor': 'end' }));
  }
  out.push(`<line x1="${n(frame.left)}" x2="${n(frame.left)}" y1="${n(frame.top)}" y2="${n(frame.bottom)}" stroke="${AXIS}" stroke-width="1"/>`);
  out.push('</g>');
}

function drawTitleAndLabels(out: string[], frame: Frame, height: number, title: string, xLabel: string | undefined, yLabel: string, xLabelY: number): void {
  const cx = (frame.left + frame.right) / 2;
  out.push(text(cx, 24, title, { 'font-size': TITLE_FONT, 'font-weight': 'bold', fill: TEXT, 'text-anchor': 'middle' }));
  if (xLabel) out.push(text(cx, Math.min(xLabelY, height - 8), xLabel, { 'font-size': LABEL_FONT, fill: TEXT, 'text-anchor': 'middle' }));
  const cy = (frame.top + frame.bottom) / 2;
  out.push(
    `<text x="0" y="0" transform="translate(${n(18)} ${n(cy)}) rotate(-90)" font-size="${LABEL_FONT}" fill="${TEXT}" text-anchor="middle">${escapeXml(yLabel)}</text>`,
  );
}

function markerPath(shape: MarkerShape, x: number, y: number, r: number): string {
  switch (shape) {
    case 'circle':
      return `<circle cx="${n(x)}" cy="${n(y)}" r="${n(r)}"`;
    case 'square': {
      const s = r * 0.9;
      return `<rect x="${n(x - s)}" y="${n(y - s)}" width="${n(2 * s)}" height="${n(2 * s)}"`;
    }
    case 'triangle': {
      const s = r * 1.25;
      return `<path d="M${n(x)} ${n(y - s)}L${n(x + s * 0.95)} ${n(y + s * 0.7)}L${n(x - s * 0.95)} ${n(y + s * 0.7)}Z"`;
    }
    case 'triangle-down': {
      const s = r * 1.25;
      return `<path d="M${n(x)} ${n(y + s)}L${n(x + s * 0.95)} ${n(y - s * 0.7)}L${n(x - s * 0.95)} ${n(y - s * 0.7)}Z"`;
    }
    case 'diamond': {
      const s = r * 1.3;
      return `<path d="M${n(x)} ${n(y - s)}L${n(x + s)} ${n(y)}L${n(x)} ${n(y + s)}L${n(x - s)} ${n(y)}Z"`;
    }
    case 'cross': {
      const a = r * 1.2;
      const b = r * 0.4;
      return (
        `<path d="M${n(x - b)} ${n(y - a)}H${n(x + b)}V${n(y - b)}H${n(x + a)}V${n(y + b)}H${n(x + b)}V${n(y + a)}` +
        `H${n(x - b)}V${n(y + b)}H${n(x - a)}V${n(y - b)}H${n(x - b)}Z"`
      );
    }
  }
}

function marker(shape: MarkerShape, x: number, y: number, color: string, tooltip?: string): string {
  // A white rim separates overlapping markers of different series.
  const open = `${markerPath(shape, x, y, 3.6)} fill="${color}" stroke="#ffffff" stroke-width="1"`;
  return tooltip === undefined ? `${open}/>` : `${open}><title>${escapeXml(tooltip)}</title>${closeTag(open)}`;
}

function closeTag(open: string): string {
  const m = /^<(\w+)/.exec(open);
  return `</${m ? m[1] : 'path'}>`;
}

interface LegendEntry {
  name: string;
  color: string;
  dashed?: boolean;
  marker?: MarkerShape;
  kind: 'line' | 'bar';
  empty?: boolean;
}

const LEGEND_MAX = 230;

function legendWidth(entries: readonly LegendEntry[]): number {
  if (entries.length === 0) return 0;
  const widest = Math.max(...entries.map((e) => textWidth(e.name + (e.empty ? ' (no data)' : ''), LABEL_FONT - 1)));
  return Math.min(LEGEND_MAX, widest + 44);
}

// Keeps both ends of a long name: layer names differ at the start (layer3 vs layer4) and at the end
// (conv1 vs conv2).
export function truncateMiddle(s: string, maxChars: number): string {
  const chars = [...s];
  if (chars.length <= maxChars) return s;
  const keep = Math.max(1, maxChars - 1);
  const head = Math.ceil(keep / 2);
  return chars.slice(0, head).join('') + '…' + chars.slice(chars.length - (keep - head)).join('');
}

function drawLegend(out: string[], entries: readonly LegendEntry[], x: number, y: number, width: number): void {
  if (entries.length === 0) return;
  const font = LABEL_FONT - 1;
  // The epsilon keeps an exact fit (e.g. 8 or 16 characters) from flooring one character short.
  const maxChars = Math.max(4, Math.floor((width - 44) / (font * CHAR_WIDTH) + 1e-9));
  out.push('<g>');
  entries.forEach((e, i) => {
    const cy = y + i * 20;
    const color = e.empty ? '#bbbbbb' : e.color;
    const textX = e.kind === 'line' ? x + 34 : x + 26;
    if (e.kind === 'line') {
      const dash = e.dashed ? ' stroke-dasharray="6 4"' : '';
      out.push(`<line x1="${n(x)}" x2="${n(x + 26)}" y1="${n(cy)}" y2="${n(cy)}" stroke="${color}" stroke-width="2"${dash}/>`);
      if (e.marker) out.push(marker(e.marker, x + 13, cy, color));
    } else {
      out.push(`<rect x="${n(x + 2)}" y="${n(cy - 6)}" width="12" height="12" fill="${color}"/>`);
    }
    const label = truncateMiddle(e.name, maxChars) + (e.empty ? ' (no data)' : '');
    const full = label === e.name ? '' : `<title>${escapeXml(e.name)}</title>`;
    out.push(
      `<text x="${n(textX)}" y="${n(cy + font * 0.35)}" font-size="${n(font)}" fill="${e.empty ? '#999' : TEXT}">${full}${escapeXml(label)}</text>`,
    );
  });
  out.push('</g>');
}

/** Keeps the labels that fit side by side (greedy left to right), so dense explicit ticks stay legible. */
function thinLabels(xs: readonly number[], labels: readonly string[], gap = 8): boolean[] {
  const keep: boolean[] = [];
  let lastRight = -Infinity;
  for (let i = 0; i < xs.length; i++) {
    const w = textWidth(labels[i], TICK_FONT);
    const left = xs[i] - w / 2;
    const ok = left >= lastRight + gap;
    keep.push(ok);
    if (ok) lastRight = xs[i] + w / 2;
  }
  return keep;
}

// Beyond ~1e300 the span between two values can overflow to Infinity, so such points count as missing.
const LIMIT = 1e300;

function finite(p: Point): boolean {
  return Math.abs(p[0]) < LIMIT && Math.abs(p[1]) < LIMIT;
}

function extent(values: readonly number[]): [number, number] | null {
  if (values.length === 0) return null;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

// ---------------------------------------------------------------------------------------------------
// Line plot

/**
 * A line chart as an SVG string. Non-finite points break a line into segments; with a log x axis,
 * points at x <= 0 are dropped. A series with one point shows as a marker, an empty one is listed in
 * the legend as "(no data)"; with no data at all the axes are drawn around a "no data" note.
 */
export function linePlot(options: LinePlotOptions): string {
  const width = options.width ?? 720;
  const height = options.height ?? 440;
  const logX = options.xScale === 'log';
  const showMarkers = options.markers ?? true;
  // On a log axis x must be positive, and not so small that halving it for padding underflows.
  const logOk = (v: number): boolean => v >= 1e-290;
  const usable = (p: Point): boolean => finite(p) && (!logX || logOk(p[0]));
  const series = options.series.map((s, i) => ({
    ...s,
    color: s.color ?? PALETTE[i % PALETTE.length],
    shape: s.marker ?? MARKERS[i % MARKERS.length],
    usable: s.points.filter(usable),
  }));
  const all = series.flatMap((s) => s.usable);
  const bandOf = (s: LineSeries): (readonly [number, number, number])[] =>
    (s.band ?? []).filter((b) => b.every(Number.isFinite) && (!logX || logOk(b[0]))).sort((a, b) => a[0] - b[0]);
  const bandYs = series.flatMap((s) => bandOf(s).flatMap((b) => [b[1], b[2]]));
  const id = chartId(JSON.stringify([options.title, options.xLabel, options.yLabel, options.series.map((s) => [s.name, s.points.length])]));

  // y scale: nice and extended unless fixed by the caller.
  const yData = extent([...all.map((p) => p[1]), ...bandYs]);
  const yTarget = Math.max(2, Math.round((height - 98) / 55));
  const yScaleInfo = options.yRange
    ? niceTicks(options.yRange[0], options.yRange[1], yTarget, false)
    : niceTicks(yData ? yData[0] : 0, yData ? yData[1] : 1, yTarget, true);
  const yFmt = options.yTickFormat;
  const yLabels = yFmt ? yScaleInfo.ticks.map(yFmt) : formatTicks(yScaleInfo.ticks, yScaleInfo.step);

  const legend: LegendEntry[] = series.map((s) => ({
    name: s.name,
    color: s.color,
    dashed: s.dashed,
    marker: showMarkers ? s.shape : undefined,
    kind: 'line',
    empty: s.usable.length === 0,
  }));
  const legendW = legendWidth(legend);
  const yLabelW = Math.max(...yLabels.map((l) => textWidth(l, TICK_FONT)), 10);
  const frame: Frame = {
    left: 32 + yLabelW + 8,
    right: width - (legendW > 0 ? legendW + 24 : 20),
    top: 44,
    bottom: height - 54,
  };

  // x domain from data, explicit ticks and xRange.
  const xs = all.map((p) => p[0]);
  const explicit = (options.xTicks ?? []).filter((t) => Math.abs(t) < LIMIT && (!logX || logOk(t)));
  let xLo: number;
  let xHi: number;
  let xTicks: number[];
  // Set when ticks share one 1-2-5 step, so their labels can share a number of decimals.
  let xStep: number | undefined;
  if (options.xRange) {
    [xLo, xHi] = options.xRange[0] <= options.xRange[1] ? [options.xRange[0], options.xRange[1]] : [options.xRange[1], options.xRange[0]];
  } else {
    const e = extent([...xs, ...explicit]);
    [xLo, xHi] = e ?? (logX ? [1, 10] : [0, 1]);
  }
  if (logX) {
    if (!logOk(xLo)) xLo = Math.min(...[xHi, ...xs].filter(logOk), 1);
    if (!(xHi > xLo * (1 + 1e-9))) {
      xHi = xLo * 2;
      xLo /= 2;
    }
    xTicks = explicit.length > 0 ? [...explicit] : logTicks(xLo, xHi);
  } else if (explicit.length > 0) {
    [xLo, xHi] = widenDegenerate(xLo, xHi);
    xTicks = [...explicit];
  } else {
    const nice = niceTicks(xLo, xHi, Math.max(2, Math.round((frame.right - frame.left) / 90)), options.xRange === undefined);
    [xLo, xHi, xTicks, xStep] = [nice.lo, nice.hi, nice.ticks, nice.step];
  }
  const slack = 1e-9 * Math.abs(xHi - xLo);
  xTicks = xTicks.filter((t) => t >= xLo - slack && t <= xHi + slack);
  const xLabels = options.xTickFormat
    ? xTicks.map(options.xTickFormat)
    : xStep !== undefined
      ? formatTicks(xTicks, xStep)
      : xTicks.map(formatNumber);

  const x = (logX ? logScale : linearScale)(xLo, xHi, frame.left + INSET, frame.right - INSET);
  const y = linearScale(yScaleInfo.lo, yScaleInfo.hi, frame.bottom - INSET, frame.top + INSET);

  const out = svgOpen(id, width, height, options.title);
  drawYAxis(out, frame, y, yScaleInfo.ticks, yLabels);

  // x grid, ticks and labels
  const px = xTicks.map(x);
  const keep = thinLabels(px, xLabels);
  out.push('<g>');
  for (let i = 0; i < xTicks.length; i++) {
    out.push(`<line x1="${n(px[i])}" x2="${n(px[i])}" y1="${n(frame.top)}" y2="${n(frame.bottom)}" stroke="${GRID}" stroke-width="1"/>`);
    out.push(`<line x1="${n(px[i])}" x2="${n(px[i])}" y1="${n(frame.bottom)}" y2="${n(frame.bottom + 4)}" stroke="${AXIS}" stroke-width="1"/>`);
    if (keep[i]) out.push(text(px[i], frame.bottom + 17, xLabels[i], { 'font-size': TICK_FONT, fill: MUTED, 'text-anchor': 'middle' }));
  }
  out.push(`<line x1="${n(frame.left)}" x2="${n(frame.right)}" y1="${n(frame.bottom)}" y2="${n(frame.bottom)}" stroke="${AXIS}" stroke-width="1"/>`);
  out.push('</g>');
  drawTitleAndLabels(out, frame, height, options.title, options.xLabel, options.yLabel, frame.bottom + 40);

  // data, clipped to the plot area (a little slack so edge markers are whole)
  out.push(
    `<clipPath id="${id}-clip"><rect x="${n(frame.left - 1)}" y="${n(frame.top - 6)}" width="${n(frame.right - frame.left + 7)}" height="${n(frame.bottom - frame.top + 7)}"/></clipPath>`,
  );
  out.push(`<g clip-path="url(#${id}-clip)">`);
  // Bands first, so every line stays visible on top of every band.
  for (const s of series) {
    const b = bandOf(s);
    if (b.length === 1) {
      // One point: an error bar instead of a band.
      out.push(`<line x1="${n(x(b[0][0]))}" x2="${n(x(b[0][0]))}" y1="${n(y(b[0][1]))}" y2="${n(y(b[0][2]))}" stroke="${s.color}" stroke-opacity="0.5" stroke-width="6"><title>${escapeXml(s.name)}: +-1 sd</title></line>`);
      continue;
    }
    if (b.length < 2) continue;
    const upper = b.map((p) => `${n(x(p[0]))},${n(y(p[2]))}`);
    const lower = [...b].reverse().map((p) => `${n(x(p[0]))},${n(y(p[1]))}`);
    out.push(`<polygon points="${[...upper, ...lower].join(' ')}" fill="${s.color}" fill-opacity="0.15" stroke="none"><title>${escapeXml(s.name)}: +-1 sd</title></polygon>`);
  }
  for (const s of series) {
    // Segments split at unusable points so a NaN (e.g. a diverged run) shows as a gap, not a jump.
    const segments: Point[][] = [[]];
    for (const p of s.points) {
      if (usable(p)) segments[segments.length - 1].push(p);
      else if (segments[segments.length - 1].length > 0) segments.push([]);
    }
    const d = segments
      .filter((seg) => seg.length > 1)
      .map((seg) => seg.map((p, i) => `${i === 0 ? 'M' : 'L'}${n(x(p[0]))} ${n(y(p[1]))}`).join(''))
      .join('');
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    out.push(`<g><title>${escapeXml(s.name)}</title>`);
    if (d) out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"${dash}/>`);
    // Isolated points would be invisible without a marker, so they always get one.
    const isolated = new Set(segments.filter((seg) => seg.length === 1).map((seg) => seg[0]));
    for (const p of s.usable) {
      if (showMarkers || isolated.has(p)) {
        out.push(marker(s.shape, x(p[0]), y(p[1]), s.color, `${s.name}: (${formatNumber(p[0])}, ${formatNumber(p[1])})`));
      }
    }
    out.push('</g>');
  }
  out.push('</g>');
  if (all.length === 0) {
    out.push(
      text((frame.left + frame.right) / 2, (frame.top + frame.bottom) / 2, 'no data', { 'font-size': LABEL_FONT, fill: '#999', 'text-anchor': 'middle' }),
    );
  }
  drawLegend(out, legend, frame.right + 18, frame.top + 8, legendW);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------------
// Grouped bar chart

/**
 * Grouped bars: one group per category, one bar per series (e.g. categories = layers, series = pruning
 * rounds). The y axis always includes 0 so bar lengths compare honestly. Long category labels are
 * slanted and shortened in the middle (full text in a tooltip).
 */
export function barChart(options: BarChartOptions): string {
  const cats = options.categories;
  const series = options.series.map((s, i) => ({ ...s, color: s.color ?? PALETTE[i % PALETTE.length] }));
  const nSeries = Math.max(1, series.length);
  const values = series.flatMap((s) => s.values.slice(0, cats.length)).filter((v): v is number => v !== null && Math.abs(v) < LIMIT);
  const e = extent(values);
  const yTarget = Math.max(2, Math.round(((options.height ?? 420) - 140) / 50));
  const yInfo = options.yRange
    ? niceTicks(Math.min(options.yRange[0], options.yRange[1]), Math.max(options.yRange[0], options.yRange[1]), yTarget, false)
    : niceTicks(Math.min(0, e ? e[0] : 0), Math.max(0, e ? e[1] : 1), yTarget, true);
  const yLabels = options.yTickFormat ? yInfo.ticks.map(options.yTickFormat) : formatTicks(yInfo.ticks, yInfo.step);

  const legend: LegendEntry[] =
    series.length > 1 ? series.map((s) => ({ name: s.name, color: s.color, kind: 'bar', empty: !s.values.some((v) => v !== null && Math.abs(v) < LIMIT) })) : [];
  const legendW = legendWidth(legend);
  const yLabelW = Math.max(...yLabels.map((l) => textWidth(l, TICK_FONT)), 10);
  const left = 32 + yLabelW + 8;
  const rightPad = legendW > 0 ? legendW + 24 : 20;
  // Each bar at least 6 px, each group at least 24 px, so the chart grows instead of bars vanishing.
  const minBand = Math.max(24, (nSeries * 6) / 0.8);
  const width = Math.max(options.width ?? 720, left + rightPad + cats.length * minBand);
  const band = cats.length > 0 ? (width - rightPad - left) / cats.length : 0;

  const maxLabelChars = 30;
  const catLabels = cats.map((c) => truncateMiddle(c, maxLabelChars));
  const widest = Math.max(0, ...catLabels.map((l) => textWidth(l, TICK_FONT)));
  const slant = widest > band - 6;
  const labelDepth = slant ? widest * Math.SQRT1_2 + 16 : 22;
  const bottomSpace = labelDepth + (options.xLabel ? 30 : 8);
  // Slanted labels take their room from below, not from the plot.
  const height = Math.max(options.height ?? 420, 44 + 220 + bottomSpace);
  const frame: Frame = { left, right: width - rightPad, top: 44, bottom: height - bottomSpace };
  const y = linearScale(yInfo.lo, yInfo.hi, frame.bottom, frame.top + INSET);
  const id = chartId(JSON.stringify([options.title, options.yLabel, cats, series.map((s) => s.name)]));

  const out = svgOpen(id, width, height, options.title);
  drawYAxis(out, frame, y, yInfo.ticks, yLabels);
  drawTitleAndLabels(out, frame, height, options.title, options.xLabel, options.yLabel, frame.bottom + labelDepth + 18);

  // Bars wider than ~48 px look like blocks rather than bars; extra room becomes space between groups.
  const barW = cats.length > 0 ? Math.min((band * 0.8) / nSeries, 48) : 0;
  const groupPad = band - barW * nSeries;
  const base = y(Math.min(Math.max(0, yInfo.lo), yInfo.hi));
  out.push(`<clipPath id="${id}-clip"><rect x="${n(frame.left)}" y="${n(frame.top)}" width="${n(frame.right - frame.left)}" height="${n(frame.bottom - frame.top)}"/></clipPath>`);
  out.push(`<g clip-path="url(#${id}-clip)">`);
  cats.forEach((cat, ci) => {
    const gx = frame.left + ci * band + groupPad / 2;
    series.forEach((s, si) => {
      const v = s.values[ci];
      if (v === null || v === undefined || !(Math.abs(v) < LIMIT)) return;
      const top = y(v);
      const bx = gx + si * barW;
      const h = Math.abs(base - top);
      // A thin white gap between neighbouring bars keeps groups readable without outlines.
      const w = Math.max(1, barW - (nSeries > 1 ? 1 : 0));
      out.push(
        `<rect x="${n(bx)}" y="${n(Math.min(top, base))}" width="${n(w)}" height="${n(Math.max(h, 0.5))}" fill="${s.color}">` +
          `<title>${escapeXml(`${cat} · ${s.name}: ${formatNumber(v)}`)}</title></rect>`,
      );
      if (options.valueLabels) {
        const label = options.yTickFormat ? options.yTickFormat(v) : formatNumber(v);
        out.push(text(bx + barW / 2, v >= 0 ? top - 3 : top + 11, label, { 'font-size': 9.5, fill: MUTED, 'text-anchor': 'middle' }));
      }
    });
  });
  out.push('</g>');
  out.push(`<line x1="${n(frame.left)}" x2="${n(frame.right)}" y1="${n(base)}" y2="${n(base)}" stroke="${AXIS}" stroke-width="1"/>`);

  // category labels
  out.push('<g>');
  cats.forEach((cat, ci) => {
    const cx = frame.left + (ci + 0.5) * band;
    const tip = catLabels[ci] === cat ? '' : `<title>${escapeXml(cat)}</title>`;
    if (slant) {
      out.push(
        `<text x="0" y="0" transform="translate(${n(cx + 3)} ${n(frame.bottom + 12)}) rotate(-45)" font-size="${TICK_FONT}" fill="${MUTED}" text-anchor="end">${tip}${escapeXml(catLabels[ci])}</text>`,
      );
    } else {
      out.push(`<text x="${n(cx)}" y="${n(frame.bottom + 17)}" font-size="${TICK_FONT}" fill="${MUTED}" text-anchor="middle">${tip}${escapeXml(catLabels[ci])}</text>`);
    }
  });
  out.push('</g>');
  if (values.length === 0) {
    out.push(text((frame.left + frame.right) / 2, (frame.top + frame.bottom) / 2, 'no data', { 'font-size': LABEL_FONT, fill: '#999', 'text-anchor': 'middle' }));
  }
  drawLegend(out, legend, frame.right + 18, frame.top + 8, legendW);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

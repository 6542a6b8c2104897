// The run report: one self-contained HTML file (inline CSS and SVG, no scripts, no network), so it can be
// opened from disk, attached to an issue or archived with the run. Raster images (Grad-CAM overlays) stay
// as files beside it, referenced by relative path, to keep the page small.
import { escapeHtml } from '../util/escape.js';

export interface ReportSection {
  heading: string;
  /** Trusted HTML: tables from htmlTable, SVGs from svg-plot, figures from {@link figure}. */
  html: string;
  /** Anchor id; derived from the heading when absent. */
  id?: string;
}

export type MetaValue = string | number | boolean | null | undefined;

export interface HtmlReportOptions {
  title: string;
  /** Run metadata shown under the title (run name, model, dataset, seed, git commit, date, ...). */
  meta?: Readonly<Record<string, MetaValue>>;
  sections: readonly ReportSection[];
  /** Short line under the title. */
  subtitle?: string;
}

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f7f9; color: #1d1f23;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 56px; }
header { margin-bottom: 20px; }
h1 { font-size: 26px; line-height: 1.25; margin: 0 0 4px; }
.subtitle { color: #555; margin: 0 0 14px; }
dl.meta { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 6px 22px;
  margin: 0; padding: 12px 16px; background: #fff; border: 1px solid #e2e4e8; border-radius: 8px; font-size: 13.5px; }
dl.meta div { display: flex; gap: 8px; min-width: 0; }
dl.meta dt { color: #666; white-space: nowrap; }
dl.meta dd { margin: 0; font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
  overflow-wrap: anywhere; }
nav.toc { margin: 16px 0 0; font-size: 14px; }
nav.toc a { margin-right: 14px; color: #0b5cad; text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
section { background: #fff; border: 1px solid #e2e4e8; border-radius: 8px; padding: 18px 22px; margin: 18px 0; }
h2 { font-size: 19px; margin: 0 0 12px; }
h3 { font-size: 16px; margin: 18px 0 8px; }
svg, img { max-width: 100%; height: auto; }
figure { margin: 12px 0; }
figcaption { color: #555; font-size: 13.5px; margin-top: 4px; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; }
.figures figure { margin: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13.5px; margin: 6px 0; }
caption { text-align: left; color: #555; padding-bottom: 4px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eceef1; text-align: left; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; border-bottom: 1px solid #d9dce1; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:hover { background: #f9fafb; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 13px; }
pre { background: #f3f4f6; padding: 10px 12px; border-radius: 6px; overflow-x: auto; }
footer { color: #888; font-size: 12.5px; text-align: center; margin-top: 28px; }
`;

/** A URL-safe anchor from a heading ("Accuracy vs sparsity" -> "accuracy-vs-sparsity"). */
export function slugify(text: string): string {
  const slug = text
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return slug || 'section';
}

function metaText(v: MetaValue): string {
  if (v === null || v === undefined) return '—';
  return String(v);
}

/** Builds the report page. Section HTML is inserted as is; everything else is escaped. */
export function htmlReport(options: HtmlReportOptions): string {
  const used = new Map<string, number>();
  const ids = options.sections.map((s) => {
    const base = s.id ?? slugify(s.heading);
    // Two sections with the same heading must still get distinct anchors.
    const count = used.get(base) ?? 0;
    used.set(base, count + 1);
    return count === 0 ? base : `${base}-${count + 1}`;
  });

  const meta = Object.entries(options.meta ?? {});
  const metaHtml =
    meta.length === 0
      ? ''
      : `<dl class="meta">\n${meta
          .map(([k, v]) => `<div><dt>${escapeHtml(k)}</dt><dd>${escapeHtml(metaText(v))}</dd></div>`)
          .join('\n')}\n</dl>`;
  // A contents line only pays off once the page needs scrolling.
  const toc =
    options.sections.length > 2
      ? `<nav class="toc">${options.sections.map((s, i) => `<a href="#${escapeHtml(ids[i])}">${escapeHtml(s.heading)}</a>`).join('')}</nav>`
      : '';
  const subtitle = options.subtitle ? `<p class="subtitle">${escapeHtml(options.subtitle)}</p>` : '';
  const sections = options.sections
    .map((s, i) => `<section id="${escapeHtml(ids[i])}">\n<h2>${escapeHtml(s.heading)}</h2>\n${s.html}\n</section>`)
    .join('\n');

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(options.title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<header>
<h1>${escapeHtml(options.title)}</h1>
${subtitle}
${metaHtml}
${toc}
</header>
${sections}
<footer>Generated by ticketlab</footer>
</main>
</body>
</html>
`;
}

/**
 * Percent-encodes a relative path for an href/src while keeping its folder structure. Absolute paths
 * and URLs are refused: the report must keep working when the run folder is moved or archived.
 */
export function relativeUrl(relPath: string): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(relPath) || relPath.startsWith('/') || relPath.startsWith('\\')) {
    throw new Error(`report links must be relative to the report, got ${JSON.stringify(relPath)}`);
  }
  return relPath
    .split(/[\\/]/)
    .map((part) => encodeURIComponent(part))
    .join('/');
}

/** An <img> for a file beside the report (e.g. `gradcam/level_3/fake_0001.png`). */
export function imageTag(relPath: string, alt: string, options: { width?: number } = {}): string {
  const width = options.width === undefined ? '' : ` width="${Math.round(options.width)}"`;
  return `<img src="${escapeHtml(relativeUrl(relPath))}" alt="${escapeHtml(alt)}"${width} loading="lazy">`;
}

/** Wraps trusted content (an SVG, an imageTag) with an escaped caption. */
export function figure(content: string, caption?: string): string {
  const cap = caption === undefined ? '' : `\n<figcaption>${escapeHtml(caption)}</figcaption>`;
  return `<figure>\n${content}${cap}\n</figure>`;
}

/** Lays figures out side by side, wrapping on narrow screens (e.g. Grad-CAM at 0/60/80% sparsity). */
export function figureRow(figures: readonly string[]): string {
  return `<div class="figures">\n${figures.join('\n')}\n</div>`;
}

/** Wide content (big tables) scrolls sideways instead of stretching the page. */
export function scrollable(content: string): string {
  return `<div class="scroll">\n${content}\n</div>`;
}

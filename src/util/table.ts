// Tables for the terminal (aligned plain text) and for the HTML report, from the same row objects.
import { escapeHtml } from './escape.js';

export type TableCell = string | number | boolean | null | undefined;
export type TableRow = Readonly<Record<string, TableCell>>;

export interface TableColumn {
  key: string;
  /** Header text; defaults to the key. */
  header?: string;
  /** Defaults to right for columns whose values are all numbers, so digits line up. */
  align?: 'left' | 'right';
  /** Custom cell text (e.g. percentages); defaults to {@link formatCell}. */
  format?: (value: TableCell, row: TableRow) => string;
}

export type ColumnSpec = string | TableColumn;

/**
 * Default cell text: integers as they are, other numbers to 4 significant digits (enough to tell
 * 91.41% from 91.42% without printing float noise), empty for missing values.
 */
export function formatCell(value: TableCell): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') {
    if (Number.isInteger(value) || !Number.isFinite(value)) return String(value);
    return String(Number(value.toPrecision(4)));
  }
  return String(value);
}

interface ResolvedColumn {
  key: string;
  header: string;
  align: 'left' | 'right';
  format: (value: TableCell, row: TableRow) => string;
}

function resolveColumns(rows: readonly TableRow[], columns: readonly ColumnSpec[] | undefined): ResolvedColumn[] {
  const specs: ColumnSpec[] = columns ? [...columns] : [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return specs.map((spec) => {
    const c: TableColumn = typeof spec === 'string' ? { key: spec } : spec;
    const values = rows.map((r) => r[c.key]).filter((v) => v !== null && v !== undefined);
    const numeric = values.length > 0 && values.every((v) => typeof v === 'number');
    return {
      key: c.key,
      header: c.header ?? c.key,
      align: c.align ?? (numeric ? 'right' : 'left'),
      format: c.format ?? ((v) => formatCell(v)),
    };
  });
}

// Terminal width of a string: code points, with East Asian wide characters and most emoji counted as
// two columns and combining marks as zero. Approximate, but right for the names we print.
export function displayWidth(text: string): number {
  let w = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0;
    if (/\p{Mn}|\p{Me}|\u200b|\u200d/u.test(ch)) continue;
    w += isWide(cp) ? 2 : 1;
  }
  return w;
}

function isWide(cp: number): boolean {
  return (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1faff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  );
}

function pad(text: string, width: number, align: 'left' | 'right'): string {
  const fill = ' '.repeat(Math.max(0, width - displayWidth(text)));
  return align === 'right' ? fill + text : text + fill;
}

// A newline or tab inside a cell would break the grid.
function oneLine(text: string): string {
  return text.replace(/[\r\n\t]+/g, ' ');
}

/**
 * Aligned plain-text table: header, a rule, one line per row, columns two spaces apart. No trailing
 * newline, so it drops straight into console.log. Columns default to every key in first-seen order.
 */
export function formatTable(rows: readonly TableRow[], columns?: readonly ColumnSpec[]): string {
  const cols = resolveColumns(rows, columns);
  const body = rows.map((row) => cols.map((c) => oneLine(c.format(row[c.key], row))));
  const headers = cols.map((c) => oneLine(c.header));
  const widths = cols.map((_, j) => Math.max(displayWidth(headers[j]), ...body.map((cells) => displayWidth(cells[j]))));
  const line = (cells: string[]): string =>
    cells
      .map((cell, j) => pad(cell, widths[j], cols[j].align))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '─'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** HTML table with escaped content; numeric columns carry class "num" for right alignment. */
export function htmlTable(rows: readonly TableRow[], columns?: readonly ColumnSpec[], options: { caption?: string } = {}): string {
  const cols = resolveColumns(rows, columns);
  const cls = (c: ResolvedColumn): string => (c.align === 'right' ? ' class="num"' : '');
  const head = cols.map((c) => `<th${cls(c)}>${escapeHtml(c.header)}</th>`).join('');
  const body = rows
    .map((row) => `<tr>${cols.map((c) => `<td${cls(c)}>${escapeHtml(c.format(row[c.key], row))}</td>`).join('')}</tr>`)
    .join('\n');
  const caption = options.caption === undefined ? '' : `<caption>${escapeHtml(options.caption)}</caption>\n`;
  return `<table>\n${caption}<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}

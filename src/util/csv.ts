// CSV as RFC 4180 describes it, because spreadsheets and pandas both read that dialect.

export type CsvCell = string | number | boolean | null | undefined;
export type CsvRow = Readonly<Record<string, CsvCell>>;

export interface CsvOptions {
  /** Line ending; RFC 4180 says CRLF, but '\n' (the default) is what diff and git like. */
  eol?: '\n' | '\r\n';
}

/** Columns in first-seen order over all rows, so sparse rows (e.g. metrics logged some epochs) keep every key. */
export function csvColumns(rows: readonly CsvRow[]): string[] {
  const seen = new Set<string>();
  for (const row of rows) for (const key of Object.keys(row)) seen.add(key);
  return [...seen];
}

function cellText(value: CsvCell): string {
  if (value === null || value === undefined) return '';
  return String(value);
}

function quote(field: string): string {
  // Leading/trailing spaces are quoted too: several readers trim unquoted fields.
  return /[",\r\n]|^\s|\s$/.test(field) ? `"${field.replace(/"/g, '""')}"` : field;
}

/**
 * Rows to CSV text with a header line and a trailing line ending. Missing and null cells are empty;
 * numbers use JavaScript's shortest round-trip form (NaN and Infinity spelled as such).
 */
export function toCsv(rows: readonly CsvRow[], columns: readonly string[] = csvColumns(rows), options: CsvOptions = {}): string {
  const eol = options.eol ?? '\n';
  const line = (fields: string[]): string => {
    // A lone empty field would print as a blank line, which readers skip; quoting keeps the row.
    if (fields.length === 1 && fields[0] === '') return '""';
    return fields.map(quote).join(',');
  };
  const out = [line([...columns])];
  for (const row of rows) out.push(line(columns.map((c) => cellText(row[c]))));
  return out.join(eol) + eol;
}

/** Parses RFC 4180 CSV (quoted fields may hold commas, quotes and line breaks) into rows of strings. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let i = 0;
  let inQuotes = false;
  // True once the current record has any content, so a trailing newline does not create an empty row.
  let started = false;
  while (i < text.length) {
    const c = text[i];
    if (inQuotes) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        inQuotes = false;
      } else {
        field += c;
      }
      i++;
      continue;
    }
    if (c === '"') {
      inQuotes = true;
      started = true;
    } else if (c === ',') {
      row.push(field);
      field = '';
      started = true;
    } else if (c === '\n' || c === '\r') {
      if (started) {
        row.push(field);
        rows.push(row);
      }
      row = [];
      field = '';
      started = false;
      if (c === '\r' && text[i + 1] === '\n') i++;
    } else {
      field += c;
      started = true;
    }
    i++;
  }
  if (inQuotes) throw new Error('CSV ends inside a quoted field');
  if (started) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

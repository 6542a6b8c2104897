import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { csvColumns, parseCsv, toCsv, type CsvRow } from '../../src/util/csv.js';

describe('toCsv', () => {
  it('quotes only what needs quoting', () => {
    const csv = toCsv([
      { model: 'ResNet-18', acc: 94.29, note: 'says "hi", twice' },
      { model: 'multi\nline', acc: null, note: ' padded ' },
      { model: 'Meso-4', acc: NaN },
    ]);
    expect(csv).toBe('model,acc,note\nResNet-18,94.29,"says ""hi"", twice"\n"multi\nline",," padded "\nMeso-4,NaN,\n');
  });

  it('uses the given column order and CRLF when asked', () => {
    expect(toCsv([{ a: 1, b: 2 }], ['b', 'a'], { eol: '\r\n' })).toBe('b,a\r\n2,1\r\n');
  });

  it('collects columns over all rows in first-seen order', () => {
    expect(csvColumns([{ a: 1 }, { b: 2, a: 3 }, { c: true }])).toEqual(['a', 'b', 'c']);
    expect(toCsv([{ a: 1 }, { b: 2 }])).toBe('a,b\n1,\n,2\n');
  });

  it('keeps rows of a single empty field', () => {
    expect(parseCsv(toCsv([{ a: '' }, { a: 'x' }]))).toEqual([['a'], [''], ['x']]);
  });

  it('no rows gives just the header', () => {
    expect(toCsv([], ['x', 'y'])).toBe('x,y\n');
  });
});

describe('parseCsv', () => {
  it('handles quotes, embedded newlines and CRLF', () => {
    expect(parseCsv('a,b\r\n"x,y","he said ""no"""\r\n"1\n2",\n')).toEqual([
      ['a', 'b'],
      ['x,y', 'he said "no"'],
      ['1\n2', ''],
    ]);
    expect(() => parseCsv('"open')).toThrow(/quoted/);
  });
});

describe('property: parse(toCsv(rows)) gives the cells back', () => {
  const cell = fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 10 }),
    fc.constantFrom(',', '"', '""', '\n', '\r\n', '\r', ' lead', 'trail ', 'a,"b"\nc'),
    fc.double(),
    fc.integer(),
    fc.constant(null),
    fc.boolean(),
  );
  it('round trips', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.array(cell, { minLength: 5, maxLength: 5 }), { maxLength: 6 }),
        fc.constantFrom<'\n' | '\r\n'>('\n', '\r\n'),
        (columns, cells, eol) => {
          const rows: CsvRow[] = cells.map((r) => Object.fromEntries(columns.map((c, j) => [c, r[j]])));
          const parsed = parseCsv(toCsv(rows, columns, { eol }));
          const expected = [columns, ...rows.map((r) => columns.map((c) => (r[c] === null || r[c] === undefined ? '' : String(r[c]))))];
          expect(parsed).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });
});

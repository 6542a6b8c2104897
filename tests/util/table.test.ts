import { describe, expect, it } from 'vitest';
import { displayWidth, formatCell, formatTable, htmlTable } from '../../src/util/table.js';

describe('formatTable', () => {
  const rows = [
    { model: 'ResNet-18', sparsity: 0.8, acc: 94.29123, params: 11_689_512 },
    { model: 'Meso-4', sparsity: 0.2, acc: 62.6, params: 15_689 },
    { model: 'CNN-5', sparsity: null, acc: 91.41 },
  ];

  it('aligns text left and numbers right, with a rule under the header', () => {
    const text = formatTable(rows);
    expect(text).toBe(
      [
        'model      sparsity    acc    params',
        '─────────  ────────  ─────  ────────',
        'ResNet-18       0.8  94.29  11689512',
        'Meso-4          0.2   62.6     15689',
        'CNN-5                91.41',
      ].join('\n'),
    );
  });

  it('honours column specs: headers, formatters, alignment', () => {
    const text = formatTable(rows, [
      { key: 'model', header: 'Model' },
      { key: 'acc', header: 'Acc %', format: (v) => (typeof v === 'number' ? v.toFixed(1) : '') },
      { key: 'params', align: 'left' },
    ]);
    expect(text.split('\n')[0]).toBe('Model      Acc %  params');
    expect(text.split('\n')[2]).toBe('ResNet-18   94.3  11689512');
  });

  it('keeps the grid with newlines in cells and wide characters', () => {
    const text = formatTable([{ a: 'x\ny', b: '漢字' }, { a: 'z', b: 'ab' }]);
    const lines = text.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[2]).toBe('x y  漢字');
    expect(lines[3]).toBe('z    ab');
    expect(displayWidth('漢字')).toBe(4);
  });

  it('formats cells compactly', () => {
    expect(formatCell(0.123456)).toBe('0.1235');
    expect(formatCell(12)).toBe('12');
    expect(formatCell(null)).toBe('');
    expect(formatCell(NaN)).toBe('NaN');
    expect(formatCell(true)).toBe('true');
  });
});

describe('htmlTable', () => {
  it('escapes everything and marks numeric columns', () => {
    const html = htmlTable([{ 'a<b': '<script>&"', n: 3 }], undefined, { caption: 'x & y' });
    expect(html).toContain('<th>a&lt;b</th><th class="num">n</th>');
    expect(html).toContain('<td>&lt;script&gt;&amp;&quot;</td><td class="num">3</td>');
    expect(html).toContain('<caption>x &amp; y</caption>');
    expect(html).not.toContain('<script>');
  });
});

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { barChart, formatNumber, formatTicks, linePlot, logTicks, niceTicks, truncateMiddle, type LineSeries } from '../../src/report/svg-plot.js';
import { escapeXml } from '../../src/util/escape.js';

/**
 * Tiny well-formedness check: every tag closes in order, attributes are quoted, and text holds no raw
 * '<' or stray '&'. Not a full XML parser, but it catches unescaped names and broken markup.
 */
function checkWellFormed(xml: string): void {
  const stack: string[] = [];
  const tagRe = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let pos = 0;
  for (let m = tagRe.exec(xml); m !== null; m = tagRe.exec(xml)) {
    const between = xml.slice(pos, m.index);
    expect(between, `raw '<' before offset ${m.index}`).not.toMatch(/</);
    expect(between, 'unescaped &').not.toMatch(/&(?!(amp|lt|gt|quot|#39);)/);
    const [, closing, name, , selfClosing] = m;
    if (closing) expect(stack.pop(), `closing </${name}>`).toBe(name);
    else if (!selfClosing) stack.push(name);
    pos = m.index + m[0].length;
  }
  expect(xml.slice(pos).trim()).toBe('');
  expect(stack).toEqual([]);
}

function badAttributes(svg: string): string[] {
  return [...svg.matchAll(/="[^"]*(NaN|Infinity|undefined)[^"]*"/g)].map((m) => m[0]);
}

const sparsity = [0, 20, 36, 48.8, 59, 67.2, 73.8, 79, 83.2];

describe('linePlot', () => {
  const svg = linePlot({
    title: 'Accuracy vs sparsity <IMP & one-shot>',
    xLabel: 'Sparsity (%)',
    yLabel: 'Accuracy (%)',
    series: [
      { name: 'ResNet-18 "IMP"', points: sparsity.map((s) => [s, 94 - s / 50] as const) },
      { name: 'one-shot', points: sparsity.map((s) => [s, 93 - s / 20] as const), dashed: true },
      { name: 'dense', points: [[0, 94.3]] },
      { name: 'pending', points: [] },
    ],
    xTicks: sparsity,
  });

  it('is well formed, titled and names every series (escaped)', () => {
    checkWellFormed(svg);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('<title id=');
    expect(svg).toContain('Accuracy vs sparsity &lt;IMP &amp; one-shot&gt;');
    for (const name of ['ResNet-18 &quot;IMP&quot;', 'one-shot', 'dense', 'pending (no data)']) expect(svg).toContain(name);
    expect(badAttributes(svg)).toEqual([]);
  });

  it('draws dashes, one marker for a one-point series, nothing for an empty one', () => {
    expect(svg).toContain('stroke-dasharray="6 4"');
    const dense = svg.slice(svg.indexOf('<g><title>dense</title>'), svg.indexOf('<g><title>pending</title>'));
    expect(dense).not.toContain('fill="none"'); // no line through a single point
    expect((dense.match(/<title>dense: /g) ?? []).length).toBe(1);
    const pending = svg.slice(svg.indexOf('<g><title>pending</title>'));
    expect(pending.slice(0, pending.indexOf('</g>'))).toBe('<g><title>pending</title>\n');
  });

  it('thins explicit tick labels that would overlap but keeps their grid lines', () => {
    const labels = [...svg.matchAll(/text-anchor="middle">([^<]+)<\/text>/g)].map((m) => m[1]);
    expect(labels).toContain('0');
    expect(labels).toContain('20');
    expect(labels.filter((l) => ['73.8', '79', '83.2'].includes(l)).length).toBeLessThan(3);
  });

  it('is deterministic, and different charts get different clip ids', () => {
    const a = linePlot({ title: 'A', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points: [[0, 1], [1, 2]] }] });
    const b = linePlot({ title: 'B', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points: [[0, 1], [1, 2]] }] });
    expect(linePlot({ title: 'A', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points: [[0, 1], [1, 2]] }] })).toBe(a);
    const id = (s: string): string => /clipPath id="([^"]+)"/.exec(s)?.[1] ?? '';
    expect(id(a)).not.toBe(id(b));
  });

  it('handles no series at all', () => {
    const empty = linePlot({ title: 'Nothing', xLabel: 'x', yLabel: 'y', series: [] });
    checkWellFormed(empty);
    expect(empty).toContain('no data');
    expect(badAttributes(empty)).toEqual([]);
  });

  it('splits lines at NaN and drops x <= 0 on a log axis', () => {
    const s = linePlot({
      title: 'loss',
      xLabel: 'step',
      yLabel: 'loss',
      xScale: 'log',
      markers: false,
      series: [{ name: 'l', points: [[0, 1], [1, 0.9], [10, 0.5], [20, NaN], [100, 0.2], [1000, 0.1]] }],
    });
    checkWellFormed(s);
    const d = /<path d="([^"]+)" fill="none"/.exec(s)?.[1] ?? '';
    expect(d.match(/M/g)).toHaveLength(2);
    for (const label of ['1', '10', '100', '1000']) expect(s).toContain(`>${label}</text>`);
    expect(badAttributes(s)).toEqual([]);
  });

  it('respects a fixed y range and custom tick formats', () => {
    const s = linePlot({
      title: 't',
      xLabel: 'x',
      yLabel: 'y',
      yRange: [0.5, 1],
      yTickFormat: (v) => `${Math.round(v * 100)}%`,
      series: [{ name: 'a', points: [[0, 0.2], [1, 0.9]] }],
    });
    expect(s).toContain('>50%</text>');
    expect(s).toContain('>100%</text>');
    expect(s).not.toContain('>40%</text>');
  });

  it('property: any series (NaN, infinities, huge, tiny, odd names) gives well-formed SVG without NaN coordinates', () => {
    const num = fc.oneof(
      fc.double({ min: -1e6, max: 1e6, noNaN: true }),
      fc.constantFrom(NaN, Infinity, -Infinity, 0, -0, 1e-9, 1e12, 1e300, 5e-324),
    );
    const seriesArb: fc.Arbitrary<LineSeries> = fc.record({
      name: fc.string({ unit: 'grapheme', maxLength: 40 }),
      points: fc.array(fc.tuple(num, num), { maxLength: 12 }),
      dashed: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(seriesArb, { maxLength: 9 }),
        fc.boolean(),
        fc.option(fc.tuple(num, num), { nil: undefined }),
        fc.option(fc.array(num, { maxLength: 8 }), { nil: undefined }),
        (series, log, yRange, xTicks) => {
          const finiteRange = yRange && yRange.every(Number.isFinite) && Math.abs(yRange[0]) < 1e300 && Math.abs(yRange[1]) < 1e300 ? yRange : undefined;
          const s = linePlot({ title: 'p', xLabel: 'x', yLabel: 'y', series, xScale: log ? 'log' : 'linear', yRange: finiteRange, xTicks });
          checkWellFormed(s);
          expect(badAttributes(s)).toEqual([]);
          for (const ser of series) expect(s).toContain(`<title>${escapeXml(ser.name)}</title>`);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('ticks', () => {
  it('niceTicks uses 1-2-5 steps, covers the data and ends on ticks', () => {
    fc.assert(
      fc.property(fc.double({ min: -1e9, max: 1e9, noNaN: true }), fc.double({ min: -1e9, max: 1e9, noNaN: true }), fc.integer({ min: 2, max: 12 }), (a, b, target) => {
        const { lo, hi, step, ticks } = niceTicks(a, b, target);
        const mantissa = step / 10 ** Math.floor(Math.log10(step) + 1e-9);
        expect([1, 2, 5, 10].some((m) => Math.abs(mantissa - m) < 1e-6)).toBe(true);
        // Within a millionth of a step: tick rounding may leave data that far past the end.
        expect(lo).toBeLessThanOrEqual(Math.min(a, b) + step * 1e-6);
        expect(hi).toBeGreaterThanOrEqual(Math.max(a, b) - step * 1e-6);
        expect(ticks[0]).toBe(lo);
        expect(ticks[ticks.length - 1]).toBe(hi);
        expect(ticks.length).toBeGreaterThanOrEqual(2);
        expect(ticks.length).toBeLessThanOrEqual(target * 3 + 2);
        for (let i = 1; i < ticks.length; i++) expect(Math.abs(ticks[i] - ticks[i - 1] - step)).toBeLessThan(step * 1e-6);
      }),
      { numRuns: 300 },
    );
  });

  it('examples', () => {
    expect(niceTicks(0, 83.2, 5).ticks).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0.55, 0.95, 5).ticks).toEqual([0.5, 0.6, 0.7, 0.8, 0.9, 1]);
    expect(niceTicks(0.1, 0.3, 2).ticks).toEqual([0.1, 0.2, 0.3]);
    expect(niceTicks(5, 5).ticks).toContain(5);
    expect(niceTicks(0.55, 0.95, 5, false).ticks).toEqual([0.6, 0.7, 0.8, 0.9]);
    expect(logTicks(1, 1000)).toEqual([1, 10, 100, 1000]);
    expect(logTicks(3, 40)).toEqual([5, 10, 20]);
    expect(formatTicks([0, 0.5, 1], 0.5)).toEqual(['0', '0.5', '1.0']);
    expect(formatTicks([0, 20000, 40000], 20000)).toEqual(['0', '20k', '40k']);
    expect(formatTicks([-1, 0, 1], 1)).toEqual(['\u22121', '0', '1']);
    expect(formatTicks([1.0000001, 1.0000002], 1e-7)).toEqual(['1.0000001', '1.0000002']);
    expect(formatTicks([1e-9, 2e-9], 1e-9)).toEqual(['1e-9', '2e-9']);
    expect(formatNumber(11_689_512)).toBe('11.7M');
    expect(formatNumber(0.91412)).toBe('0.914');
    expect(truncateMiddle('layer4.1.downsample.0.weight', 12)).toBe('layer4…eight');
  });
});

describe('barChart', () => {
  it('grouped bars with a legend, slanted long labels, gaps for missing values', () => {
    const layers = ['conv1.weight', 'layer1.0.conv1.weight', 'layer4.1.downsample.0.weight', 'fc.weight'];
    const svg = barChart({
      title: 'Per-layer sparsity',
      yLabel: 'pruned (%)',
      xLabel: 'layer',
      categories: layers,
      series: [
        { name: 'round 1', values: [20, 20, 25, 10] },
        { name: 'round 8 <final>', values: [80, null, NaN, 60] },
      ],
      valueLabels: true,
    });
    checkWellFormed(svg);
    expect(badAttributes(svg)).toEqual([]);
    expect(svg).toContain('round 8 &lt;final&gt;');
    expect(svg).toContain('rotate(-45)');
    expect((svg.match(/<rect x="[^"]+" y="[^"]+" width="[^"]+" height="[^"]+" fill="#[0-9A-F]{6}"><title>/g) ?? []).length).toBe(6);
    for (const l of layers) expect(svg).toContain(l);
  });

  it('negative values hang below the zero line; empty input still renders', () => {
    const svg = barChart({ title: 'delta', yLabel: 'Δ acc', categories: ['a', 'b'], series: [{ name: 'd', values: [-2, 3] }] });
    checkWellFormed(svg);
    expect(svg).toContain('>\u22122</text>');
    const empty = barChart({ title: 'none', yLabel: 'y', categories: [], series: [] });
    checkWellFormed(empty);
    expect(empty).toContain('no data');
    expect(badAttributes(empty)).toEqual([]);
  });

  it('grows wider instead of drawing sub-pixel bars', () => {
    const cats = Array.from({ length: 40 }, (_, i) => `l${i}`);
    const svg = barChart({ title: 'many', yLabel: 'y', categories: cats, series: Array.from({ length: 8 }, (_, k) => ({ name: `r${k}`, values: cats.map(() => k) })) });
    const width = Number(/width="([\d.]+)"/.exec(svg)?.[1]);
    expect(width).toBeGreaterThan(720);
    const bars = [...svg.matchAll(/<rect x="[^"]+" y="[^"]+" width="([\d.]+)"[^>]*><title>/g)].map((m) => Number(m[1]));
    expect(Math.min(...bars)).toBeGreaterThanOrEqual(4);
  });
});

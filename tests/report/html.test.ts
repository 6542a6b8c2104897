import { describe, expect, it } from 'vitest';
import { figure, figureRow, htmlReport, imageTag, relativeUrl, scrollable, slugify } from '../../src/report/html.js';
import { linePlot } from '../../src/report/svg-plot.js';
import { htmlTable } from '../../src/util/table.js';

const VOID = new Set(['meta', 'img', 'br', 'hr', 'input', 'link']);

/** Balanced-tag check for our own HTML (void elements allowed, no raw '<' in text). */
function checkBalanced(html: string): void {
  const body = html.replace(/^<!DOCTYPE html>\s*/, '').replace(/<style>[\s\S]*?<\/style>/, '<style></style>');
  const stack: string[] = [];
  const tagRe = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+(?:="[^"<]*")?)*)\s*(\/?)>/g;
  let pos = 0;
  for (let m = tagRe.exec(body); m !== null; m = tagRe.exec(body)) {
    expect(body.slice(pos, m.index)).not.toMatch(/</);
    const [, closing, name, , selfClosing] = m;
    const tag = name.toLowerCase();
    if (closing) expect(stack.pop()).toBe(tag);
    else if (!selfClosing && !VOID.has(tag)) stack.push(tag);
    pos = m.index + m[0].length;
  }
  expect(stack).toEqual([]);
}

describe('htmlReport', () => {
  const chart = linePlot({ title: 'acc', xLabel: 'sparsity', yLabel: 'acc', series: [{ name: 'IMP', points: [[0, 0.9], [20, 0.91]] }] });
  const page = htmlReport({
    title: 'Run <cnn5-imp> & friends',
    subtitle: 'IMP, global, rewind to init',
    meta: { run: 'cnn5_of', seed: 0, 'git commit': 'abc123', rewind: null, f16: false },
    sections: [
      { heading: 'Accuracy vs sparsity', html: figure(chart, 'Test accuracy <per round>') },
      { heading: 'Summary', html: scrollable(htmlTable([{ level: 0, acc: 0.91 }])) },
      { heading: 'Summary', html: figureRow([figure(imageTag('gradcam/level 3/fake#1.png', 'Grad-CAM "fake"'))]) },
    ],
  });

  it('is one self-contained, balanced page', () => {
    expect(page.startsWith('<!DOCTYPE html>\n<html lang="en">')).toBe(true);
    checkBalanced(page);
    expect(page).toContain('<style>');
    // Nothing fetched: no scripts, stylesheets or remote sources (the SVG namespace URI is only a name).
    expect(page).not.toMatch(/<script|<link|(src|href)="https?:/i);
    expect(page).toContain('<svg xmlns="http://www.w3.org/2000/svg"'); // inline, not linked
  });

  it('escapes the title, metadata and captions but not section HTML', () => {
    expect(page).toContain('<title>Run &lt;cnn5-imp&gt; &amp; friends</title>');
    expect(page).toContain('<dt>git commit</dt><dd>abc123</dd>');
    expect(page).toContain('<dt>rewind</dt><dd>—</dd>');
    expect(page).toContain('<figcaption>Test accuracy &lt;per round&gt;</figcaption>');
    expect(page).toContain('<table>');
  });

  it('anchors sections uniquely and lists them when there are several', () => {
    expect(page).toContain('<section id="accuracy-vs-sparsity">');
    expect(page).toContain('<section id="summary">');
    expect(page).toContain('<section id="summary-2">');
    expect(page).toContain('<a href="#summary-2">Summary</a>');
  });

  it('references images by encoded relative path', () => {
    expect(page).toContain('<img src="gradcam/level%203/fake%231.png" alt="Grad-CAM &quot;fake&quot;" loading="lazy">');
  });

  it('leaves out the header parts it has no data for', () => {
    const bare = htmlReport({ title: 't', sections: [] });
    checkBalanced(bare);
    expect(bare).not.toContain('<dl');
    expect(bare).not.toContain('<nav');
  });
});

describe('helpers', () => {
  it('relativeUrl refuses absolute paths and URLs', () => {
    expect(relativeUrl('a/b c.png')).toBe('a/b%20c.png');
    expect(relativeUrl('a\\b.png')).toBe('a/b.png');
    expect(() => relativeUrl('/etc/x.png')).toThrow(/relative/);
    expect(() => relativeUrl('file:///x.png')).toThrow(/relative/);
    expect(() => relativeUrl('C:\\x.png')).toThrow(/relative/);
  });

  it('slugify', () => {
    expect(slugify('Grad-CAM: ResNet-18 @ 80%')).toBe('grad-cam-resnet-18-80');
    expect(slugify('Ünïcode')).toBe('unicode');
    expect(slugify('!!!')).toBe('section');
  });
});

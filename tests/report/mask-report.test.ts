// `ticketlab masks` and the report's mask-anatomy section over a run tree written by the test (masks
// from real pruning decisions on seeded weights; no training, no GPU work), the PyTorch fixture and
// a second "seed".
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { onesMasks, saveMasks, type HostMasks, type PrunableWeight } from '../../src/prune/masks.js';
import { magnitudeScores, pruneByRate, pruneToSparsity, randomMasksLike } from '../../src/prune/magnitude.js';
import { formatMaskAnatomy, maskAnatomySection, writeMaskAnatomy } from '../../src/report/mask-report.js';
import { writeRunReport } from '../../src/report/run-report.js';
import { masksCommand } from '../../src/cli/masks.js';
import { controlDir, levelDir, oneshotDir, runFile } from '../../src/io/run-paths.js';
import { parseCsv } from '../../src/util/csv.js';
import { decodeImage } from '../../src/data/image.js';
import { saveSafetensors, type HostTensor } from '../../src/io/safetensors.js';
import { seededValues } from '../ref/arb.js';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'torch-prune');
const WS: PrunableWeight[] = [
  { key: 'conv1.weight', shape: [8, 3, 3, 3], size: 216, layer: null as never },
  { key: 'conv2.weight', shape: [16, 8, 3, 3], size: 1152, layer: null as never },
  { key: 'fc1.weight', shape: [4, 64], size: 256, layer: null as never },
];

/** A run folder with IMP levels 0..3 at rate 0.5 (global), one-shot and random-prune at level 2. */
async function fakeRun(seed: number): Promise<{ run: string; masks: HostMasks[] }> {
  const run = fs.mkdtempSync(path.join(os.tmpdir(), `masks-run-${seed}-`));
  fs.writeFileSync(runFile(run, 'config'), JSON.stringify({ command: 'imp', model: 'meso4', data: 'synthetic', scope: 'global', rate: 0.5, levels: 3, rewind: 'init' }));
  const weights = new Map(WS.map((w, i) => [w.key, seededValues(w.size, seed * 10 + i)]));
  // Filter 0 of conv1 and input channel 1 of conv2 get tiny weights: magnitude pruning kills them first.
  weights.get('conv1.weight')!.fill(1e-6, 0, 27);
  for (let o = 0; o < 16; o++) weights.get('conv2.weight')!.fill(1e-6, (o * 8 + 1) * 9, (o * 8 + 2) * 9);
  const scores = magnitudeScores(weights);
  const masks = [onesMasks(WS)];
  for (let k = 1; k <= 3; k++) masks.push(pruneByRate(masks[k - 1], scores, 0.5, 'global'));
  for (let k = 0; k <= 3; k++) {
    fs.mkdirSync(levelDir(run, k), { recursive: true });
    await saveMasks(runFile(levelDir(run, k), 'mask'), WS, masks[k]);
  }
  fs.mkdirSync(oneshotDir(run, 'global', 2), { recursive: true });
  await saveMasks(runFile(oneshotDir(run, 'global', 2), 'mask'), WS, pruneToSparsity(onesMasks(WS), scores, 0.75, 'global'));
  fs.mkdirSync(controlDir(run, 'random_prune', 2), { recursive: true });
  await saveMasks(runFile(controlDir(run, 'random_prune', 2), 'mask'), WS, randomMasksLike(masks[2], 1));
  return { run, masks };
}

const csv = (file: string) => {
  const [head, ...rows] = parseCsv(fs.readFileSync(file, 'utf8'));
  return rows.map((r) => Object.fromEntries(head.map((h, i) => [h, r[i]])));
};

describe('ticketlab masks', () => {
  it('anatomy of every pruned level: dead filters and channels, compaction, pictures, overlaps', async () => {
    const { run } = await fakeRun(1);
    const out = path.join(run, 'masks');
    const r = await writeMaskAnatomy({ run, outDir: out });
    expect(r.sources.map((s) => s.source.label)).toEqual(['level_1', 'level_2', 'level_3']);
    const l1 = r.sources[0].layers;
    expect(l1.find((l) => l.key === 'conv1.weight')!.deadFilters).toBeGreaterThanOrEqual(1);
    expect(l1.find((l) => l.key === 'conv2.weight')!.deadChannels).toBeGreaterThanOrEqual(1);
    expect(r.sources[0].compaction.compactable).toBeGreaterThanOrEqual(27 + 16 * 9);
    // Pairs: consecutive levels, then IMP vs one-shot and vs random pruning at level 2.
    expect(r.overlaps.map((c) => `${c.a.label}~${c.b.label}:${c.kind}`)).toEqual([
      'level_1~level_2:levels',
      'level_2~level_3:levels',
      'level_2~oneshot_global/level_2:IMP vs one-shot',
      'level_2~random_prune/level_2:IMP vs random pruning',
    ]);
    // Nested IMP masks: the Jaccard of level k and k+1 is kept(k+1) / kept(k).
    const all = r.overlaps[0].rows.at(-1)!;
    expect(all.jaccard).toBeCloseTo(all.keptB / all.keptA, 12);
    // The ticket overlaps its random control about as much as chance says, far less than one-shot.
    const rnd = r.overlaps[3].rows.at(-1)!;
    expect(Math.abs(rnd.jaccard - rnd.chance)).toBeLessThan(0.1);
    expect(r.overlaps[2].rows.at(-1)!.jaccard).toBeGreaterThan(rnd.jaccard + 0.2);

    for (const f of ['anatomy.csv', 'compaction.csv', 'filter_density.csv', 'taps.csv', 'overlap.csv', 'grid-level_1-conv2.weight.png', 'filter_density-level_2.svg', 'taps-level_3-conv1.weight.svg']) {
      expect(fs.existsSync(path.join(out, f)), f).toBe(true);
    }
    // The grid is a titled figure with named axes (their sizes) and a legend, as SVG and rasterised to PNG.
    const svg = fs.readFileSync(path.join(out, 'grid-level_1-conv2.weight.svg'), 'utf8');
    expect(svg).toMatch(/<title>level_1, conv2\.weight \[16x8x3x3\]: kept weights per kernel slice<\/title>/);
    expect(svg).toMatch(/>input channels \(8\)</);
    expect(svg).toMatch(/>filters \(output channels\) \(16\)</);
    expect(svg).toMatch(/>kept share of the 3x3 slice</);
    expect(fs.readFileSync(path.join(out, 'grid-level_1-fc1.weight.svg'), 'utf8')).toMatch(/>inputs \(\d+\)<[\s\S]*>output units \(\d+\)</);
    const img = await decodeImage(path.join(out, 'grid-level_1-conv2.weight.png'));
    const cells = Number(/width="(\d+)" height="(\d+)" image-rendering/.exec(svg)![1]);
    expect(cells / 8).toBe(Math.round(cells / 8)); // whole cells
    expect(img.width).toBeGreaterThan(cells); // the frame: labels and legend around the cells
    // The text was drawn: the title row of the PNG holds dark pixels.
    let dark = 0;
    for (let x = 0; x < img.width; x++) for (let y = 5; y < 22; y++) if (img.data[(y * img.width + x) * 3] < 100) dark++;
    expect(dark).toBeGreaterThan(50);
    const rows = csv(path.join(out, 'anatomy.csv'));
    expect(rows.find((x) => x.source === 'level_1' && x.layer === 'conv1.weight')).toMatchObject({ shape: '8x3x3x3', total: '216' });
    expect(csv(path.join(out, 'taps.csv')).filter((x) => x.source === 'level_1' && x.layer === 'conv1.weight')).toHaveLength(9);
    const text = formatMaskAnatomy(r);
    expect(text).toMatch(/removed by compaction/);
    // The per-filter density histogram is a text chart under its bin edges, not only in the SVG and CSV.
    const conv1 = l1.find((l) => l.key === 'conv1.weight')!;
    expect(conv1.filterHistogram.reduce((a, b) => a + b, 0)).toBe(8);
    expect(text).toMatch(/^layer +dead +<=10 +<=20 .* <=100 {2}\(% kept of the filter\)$/m);
    const chart = text.split('\n').find((x) => x.startsWith('conv1.weight') && x.endsWith('8 filters'))!;
    expect(chart.replace(/[▁▂▃▄▅▆▇█]/g, ' ').trim().split(/ +/).slice(1, 12).map(Number)).toEqual(conv1.filterHistogram);
    expect(text).toMatch(/level_2 +oneshot_global\/level_2 +IMP vs one-shot/);
    // One number format: fractions as percentages with one decimal, nothing like 0.8592 in the tables.
    expect(text).not.toMatch(/\b0\.\d{2,}\b/);
    // Consecutive IMP levels are read against nestedness: 100.0% of the nested Jaccard.
    expect(text).toMatch(/level_1 +level_2 +levels +\d+\.\d% +\d+\.\d% +100\.0% +\d+\.\d%/);
    // A linear layer's columns are inputs.
    expect(text).toMatch(/^ *fc1\.weight .* \d+\/\d+ inputs /m);
    const section = maskAnatomySection(r, run);
    expect(section.html).toContain('src="masks/grid-level_3-fc1.weight.png"');
  });

  it('--levels, --compare with another seed, a PyTorch folder, and one-line errors', async () => {
    const a = await fakeRun(1);
    const b = await fakeRun(2);
    const r = await writeMaskAnatomy({ run: a.run, levels: [1, 3], compare: b.run, outDir: path.join(a.run, 'm2') });
    expect(r.sources.map((s) => s.source.label)).toEqual(['level_1', 'level_3']);
    const cmp = r.overlaps.filter((c) => c.kind === 'compare');
    expect(cmp.map((c) => c.b.label)).toEqual([`${path.basename(b.run)}/level_1`, `${path.basename(b.run)}/level_3`]);
    const torch = await writeMaskAnatomy({ run: FIXTURE, outDir: fs.mkdtempSync(path.join(os.tmpdir(), 'masks-torch-')) });
    expect(torch.sources.map((s) => s.source.label)).toEqual(['level_1', 'level_2', 'level_3']);
    expect(torch.sources[0].layers.map((l) => l.key)).toEqual(['conv1.weight', 'conv2.weight', 'fc1.weight']);
    await expect(writeMaskAnatomy({ run: a.run, levels: [7], outDir: path.join(a.run, 'x') })).rejects.toThrow(/^writeMaskAnatomy: options.levels 7: .* has no level_7\/mask.safetensors \(levels with masks: 0, 1, 2, 3\)/);
    await expect(writeMaskAnatomy({ run: a.run, compare: path.join(a.run, 'nope'), outDir: path.join(a.run, 'x') })).rejects.toThrow(/^writeMaskAnatomy: options.compare .*nope: no such run folder or mask file/);
  });

  it('refuses a mask that is not 0/1 in one line naming the file and tensor', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'masks-soft-'));
    // Written directly as float32 (HostMasks are bytes and could not hold 0.5), like a PyTorch soft mask.
    const file = path.join(d, 'soft.safetensors');
    const t: Record<string, HostTensor> = {};
    for (const w of WS) t[`${w.key}_mask`] = { dtype: 'F32', shape: w.shape, data: new Float32Array(w.size).fill(1) };
    (t['conv2.weight_mask'].data as Float32Array)[5] = 0.5;
    await saveSafetensors(file, t);
    const err = await writeMaskAnatomy({ run: file, outDir: path.join(d, 'out') }).then(() => null, (e: Error) => e);
    expect(err?.message).toBe(`${file}: conv2.weight_mask[5] holds 0.5; masks are 0/1; not a pruning mask (ticketlab check names every offence)`);
    await expect(masksCommand.run([file, '--out', path.join(d, 'out2'), '--quiet'])).rejects.toThrow(/soft\.safetensors: conv2\.weight_mask\[5\] holds 0\.5/);
    // Nothing is created for bad input.
    expect(fs.existsSync(path.join(d, 'out'))).toBe(false);
    expect(fs.existsSync(path.join(d, 'out2'))).toBe(false);
  });

  it('the command prints the tables; report.html gets a Mask anatomy section', async () => {
    const { run } = await fakeRun(3);
    const write = process.stdout.write.bind(process.stdout);
    let out = '';
    process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
    try {
      expect(await masksCommand.run([run, '--levels', '2'])).toBe(0);
    } finally {
      process.stdout.write = write;
    }
    expect(out).toMatch(/Structured compaction/);
    expect(out).toMatch(/wrote \d+ files to .*masks\//);
    await expect(masksCommand.run([run, '--levels', 'x'])).rejects.toThrow(/--levels 'x'/);
    const rep = await writeRunReport([run], run);
    const html = fs.readFileSync(path.join(run, 'report.html'), 'utf8');
    expect(html).toContain('Mask anatomy');
    expect(html).toContain('masks/grid-level_1-conv1.weight.png');
    expect(rep.files.some((f) => f.endsWith('compaction.csv'))).toBe(true);
  });
});

// `ticketlab gradcam` end to end on a small hand-made run folder (untrained Meso-4 at 40 px, a dense
// level and a 60%-pruned level), the files it writes, and the CLI's flag checks and one-line errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { createModel } from '../../src/nn/models/index.js';
import { saveModel, loadModel } from '../../src/nn/checkpoint.js';
import { attachMasks, onesMasks, prunableWeights, saveMasks, sparsityReport, detachMasks } from '../../src/prune/masks.js';
import { magnitudeScores, pruneToSparsity } from '../../src/prune/magnitude.js';
import { fromArray } from '../../src/tensor/tensor.js';
import { noGrad } from '../../src/autograd/tape.js';
import { parseCsv } from '../../src/util/csv.js';
import { writePng } from '../../src/data/image.js';
import { checkLevels, defaultLevels, explainRun, readRunInfo, type ExplainResult } from '../../src/explain/run.js';
import { pickImages } from '../../src/explain/images.js';
// commands.ts first, as main.ts does: the command modules import parseFlags from it (an import cycle
// that is harmless only in that order).
import { commands } from '../../src/cli/commands.js';
import { gradcamCommand, parseLevelList } from '../../src/cli/gradcam.js';

const SIZE = 40; // Meso-4's last block is 2x2 here
let tmp: string;
let run: string;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-gradcam-'));
  run = path.join(tmp, 'run');
  fs.mkdirSync(run);
  fs.writeFileSync(
    path.join(run, 'config.json'),
    JSON.stringify({ command: 'imp', model: 'meso4', data: 'synthetic:train=8,val=4,test=12', size: SIZE, train: { seed: 3 }, pruneLast: false }),
  );
  const model = createModel('meso4', { size: SIZE, seed: 1 });
  const ws = prunableWeights(model);
  const dense = onesMasks(ws);
  const host = new Map<string, Float32Array>();
  for (const w of ws) host.set(w.key, (await model.stateDict().get(w.key)!.toArray()) as Float32Array);
  const pruned = pruneToSparsity(dense, magnitudeScores(host), 0.6, 'global');
  for (const [k, masks] of [
    [0, dense],
    [1, pruned],
  ] as const) {
    const dir = path.join(run, `level_${k}`);
    fs.mkdirSync(dir);
    await saveModel(path.join(dir, 'final.safetensors'), model);
    await saveMasks(path.join(dir, 'mask.safetensors'), ws, masks);
    fs.writeFileSync(path.join(dir, 'sparsity.json'), JSON.stringify(sparsityReport(masks, model.parameterCount())));
  }
  fs.mkdirSync(path.join(run, 'level_2')); // started, never finished
  model.dispose();
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('run folder checks', () => {
  it('reads the config and finds the levels', () => {
    expect(readRunInfo(run)).toMatchObject({ model: 'meso4', size: SIZE, seed: 3, data: 'synthetic:train=8,val=4,test=12', pruneLast: false });
    expect(defaultLevels(run)).toEqual([0, 1]);
    expect(() => checkLevels(run, [0, 1])).not.toThrow();
    expect(() => checkLevels(run, [0, 7])).toThrow(`${run} has no level 7 (levels: 0, 1, 2)`);
    expect(() => checkLevels(run, [2])).toThrow(`level 2 of ${run} is not finished (no level_2/final.safetensors)`);
    expect(() => readRunInfo(tmp)).toThrow(/not a run folder \(no config.json\)/);
  });

  it('CLI: registered, documented, one-line errors that name the level or flag', async () => {
    expect(commands.map((c) => c.name)).toContain('gradcam');
    for (const flag of ['--run', '--levels', '--images', '--n', '--out', '--layer', '--target', '--method', 'summary.csv', 'grid.png', 'gradcam.html', 'frobenius', 'pearson', 'confidence_change']) {
      expect(gradcamCommand.help).toContain(flag);
    }
    expect(parseLevelList('0, 4,7')).toEqual([0, 4, 7]);
    expect(() => parseLevelList('0,,4')).toThrow(/--levels '0,,4' must be a comma-separated list/);
    expect(() => parseLevelList('1.5')).toThrow(/'1.5' is not a level number/);
    const fails = async (args: string[], msg: string | RegExp) => {
      const e = await gradcamCommand.run(args).then(
        () => null,
        (err: Error) => err,
      );
      expect(e, args.join(' ')).not.toBeNull();
      expect(e!.message.split('\n')).toHaveLength(1);
      expect(e!.message).toMatch(msg);
    };
    await fails(['--run', run, '--levels', '0,4,7'], `${run} has no level 4`);
    await fails(['--run', run, '--levels', '0,2'], /level 2 of .* is not finished/);
    await fails([], /--run DIR is required/);
    await fails(['--run', run, '--frobnicate'], /gradcam: Unknown option '--frobnicate'/);
    await fails(['--run', run, '--target', 'both'], /--target 'both' is not one of fake, real/);
    await fails(['--run', run, '--method', 'scorecam'], /--method 'scorecam' is not one of gradcam, gradcam\+\+/);
    await fails(['--run', run, '--layer', 'layer4'], /--layer 'layer4' is not a layer of meso4 \(one of block1, block2, block3, block4\)/);
    await fails(['--run', run, '--n', '0'], /--n '0' must be an integer in \[1, /);
    await fails(['--run', run, '--images', path.join(tmp, 'nope')], /no such folder/);
    await fails(['--run', path.join(tmp, 'nope')], /no such folder/);
  });
});

describe('explainRun on the synthetic test split', () => {
  let r: ExplainResult;
  const out = () => path.join(tmp, 'out');

  beforeAll(async () => {
    r = await explainRun({ run, levels: [1, 0, 1], images: 'synthetic', n: 5, out: out(), batch: 3 });
  });

  it('uses the same balanced images for every level, with blend masks for fakes', () => {
    expect(r.images.map((im) => im.source)).toEqual(['synthetic/test/0', 'synthetic/test/2', 'synthetic/test/1', 'synthetic/test/3', 'synthetic/test/5']);
    expect(r.images.map((im) => im.label)).toEqual([0, 0, 1, 1, 1]);
    expect(r.images.map((im) => im.mask !== null)).toEqual([false, false, true, true, true]);
    expect(r.levels.map((l) => l.level)).toEqual([0, 1]);
    expect(r.referenceLevel).toBe(0);
    expect(r.layer).toBe('block4');
    expect(r.levels[0].mapSize).toEqual([2, 2]);
    expect(r.levels[1].sparsity).toBeCloseTo(0.6, 2);
  });

  it("runs each level with its own weights and mask attached (logits = the masked model's)", async () => {
    const model = createModel('meso4', { size: SIZE });
    const ws = prunableWeights(model);
    await loadModel(path.join(run, 'level_1', 'final.safetensors'), model);
    const { loadMasks } = await import('../../src/prune/masks.js');
    attachMasks(ws, await loadMasks(path.join(run, 'level_1', 'mask.safetensors'), ws));
    model.eval();
    const x = fromArray(Float32Array.from(r.images.flatMap((im) => Array.from(im.image))), [5, 3, SIZE, SIZE]);
    const y = noGrad(() => model.forward(x));
    const want = (await y.toArray()) as Float32Array;
    for (let i = 0; i < 5; i++) expect(r.levels[1].logits[i]).toBeCloseTo(want[i], 5);
    // Pruning changed the model: the dense logits differ.
    expect(Array.from(r.levels[0].logits)).not.toEqual(Array.from(r.levels[1].logits));
    for (const t of [x, y]) t.dispose();
    detachMasks(ws);
    model.dispose();
  });

  it('writes overlays, the grid, the CSVs and the page', async () => {
    const o = out();
    for (const f of ['grid.png', 'summary.csv', 'per_image.csv', 'gradcam.html']) expect(fs.existsSync(path.join(o, f)), f).toBe(true);
    expect(fs.readdirSync(path.join(o, 'input')).sort()).toEqual(['00_real.png', '01_real.png', '02_fake.png', '03_fake.png', '04_fake.png']);
    for (const k of [0, 1]) expect(fs.readdirSync(path.join(o, `level_${k}`))).toHaveLength(5);
    const ov = await sharp(path.join(o, 'level_1', '02_fake.png')).metadata();
    expect([ov.width, ov.height]).toEqual([SIZE, SIZE]);
    // Grid: 3 columns (input + 2 levels) of 40 px cells enlarged x4 = 160 px; 4 px gaps, +8 after the
    // input column; 5 rows with a wider gap (+8) after the last real face.
    const g = await sharp(path.join(o, 'grid.png')).metadata();
    expect(g.width).toBe(4 + 3 * (160 + 4) + 8);
    expect(g.height).toBe(4 + 5 * (160 + 4) + 8);

    const summary = parseCsv(fs.readFileSync(path.join(o, 'summary.csv'), 'utf8'));
    expect(summary[0]).toEqual([
      'level', 'sparsity', 'n', 'frobenius_mean', 'frobenius_std', 'pearson_mean', 'pearson_std', 'pearson_n',
      'confidence_change_mean', 'confidence_change_std', 'accuracy', 'mask_ratio_mean', 'mask_ratio_std', 'mask_ratio_n',
    ]);
    expect(summary).toHaveLength(3);
    const row = (k: number) => Object.fromEntries(summary[0].map((c, j) => [c, summary[k][j]]));
    expect(row(1)).toMatchObject({ level: '0', sparsity: '0', n: '5', frobenius_mean: '0', frobenius_std: '0' });
    expect(row(2).level).toBe('1');
    expect(Number(row(2).sparsity)).toBeCloseTo(0.6, 2);
    const perImage = parseCsv(fs.readFileSync(path.join(o, 'per_image.csv'), 'utf8'));
    expect(perImage).toHaveLength(1 + 2 * 5);
    expect(perImage[0]).toContain('frobenius');
    // The summary agrees with the per-image rows.
    const fcol = perImage[0].indexOf('frobenius');
    const fro = perImage.slice(6).map((p) => Number(p[fcol]));
    expect(Number(row(2).frobenius_mean)).toBeCloseTo(fro.reduce((a, b) => a + b, 0) / 5, 4);

    const html = fs.readFileSync(path.join(o, 'gradcam.html'), 'utf8');
    expect(html).toContain('src="grid.png"');
    expect(html).toContain('src="level_1/04_fake.png"');
    expect(html).toContain('synthetic/test/5');
    expect(html).not.toContain(tmp + '/out'); // links stay relative
  });

  it('the summary rows match the maps it reports', () => {
    const s1 = r.summary[1];
    const lm = r.levels[1];
    const ref = r.levels[0];
    let sum = 0;
    for (let i = 0; i < 5; i++) {
      let d = 0;
      for (let p = 0; p < SIZE * SIZE; p++) d += (lm.cams[i * SIZE * SIZE + p] - ref.cams[i * SIZE * SIZE + p]) ** 2;
      sum += Math.sqrt(d);
    }
    expect(s1.frobenius_mean).toBeCloseTo(sum / 5, 6);
    expect(s1.n).toBe(5);
    expect(s1.mask_ratio_n).toBeLessThanOrEqual(3); // fakes only (and only where the map has mass)
  });
});

describe('images from a plain folder', () => {
  it('labels by a real/ or fake/ folder, balances, and resizes to the model input', async () => {
    const dir = path.join(tmp, 'faces');
    const img = (v: number) => ({ width: 8, height: 6, channels: 3 as const, data: new Uint8Array(8 * 6 * 3).fill(v) });
    await writePng(path.join(dir, 'real', 'a.png'), img(10));
    await writePng(path.join(dir, 'real', 'b.png'), img(20));
    await writePng(path.join(dir, 'real', 'c.png'), img(30));
    await writePng(path.join(dir, 'fake', 'x', 'd.png'), img(200));
    await writePng(path.join(dir, 'other.png'), img(99));
    const ims = await pickImages(dir, { runData: 'synthetic', size: 16, seed: 0, n: 3 });
    // floor(3/2) = 1 real wanted, but only one fake exists: topped up with a second real; reals first.
    expect(ims.map((im) => [im.source, im.label])).toEqual([
      ['real/a.png', 0],
      ['real/b.png', 0],
      ['fake/x/d.png', 1],
    ]);
    expect(ims[0].image.length).toBe(3 * 16 * 16);
    expect(ims[0].image[0]).toBeCloseTo(10 / 255, 6);
    await expect(pickImages(path.join(tmp, 'empty-nope'), { runData: 'synthetic', size: 16, seed: 0, n: 3 })).rejects.toThrow(/no such folder/);
  });
});

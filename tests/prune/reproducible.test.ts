// Reproducible files (issue 14): two identical runs in different folders write identical weights, masks
// and sparsity files, and no file holds the run's absolute path (start.safetensors used to embed it).
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDataset } from '../../src/data/datasets.js';
import { runImp, type ImpConfig } from '../../src/prune/imp.js';
import { DEFAULT_TRAIN } from '../../src/train/trainer.js';
import { loadSafetensors, saveSafetensors } from '../../src/io/safetensors.js';

const cfg: ImpConfig = {
  model: 'meso4', data: 'synthetic:train=32,val=16,test=16', size: 32,
  train: { ...DEFAULT_TRAIN, epochs: 1, batch: 16, lr: 1e-3, patience: 0, seed: 4 },
  levels: 1, rate: 0.2, sparsities: null, scope: 'global', rewind: 'init', pruneLast: false,
};

function files(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort();
}

describe('reproducible run folders', () => {
  it('resuming a level whose start.safetensors was damaged is refused, naming it, and the file stays', async () => {
    const data = await openDataset(cfg.data, { size: cfg.size, seed: 0 });
    const run = fs.mkdtempSync(path.join(os.tmpdir(), 'repro-start-'));
    await runImp(cfg, { run, data, resume: false, progress: false, log: () => undefined });
    // Level 1 made unfinished again, with its start weights cut short.
    for (const f of ['done.json', 'level_1/result.json', 'level_1/final.safetensors', 'level_1/best.safetensors', 'level_1/metrics.jsonl']) fs.rmSync(path.join(run, f), { force: true });
    const start = path.join(run, 'level_1', 'start.safetensors');
    fs.truncateSync(start, 1000);
    const cut = fs.readFileSync(start);
    await expect(runImp(cfg, { run, data, resume: true, progress: false, log: () => undefined })).rejects.toThrow(`${start} already exists with other contents`);
    expect(fs.readFileSync(start).equals(cut)).toBe(true);
    fs.rmSync(run, { recursive: true, force: true });
  });

  // An unfinished level's mask and counts must be what its inputs give: a flipped mask bit would
  // train another ticket, a damaged sparsity.json would be reported as the level's sparsity.
  const damages: [string, (lv: string) => Promise<void>, RegExp][] = [
    [
      'mask.safetensors with one kept weight flipped to pruned',
      async (lv) => {
        const f = path.join(lv, 'mask.safetensors');
        const { tensors, metadata } = await loadSafetensors(f);
        const [, t] = Object.entries(tensors).find(([, v]) => Array.from(v.data as Float32Array).includes(1))!;
        const i = Array.from(t.data as Float32Array).indexOf(1);
        (t.data as Float32Array)[i] = 0;
        await saveSafetensors(f, tensors, metadata);
      },
      /level_1\/mask\.safetensors: mask '[^']+_mask' holds 0 at \d+ where this level's pruning gives 1; move the level folder away/,
    ],
    [
      'sparsity.json with a miscounted layer',
      async (lv) => {
        const f = path.join(lv, 'sparsity.json');
        fs.writeFileSync(f, fs.readFileSync(f, 'utf8').replace(/"kept": (\d+)/, (_, n) => `"kept": ${Number(n) + 1}`));
      },
      /level_1\/sparsity\.json already exists with other contents; it is written once and never replaced \(it must hold the counts of mask\.safetensors/,
    ],
  ];
  for (const [what, damage, re] of damages) {
    it(`resuming a level whose ${what} is refused, naming it, and the file stays`, async () => {
      const data = await openDataset(cfg.data, { size: cfg.size, seed: 0 });
      const run = fs.mkdtempSync(path.join(os.tmpdir(), 'repro-mask-'));
      await runImp(cfg, { run, data, resume: false, progress: false, log: () => undefined });
      for (const f of ['done.json', 'level_1/result.json', 'level_1/final.safetensors', 'level_1/best.safetensors', 'level_1/metrics.jsonl']) fs.rmSync(path.join(run, f), { force: true });
      const lv = path.join(run, 'level_1');
      await damage(lv);
      const before = files(lv).map((f) => fs.readFileSync(path.join(lv, f)));
      await expect(runImp(cfg, { run, data, resume: true, progress: false, log: () => undefined })).rejects.toThrow(re);
      expect(files(lv).map((f) => fs.readFileSync(path.join(lv, f)))).toEqual(before);
      fs.rmSync(run, { recursive: true, force: true });
    });
  }

  it('an unfinished level with sound files resumes', async () => {
    const data = await openDataset(cfg.data, { size: cfg.size, seed: 0 });
    const run = fs.mkdtempSync(path.join(os.tmpdir(), 'repro-sound-'));
    await runImp(cfg, { run, data, resume: false, progress: false, log: () => undefined });
    for (const f of ['done.json', 'level_1/result.json', 'level_1/final.safetensors', 'level_1/best.safetensors', 'level_1/metrics.jsonl']) fs.rmSync(path.join(run, f), { force: true });
    const r = await runImp(cfg, { run, data, resume: true, progress: false, log: () => undefined });
    expect(r.levels.length).toBe(2);
    fs.rmSync(run, { recursive: true, force: true });
  });

  it('identical runs in different folders give identical files, none holding an absolute path', async () => {
    const data = await openDataset(cfg.data, { size: cfg.size, seed: 0 });
    const a = fs.mkdtempSync(path.join(os.tmpdir(), 'repro-a-'));
    const b = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'repro-b-')), 'deeper', 'run');
    for (const run of [a, b]) await runImp(cfg, { run, data, resume: false, progress: false, log: () => undefined });
    expect(files(b)).toEqual(files(a));
    const timed = /(^|\/)(metrics\.jsonl|result\.json)$/; // wall-clock seconds differ between runs
    for (const f of files(a)) {
      const x = fs.readFileSync(path.join(a, f));
      if (!timed.test(f)) expect(x.equals(fs.readFileSync(path.join(b, f))), f).toBe(true);
      expect(x.includes(Buffer.from(os.tmpdir())), `${f} holds a path`).toBe(false);
      expect(fs.readFileSync(path.join(b, f)).includes(Buffer.from(os.tmpdir())), `${f} holds a path`).toBe(false);
    }
  });
});

// IMP end to end on a tiny synthetic set: masks on disk, rewinding, exact zeros, resume after a kill
// (bit-identical to an uninterrupted run), no-op re-runs, controls.
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDataset, type DatasetSplits } from '../../src/data/datasets.js';
import { runControls, runImp, runOneShot } from '../../src/prune/imp.js';
import { tinyImpConfig } from './tiny-imp.js';
import { Interrupted } from '../../src/train/trainer.js';
import { runTransfer } from '../../src/prune/transfer.js';
import { readF32Tensors } from '../../src/nn/checkpoint.js';
import { countKept, loadMasks, prunableWeights } from '../../src/prune/masks.js';
import { createModel } from '../../src/nn/models/index.js';
import { checkRun, formatRunCheck } from '../../src/prune/check.js';

const cfg = tinyImpConfig({ data: 'synthetic:train=48,val=16,test=16', train: { epochs: 2, seed: 3 }, levels: 2 });

let data: DatasetSplits;
const quiet = () => undefined;
const tmp = (name: string) => fs.mkdtempSync(path.join(os.tmpdir(), `imp-${name}-`));

beforeAll(async () => {
  data = await openDataset(cfg.data, { size: cfg.size, seed: 0 });
});

async function tensorsOf(file: string) {
  return (await readF32Tensors(file)).tensors;
}

describe('IMP on a tiny synthetic set', () => {
  let run: string;
  beforeAll(async () => {
    run = tmp('a');
    await runImp(cfg, { run, data, resume: false, progress: false, log: quiet });
  });

  it('writes every level with masks of the requested global sparsity, monotone across levels', async () => {
    const ws = prunableWeights(createModel('meso4', { size: 32 }));
    let prev: Map<string, Uint8Array> | null = null;
    for (let k = 0; k <= 2; k++) {
      const dir = path.join(run, `level_${k}`);
      for (const f of ['mask.safetensors', 'sparsity.json', 'start.safetensors', 'final.safetensors', 'metrics.jsonl', 'result.json']) {
        expect(fs.existsSync(path.join(dir, f)), `${dir}/${f}`).toBe(true);
      }
      const m = await loadMasks(path.join(dir, 'mask.safetensors'), ws);
      const total = [...m.values()].reduce((s, a) => s + a.length, 0);
      const kept = [...m.values()].reduce((s, a) => s + countKept(a), 0);
      expect(kept).toBe(k === 0 ? total : k === 1 ? total - Math.round(total * 0.2) : total - Math.round(total * 0.2) - Math.round((total - Math.round(total * 0.2)) * 0.2));
      if (prev) for (const [key, a] of m) a.forEach((v, i) => expect(v <= prev!.get(key)![i]).toBe(true));
      prev = m;
    }
  });

  it('rewinds every weight bit-exactly to theta_0 and keeps pruned weights exactly zero through training', async () => {
    const init = await tensorsOf(path.join(run, 'level_0', 'init.safetensors'));
    const ws = prunableWeights(createModel('meso4', { size: 32 }));
    for (const k of [1, 2]) {
      const start = await tensorsOf(path.join(run, `level_${k}`, 'start.safetensors'));
      for (const [key, t] of init) expect(Buffer.from(start.get(key)!.data.buffer).equals(Buffer.from(t.data.buffer)), key).toBe(true);
      const fin = await tensorsOf(path.join(run, `level_${k}`, 'final.safetensors'));
      const masks = await loadMasks(path.join(run, `level_${k}`, 'mask.safetensors'), ws);
      for (const [key, m] of masks) {
        const w = fin.get(key)!.data;
        m.forEach((v, i) => {
          if (!v) expect(Object.is(w[i], 0), `${key}[${i}] = ${w[i]}`).toBe(true);
        });
      }
    }
  });

  it('ticketlab check passes on it (no config.json here: targets and rewind points are skipped)', async () => {
    const r = await checkRun(run);
    expect(r.ok, formatRunCheck(r)).toBe(true);
    for (const id of ['binary', 'monotone', 'sparsity-json', 'zeros'] as const) expect(r.results.find((x) => x.id === id)!.status, id).toBe('pass');
  });

  it('re-running a finished run is a no-op', async () => {
    const f = path.join(run, 'level_2', 'final.safetensors');
    const before = fs.statSync(f).mtimeMs;
    await runImp(cfg, { run, data, resume: true, progress: false, log: quiet });
    expect(fs.statSync(f).mtimeMs).toBe(before);
  });

  it('a run killed mid-level resumes to bit-identical results', async () => {
    const run2 = tmp('b');
    const signal = { stop: false };
    let steps = 0;
    // Stop during level 1 (levels have 3 steps x 2 epochs): the 9th log line is well inside it.
    const log = () => {
      if (++steps === 3) signal.stop = true;
    };
    await expect(runImp(cfg, { run: run2, data, resume: false, progress: false, signal, log })).rejects.toBeInstanceOf(Interrupted);
    expect(fs.existsSync(path.join(run2, 'level_2', 'result.json'))).toBe(false);
    await runImp(cfg, { run: run2, data, resume: true, progress: false, log: quiet });
    for (const k of [0, 1, 2]) {
      const a = await tensorsOf(path.join(run, `level_${k}`, 'final.safetensors'));
      const b = await tensorsOf(path.join(run2, `level_${k}`, 'final.safetensors'));
      for (const [key, t] of a) expect(Buffer.from(b.get(key)!.data.buffer).equals(Buffer.from(t.data.buffer)), `level ${k} ${key}`).toBe(true);
    }
  });

  it('each level records its kernels; a resumed level uses the recorded ones, not the current rules', async () => {
    const rec = JSON.parse(fs.readFileSync(path.join(run, 'level_0', 'kernels.json'), 'utf8')) as Record<string, string>;
    const convKeys = Object.keys(rec).filter((k) => k.startsWith('conv.fwd|'));
    expect(convKeys.length).toBeGreaterThan(0);
    const run3 = tmp('c');
    const signal = { stop: false };
    let lines = 0;
    const log = () => {
      if (++lines === 1) signal.stop = true;
    };
    await expect(runImp(cfg, { run: run3, data, resume: false, progress: false, signal, log })).rejects.toBeInstanceOf(Interrupted);
    const file = path.join(run3, 'level_0', 'kernels.json');
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, string>;
    // Pretend the level was trained with other conv kernels (as if the tuning cache had said so).
    const other = Object.fromEntries(Object.entries(saved).map(([k, v]) => [k, k.startsWith('conv.fwd|') ? (v.startsWith('direct') ? 'tiled:64x8' : 'direct:8x8x8') : v]));
    fs.writeFileSync(file, JSON.stringify(other));
    await runImp({ ...cfg, levels: 1 }, { run: run3, data, resume: true, progress: false, log: quiet });
    const after = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, string>;
    for (const k of Object.keys(saved).filter((x) => x.startsWith('conv.fwd|'))) expect(after[k]).toBe(other[k]);
  });

  it('one-shot and controls: one-shot matches IMP level 1 mask; controls keep per-layer counts', async () => {
    const ctx = { run, data, resume: false, progress: false, log: quiet };
    const cfg1 = { ...cfg, train: { ...cfg.train, epochs: 1 } };
    await runOneShot(cfg1, ctx, [1]);
    await runControls(cfg1, ctx, ['reinit', 'random_prune'], [2]);
    const ws = prunableWeights(createModel('meso4', { size: 32 }));
    const imp1 = await loadMasks(path.join(run, 'level_1', 'mask.safetensors'), ws);
    const os1 = await loadMasks(path.join(run, 'oneshot_global', 'level_1', 'mask.safetensors'), ws);
    for (const [k, a] of imp1) expect(Array.from(os1.get(k)!)).toEqual(Array.from(a));
    const imp2 = await loadMasks(path.join(run, 'level_2', 'mask.safetensors'), ws);
    const rnd = await loadMasks(path.join(run, 'controls', 'random_prune', 'level_2', 'mask.safetensors'), ws);
    const re = await loadMasks(path.join(run, 'controls', 'reinit', 'level_2', 'mask.safetensors'), ws);
    for (const [k, a] of imp2) {
      expect(countKept(rnd.get(k)!)).toBe(countKept(a));
      expect(Array.from(re.get(k)!)).toEqual(Array.from(a));
    }
    const reStart = await tensorsOf(path.join(run, 'controls', 'reinit', 'level_2', 'start.safetensors'));
    const init = await tensorsOf(path.join(run, 'level_0', 'init.safetensors'));
    expect(Buffer.from(reStart.get('conv1.weight')!.data.buffer).equals(Buffer.from(init.get('conv1.weight')!.data.buffer))).toBe(false);
  });

  it('transfer: the ticket evaluated on and retrained on another dataset, next to dense; re-run is a no-op', async () => {
    const target = await openDataset('synthetic:train=48,val=16,test=16,difficulty=0.2,seed=9', { size: cfg.size, seed: 0 });
    const out = path.join(run, 'transfer-test');
    const o = { source: run, out, data: target, levels: [1], oneshot: false, resume: false, progress: false, log: quiet };
    const rows = await runTransfer({ ...cfg, train: { ...cfg.train, epochs: 1 } }, o);
    expect(rows.map((r) => [r.method, r.level])).toEqual([
      ['dense', 0],
      ['imp-global', 1],
    ]);
    for (const r of rows) {
      expect(r.evaluated?.n).toBe(16);
      expect(r.retrained?.n).toBe(16);
    }
    expect(rows[1].sparsity).toBeCloseTo(0.2, 3);
    for (const f of ['transfer.csv', 'transfer.json', 'dense/evaluated.json', 'imp-global_level_1/evaluated.json', 'imp-global_level_1/result.json']) {
      expect(fs.existsSync(path.join(out, f)), f).toBe(true);
    }
    // The retrained ticket keeps the source mask: its pruned weights are exactly zero.
    const ws = prunableWeights(createModel('meso4', { size: 32 }));
    const masks = await loadMasks(path.join(run, 'level_1', 'mask.safetensors'), ws);
    const fin = await tensorsOf(path.join(out, 'imp-global_level_1', 'final.safetensors'));
    for (const [key, m] of masks) m.forEach((v, i) => v || expect(Object.is(fin.get(key)!.data[i], 0)).toBe(true));
    const f = path.join(out, 'imp-global_level_1', 'final.safetensors');
    const before = fs.statSync(f).mtimeMs;
    const again = await runTransfer({ ...cfg, train: { ...cfg.train, epochs: 1 } }, { ...o, resume: true });
    expect(again).toEqual(rows);
    expect(fs.statSync(f).mtimeMs).toBe(before);
  });

  it('late rewinding (step:2) starts later levels from theta_2', async () => {
    const run3 = tmp('c');
    await runImp({ ...cfg, levels: 1, rewind: 'step:2', train: { ...cfg.train, epochs: 1 } }, { run: run3, data, resume: false, progress: false, log: quiet });
    const rw = await tensorsOf(path.join(run3, 'level_0', 'rewind.safetensors'));
    const init = await tensorsOf(path.join(run3, 'level_0', 'init.safetensors'));
    const start = await tensorsOf(path.join(run3, 'level_1', 'start.safetensors'));
    for (const [key, t] of rw) expect(Buffer.from(start.get(key)!.data.buffer).equals(Buffer.from(t.data.buffer)), key).toBe(true);
    expect(Buffer.from(rw.get('conv1.weight')!.data.buffer).equals(Buffer.from(init.get('conv1.weight')!.data.buffer))).toBe(false);
  });
});

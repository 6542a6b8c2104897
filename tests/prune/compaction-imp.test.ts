// Compaction inside IMP levels (prune/level.ts): a `filter` run's pruned levels train the compacted
// network, record the choice in kernels.json, keep full shapes and PyTorch names in every file, pass
// `ticketlab check`, resume bit-identically after a kill, and end where the masked network ends
// (within float32 rounding grown over a few steps).
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDataset, type DatasetSplits } from '../../src/data/datasets.js';
import { runImp } from '../../src/prune/imp.js';
import { tinyImpConfig } from './tiny-imp.js';
import { Interrupted } from '../../src/train/trainer.js';
import { readF32Tensors } from '../../src/nn/checkpoint.js';
import { createModel } from '../../src/nn/models/index.js';
import { checkRun, formatRunCheck } from '../../src/prune/check.js';
import { setKernelOverride } from '../../src/tensor/plan.js';
import { runLevel } from '../../src/prune/level.js';
import { prunableWeights, type HostMasks } from '../../src/prune/masks.js';
import { Rng } from '../../src/data/random.js';

const cfg = tinyImpConfig({ data: 'synthetic:train=48,val=16,test=16', train: { epochs: 2, seed: 5 }, levels: 2, rate: 0.4, granularity: 'filter' });

let data: DatasetSplits;
const tmp = (name: string) => fs.mkdtempSync(path.join(os.tmpdir(), `compact-${name}-`));
const tensorsOf = async (file: string) => (await readF32Tensors(file)).tensors;

async function imp(run: string, o: { signal?: { stop: boolean }; log?: (m: string) => void; resume?: boolean } = {}): Promise<void> {
  fs.writeFileSync(path.join(run, 'config.json'), JSON.stringify({ command: 'imp', ...cfg }));
  await runImp(cfg, { run, data, resume: o.resume ?? false, progress: false, signal: o.signal, log: o.log ?? (() => undefined) });
}

beforeAll(async () => {
  data = await openDataset(cfg.data, { size: cfg.size, seed: 0 });
});

describe('compaction in IMP levels', () => {
  let run: string;
  const lines: string[] = [];
  beforeAll(async () => {
    run = tmp('a');
    await imp(run, { log: (m) => void lines.push(m) });
  });

  it('pruned levels compact, record the choice, keep full files and pass check', async () => {
    expect(lines.some((l) => l.includes('compaction removes'))).toBe(true);
    const rec = JSON.parse(fs.readFileSync(path.join(run, 'level_2', 'kernels.json'), 'utf8')) as Record<string, string>;
    const keys = Object.keys(rec).filter((k) => k.startsWith('compaction|'));
    expect(keys.length).toBe(1);
    expect(rec[keys[0]]).toBe('compacted');
    const dense = JSON.parse(fs.readFileSync(path.join(run, 'level_0', 'kernels.json'), 'utf8')) as Record<string, string>;
    expect(Object.keys(dense).some((k) => k.startsWith('compaction|'))).toBe(false);
    const want = createModel('meso4', { size: cfg.size }).stateDict();
    for (const f of ['final', 'best', 'start']) {
      const t = await tensorsOf(path.join(run, 'level_2', `${f}.safetensors`));
      for (const [k, w] of want) expect(t.get(k)?.shape, `${f} ${k}`).toEqual(w.shape);
    }
    const r = await checkRun(run);
    expect(r.ok, formatRunCheck(r)).toBe(true);
  }, 240_000);

  it('a run killed inside a compacted level resumes to bit-identical files', async () => {
    const run2 = tmp('b');
    const signal = { stop: false };
    let after = -1;
    const log = (m: string) => {
      if (m.includes('compaction removes') && after < 0) after = 0;
      else if (after >= 0 && ++after === 1) signal.stop = true;
    };
    await expect(imp(run2, { signal, log })).rejects.toBeInstanceOf(Interrupted);
    await imp(run2, { resume: true });
    for (const k of [1, 2]) {
      const a = await tensorsOf(path.join(run, `level_${k}`, 'final.safetensors'));
      const b = await tensorsOf(path.join(run2, `level_${k}`, 'final.safetensors'));
      for (const [key, t] of a) expect(Buffer.from(b.get(key)!.data.buffer).equals(Buffer.from(t.data.buffer)), `level ${k} ${key}`).toBe(true);
    }
  }, 240_000);

  it("the masked network ('compaction:masked') ends within float32 rounding of the compacted one", async () => {
    const run3 = tmp('c');
    setKernelOverride('compaction:masked');
    try {
      await imp(run3);
    } finally {
      setKernelOverride(null);
    }
    const rec = JSON.parse(fs.readFileSync(path.join(run3, 'level_2', 'kernels.json'), 'utf8')) as Record<string, string>;
    expect(Object.entries(rec).find(([k]) => k.startsWith('compaction|'))?.[1]).toBe('masked');
    const a = await tensorsOf(path.join(run, 'level_2', 'final.safetensors'));
    const b = await tensorsOf(path.join(run3, 'level_2', 'final.safetensors'));
    for (const [key, t] of a) {
      const u = b.get(key)!.data;
      const scale = Math.max(1e-3, ...Array.from(t.data, Math.abs));
      for (let i = 0; i < t.data.length; i++) expect(Math.abs(u[i] - t.data[i]), `${key}[${i}]`).toBeLessThan(1e-3 * scale);
    }
  }, 240_000);

  it('a weight-granularity level whose masks kill filters compacts them (constants carried), and its compacted layers get no sparse kernels', async () => {
    const dir = tmp('d');
    const model = createModel('meso4', { size: cfg.size, seed: 3 });
    const ws = prunableWeights(model);
    const rng = new Rng(9);
    const masks: HostMasks = new Map();
    for (const w of ws) {
      const per = w.size / w.shape[0];
      // conv2's filters 0-3 die (their bias and batch-norm channel still learn); elsewhere half the weights go.
      masks.set(w.key, Uint8Array.from({ length: w.size }, (_, i) => (w.key === 'conv2.weight' && Math.floor(i / per) < 4 ? 0 : rng.float() < 0.5 ? 1 : 0)));
    }
    const lines: string[] = [];
    await runLevel({ dir, model, weights: ws, masks, startFrom: null, data, settings: cfg.train, resume: false, progress: false, log: (m) => void lines.push(m), label: 'weight level', kernels: 'sparse', granularity: 'weight' });
    expect(lines.find((l) => l.includes('compaction removes')), lines.join('\n')).toMatch(/conv2 4\/8.*4 dead filters' constant outputs carried/);
    const plan = JSON.parse(fs.readFileSync(path.join(dir, 'sparse-kernels.json'), 'utf8')) as { layers: { layer: string }[] };
    // conv2 (its kept filters) and conv3 (its kept input channels) run dense on the smaller problem.
    const planned = plan.layers.map((l) => l.layer);
    expect(planned).toEqual(expect.arrayContaining(['conv1', 'conv4']));
    expect(planned.filter((l) => l === 'conv2' || l === 'conv3')).toEqual([]);
    const rec = JSON.parse(fs.readFileSync(path.join(dir, 'kernels.json'), 'utf8')) as Record<string, string>;
    expect(Object.entries(rec).find(([k]) => k.startsWith('compaction|'))?.[1]).toBe('compacted');
    // Full shapes under PyTorch names; pruned weights exactly +0; the dead filters' batch-norm channels trained on.
    const fin = await tensorsOf(path.join(dir, 'final.safetensors'));
    for (const w of ws) {
      const t = fin.get(w.key)!;
      expect(t.shape, w.key).toEqual(w.shape);
      const m = masks.get(w.key)!;
      for (let i = 0; i < m.length; i++) if (!m[i]) expect(Object.is(t.data[i], 0), `${w.key}[${i}]`).toBe(true);
    }
    expect(Array.from(fin.get('bn2.bias')!.data.slice(0, 4)).some((v) => v !== 0)).toBe(true);
  }, 240_000);
});

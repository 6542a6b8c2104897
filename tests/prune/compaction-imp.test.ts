// Compaction inside IMP levels (prune/level.ts): a `filter` run's pruned levels train the compacted
// network, record the choice in kernels.json, keep full shapes and PyTorch names in every file, pass
// `ticketlab check`, resume bit-identically after a kill, and end where the masked network ends
// (within float32 rounding grown over a few steps).
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDataset, type DatasetSplits } from '../../src/data/datasets.js';
import { runImp, type ImpConfig } from '../../src/prune/imp.js';
import { Interrupted } from '../../src/train/trainer.js';
import { readF32Tensors } from '../../src/nn/checkpoint.js';
import { createModel } from '../../src/nn/models/index.js';
import { checkRun, formatRunCheck } from '../../src/prune/check.js';
import { setKernelOverride } from '../../src/tensor/plan.js';

const cfg: ImpConfig = {
  model: 'meso4',
  data: 'synthetic:train=48,val=16,test=16',
  size: 32,
  train: { epochs: 2, batch: 16, lr: 1e-3, optimizer: 'adam', momentum: 0.9, weightDecay: 0, schedule: 'constant', warmupSteps: 0, patience: 0, seed: 5, flip: true },
  levels: 2,
  rate: 0.4,
  sparsities: null,
  scope: 'global',
  rewind: 'init',
  pruneLast: false,
  granularity: 'filter',
};

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
});

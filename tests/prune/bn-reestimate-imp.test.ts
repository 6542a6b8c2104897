// --bn-reestimate wired into levels: a pruned level's saved running statistics are exactly what
// re-estimation computes from its saved weights (it ran before the readback of the best epoch), the
// dense level's are not touched, and resume stays bit-identical.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDataset } from '../../src/data/datasets.js';
import { runImp } from '../../src/prune/imp.js';
import { tinyImpConfig } from './tiny-imp.js';
import { readF32Tensors, loadModel } from '../../src/nn/checkpoint.js';
import { createModel } from '../../src/nn/models/index.js';
import { reestimateBatchNorm, reestimationBatches } from '../../src/train/bn-reestimate.js';
import { runTransfer } from '../../src/prune/transfer.js';

const cfg = tinyImpConfig({ data: 'synthetic:train=48,val=16,test=16', train: { epochs: 2, seed: 2 }, rate: 0.5, bnReestimate: 2 });

describe('--bn-reestimate in IMP levels', () => {
  it("a pruned level saves re-estimated statistics; the dense level's are its training ones", async () => {
    const data = await openDataset(cfg.data, { size: cfg.size, seed: 0 });
    const run = fs.mkdtempSync(path.join(os.tmpdir(), 'bnre-'));
    await runImp(cfg, { run, data, resume: false, progress: false, log: () => undefined });
    const model = createModel('meso4', { size: 32 });
    for (const [level, reestimated] of [[1, true], [0, false]] as const) {
      const file = path.join(run, `level_${level}`, 'final.safetensors');
      const saved = (await readF32Tensors(file)).tensors;
      await loadModel(file, model);
      await reestimateBatchNorm(model, reestimationBatches(data.train, cfg.train.batch, cfg.train.seed), 2);
      const now = model.stateDict();
      let same = true;
      for (const key of ['bn1.running_mean', 'bn2.running_var', 'bn4.running_mean']) {
        const a = (await now.get(key)!.toArray()) as Float32Array;
        same &&= Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(saved.get(key)!.data.buffer, saved.get(key)!.data.byteOffset, saved.get(key)!.data.byteLength));
      }
      expect(same, `level ${level}`).toBe(reestimated);
    }
    model.dispose();
    // Transfer: the A-trained tickets are evaluated on B after re-estimation on B's training split.
    const target = await openDataset('synthetic:train=32,val=16,test=16,difficulty=0.2,seed=9', { size: cfg.size, seed: 0 });
    const o = (out: string) => ({ source: run, out: path.join(run, out), data: target, levels: [1], oneshot: false, resume: false, progress: false, log: () => undefined });
    const one = { ...cfg, train: { ...cfg.train, epochs: 1 } };
    const withBn = await runTransfer(one, o('transfer-bn'));
    const without = await runTransfer({ ...one, bnReestimate: undefined }, o('transfer-plain'));
    for (const i of [0, 1]) expect(withBn[i].evaluated!.loss).not.toBe(without[i].evaluated!.loss);
  });
});

// Structured IMP end to end on a tiny synthetic set: filter and block:8 runs whose masks `ticketlab
// check` finds structured and on target, filter companions (bias, batch-norm channel) exactly +0 in
// the saved weights, the random control at the same granularity, and the config round trip.
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDataset, type DatasetSplits } from '../../src/data/datasets.js';
import { runControls, runImp, runOneShot, type ImpConfig } from '../../src/prune/imp.js';
import { tinyImpConfig } from './tiny-imp.js';
import { readF32Tensors } from '../../src/nn/checkpoint.js';
import { loadMasks, prunableWeights, saveMasks } from '../../src/prune/masks.js';
import { createModel } from '../../src/nn/models/index.js';
import { checkRun, formatRunCheck } from '../../src/prune/check.js';
import { batchNormAfter, deadOutputs, filterCompanions } from '../../src/prune/filter-companions.js';
import { parseImpConfig, readImpConfig } from '../../src/cli/imp.js';
import { saveSafetensors, type HostTensor } from '../../src/io/safetensors.js';

const base = tinyImpConfig({ train: { seed: 4 }, levels: 2, rate: 0.3 });

let data: DatasetSplits;
const quiet = () => undefined;
const tmp = (name: string) => fs.mkdtempSync(path.join(os.tmpdir(), `gran-${name}-`));

beforeAll(async () => {
  data = await openDataset(base.data, { size: base.size, seed: 0 });
});

async function structuredRun(cfg: ImpConfig, name: string): Promise<string> {
  const run = tmp(name);
  fs.writeFileSync(path.join(run, 'config.json'), JSON.stringify({ command: 'imp', ...cfg }));
  const ctx = { run, data, resume: false, progress: false, log: quiet };
  await runImp(cfg, ctx);
  await runOneShot(cfg, ctx, [2]);
  await runControls(cfg, ctx, ['random_prune'], [2]);
  return run;
}

describe('structured IMP', () => {
  it('filter: check passes (structure, targets within half a filter, control counts); dead filters take their bias and BN channel to +0', async () => {
    const cfg: ImpConfig = { ...base, granularity: 'filter' };
    const run = await structuredRun(cfg, 'filter');
    const r = await checkRun(run);
    expect(r.ok, formatRunCheck(r)).toBe(true);
    for (const id of ['structure', 'target', 'random-prune', 'zeros'] as const) expect(r.results.find((x) => x.id === id)!.status, id).toBe('pass');
    const model = createModel('meso4', { size: 32 });
    const ws = prunableWeights(model);
    const masks = await loadMasks(path.join(run, 'level_2', 'mask.safetensors'), ws);
    const comp = filterCompanions(model, ws, masks);
    expect(comp.size).toBeGreaterThan(0);
    const bns = batchNormAfter(model);
    expect(bns.get('conv1.weight')?.name).toBe('bn1');
    const final = (await readF32Tensors(path.join(run, 'level_2', 'final.safetensors'))).tensors;
    let dead = 0;
    for (const w of ws) {
      const d = deadOutputs(masks.get(w.key)!, w.shape[0]);
      const layer = w.key.slice(0, -'.weight'.length);
      const bn = bns.get(w.key)?.name;
      d.forEach((isDead, o) => {
        if (!isDead) return;
        dead++;
        expect(Object.is(final.get(`${layer}.bias`)!.data[o], 0), `${layer}.bias[${o}]`).toBe(true);
        if (bn) for (const p of ['weight', 'bias']) expect(Object.is(final.get(`${bn}.${p}`)!.data[o], 0), `${bn}.${p}[${o}]`).toBe(true);
      });
    }
    expect(dead).toBeGreaterThan(0);
    // Kept filters' BN channels trained on (not frozen).
    const start = (await readF32Tensors(path.join(run, 'level_2', 'start.safetensors'))).tensors;
    const keptBn = deadOutputs(masks.get('conv4.weight')!, 16).findIndex((x) => !x);
    expect(final.get('bn4.weight')!.data[keptBn]).not.toBe(start.get('bn4.weight')!.data[keptBn]);
    // The level records them, and check holds the files to the record.
    const sp = JSON.parse(fs.readFileSync(path.join(run, 'level_2', 'sparsity.json'), 'utf8')) as { companions: { of: string; params: string[]; channels: number[] }[] };
    const c1 = sp.companions.find((r) => r.of.startsWith('conv'))!;
    const layer = c1.of.slice(0, -'.weight'.length);
    expect(c1.params).toEqual([`${layer}.bias`, `${layer.replace('conv', 'bn')}.weight`, `${layer.replace('conv', 'bn')}.bias`]);
    const shape = ws.find((w) => w.key === c1.of)!.shape;
    expect(c1.channels).toEqual(deadOutputs(masks.get(c1.of)!, shape[0]).flatMap((d, o) => (d ? [o] : [])));
    const beta = c1.params[2];
    const record: Record<string, HostTensor> = {};
    for (const [k, t] of final) record[k] = { dtype: 'F32', shape: t.shape, data: k === beta ? t.data.map((v, i) => (i === c1.channels[0] ? 0.25 : v)) : t.data };
    await saveSafetensors(path.join(run, 'level_2', 'final.safetensors'), record);
    const bad = await checkRun(run);
    expect(formatRunCheck(bad)).toContain(`level_2/final.safetensors: ${beta}[${c1.channels[0]}] = 0.25 but goes with dead filter ${c1.channels[0]} of ${c1.of} (must be exactly +0)`);
    model.dispose();
  });

  it('block:8: check passes; a mask with one block broken fails naming the layer and the block', async () => {
    const cfg: ImpConfig = { ...base, levels: 1, granularity: 'block:8' };
    const run = tmp('block8');
    fs.writeFileSync(path.join(run, 'config.json'), JSON.stringify({ command: 'imp', ...cfg }));
    await runImp(cfg, { run, data, resume: false, progress: false, log: quiet });
    const ok = await checkRun(run);
    expect(ok.ok, formatRunCheck(ok)).toBe(true);
    const model = createModel('meso4', { size: 32 });
    const ws = prunableWeights(model);
    const file = path.join(run, 'level_1', 'mask.safetensors');
    const masks = await loadMasks(file, ws);
    const m = masks.get('conv3.weight')!;
    const i = m.indexOf(1);
    m[i] = 0;
    await saveMasks(file, ws, masks);
    const bad = await checkRun(run);
    const s = bad.results.find((x) => x.id === 'structure')!;
    expect(s.status).toBe('fail');
    expect(formatRunCheck(bad)).toMatch(/FAIL {2}masks have the run's granularity .* level_1\/mask\.safetensors: conv3\.weight_mask\[\d+\] is in block \d+ \(out \d+\.\.\d+, in \d+, ky \d, kx \d\), which keeps 7 of its 8 weights: not block:8-structured/);
    model.dispose();
  });

  it('config: --granularity is recorded only when not weight, read back from config.json, and bad values fail in one line', async () => {
    const flags = (g?: string) => ({ model: 'meso4', data: 'synthetic', batch: '16', epochs: '1', lr: '0.001', optimizer: 'adam', momentum: '0.9', 'weight-decay': '0', schedule: 'constant', warmup: '0', patience: '0', seed: '0', levels: '2', rate: '0.2', scope: 'layer', rewind: 'init', granularity: g });
    expect(parseImpConfig(flags('weight'))).not.toHaveProperty('granularity');
    expect(parseImpConfig(flags()).granularity).toBeUndefined();
    expect(parseImpConfig(flags('block:16')).granularity).toBe('block:16');
    expect(() => parseImpConfig(flags('blocks'))).toThrow(/^parseGranularity: spec 'blocks' is not one of/); // the CLI words it as --granularity (cli/errors.ts)
    const run = tmp('cfg');
    fs.writeFileSync(path.join(run, 'config.json'), JSON.stringify({ command: 'imp', ...parseImpConfig(flags('channel')) }));
    expect((await readImpConfig(run)).granularity).toBe('channel');
    // A config.json from before granularities: no key, read as weight, unchanged.
    const old = tmp('old');
    fs.writeFileSync(path.join(old, 'config.json'), JSON.stringify({ command: 'imp', ...parseImpConfig(flags('weight')) }));
    expect(await readImpConfig(old)).not.toHaveProperty('granularity');
  });
});

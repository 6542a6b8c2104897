// One-call pruning (prune/api.ts) and what fit does with a model that carries masks: pruned weights stay
// exactly 0 without a second argument, a second prune() prunes further and never revives, removeMasks
// keeps the zeros; fit on a finished folder refuses other settings in one line and returns the result
// for the same ones; fit without a folder trains and leaves nothing behind.
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDataset, type DatasetSplits } from '../../src/data/datasets.js';
import { createModel } from '../../src/nn/models/index.js';
import { fit, DEFAULT_TRAIN, type TrainSettings } from '../../src/train/trainer.js';
import { prune } from '../../src/prune/api.js';
import { attachMasks, detachMasks, onesMasks, prunableWeights } from '../../src/prune/masks.js';
import { randomMasksLike } from '../../src/prune/magnitude.js';
import { ArgumentError } from '../../src/util/errors.js';
import { cliMessage } from '../../src/cli/errors.js';

const SETTINGS: TrainSettings = { ...DEFAULT_TRAIN, epochs: 1, batch: 16, lr: 1e-2, patience: 0 };
let data: DatasetSplits;
beforeAll(async () => {
  data = await openDataset('synthetic:train=32,val=16,test=16', { size: 32 });
});

/** Host copies of the prunable weights the handle names. */
async function weightsOf(model: ReturnType<typeof createModel>, keys: readonly string[]): Promise<Map<string, Float32Array>> {
  const sd = model.stateDict();
  return new Map(await Promise.all(keys.map(async (k) => [k, (await sd.get(k)!.toArray()) as Float32Array] as const)));
}

function revived(masks: ReadonlyMap<string, Uint8Array>, w: ReadonlyMap<string, Float32Array>): number {
  let n = 0;
  for (const [k, m] of masks) for (let i = 0; i < m.length; i++) if (m[i] === 0 && !Object.is(w.get(k)![i], 0)) n++;
  return n;
}

describe('prune(model, { amount, scope, granularity })', () => {
  it('zeroes and masks; fit keeps the pruned weights at exactly +0 with no masks argument; a second round prunes further; removeMasks keeps the zeros', async () => {
    const model = createModel('meso4', { size: 32, seed: 1 });
    const p = await prune(model, { amount: 0.5 });
    const keys = p.weights.map((w) => w.key);
    const pruned = [...p.masks.values()].reduce((s, m) => s + m.filter((v) => v === 0).length, 0);
    expect(pruned).toBe(p.report.pruned);
    expect(p.report.pruned).toBeGreaterThan(1000);
    expect(revived(p.masks, await weightsOf(model, keys))).toBe(0);
    // In memory: no folder given, and none is left behind.
    const before = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('ticketlab-fit-')).length;
    const r = await fit({ model, train: data.train, val: data.val, settings: SETTINGS, log: () => {} });
    expect(r.epochs).toBe(1);
    expect(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('ticketlab-fit-')).length).toBe(before);
    expect(revived(p.masks, await weightsOf(model, keys))).toBe(0);
    // Round two: half of what is left; everything pruned before stays pruned.
    const p2 = await prune(model, { amount: 0.5, scope: 'layer' });
    for (const [k, m] of p.masks) for (let i = 0; i < m.length; i++) if (m[i] === 0) expect(p2.masks.get(k)![i]).toBe(0);
    expect(p2.report.pruned).toBeGreaterThan(p.report.pruned);
    await fit({ model, train: data.train, val: data.val, settings: SETTINGS, log: () => {} });
    p2.removeMasks();
    expect(p2.weights.every((w) => w.layer.mask === null)).toBe(true);
    expect(revived(p2.masks, await weightsOf(model, keys))).toBe(0);
    model.dispose();
  }, 240_000);

  it('fit zeroes the weights under masks attached by hand (attachMasks, weights left nonzero) without a masks argument', async () => {
    const model = createModel('meso4', { size: 32, seed: 4 });
    const ws = prunableWeights(model);
    const masks = randomMasksLike(onesMasks(ws), 7);
    for (const m of masks.values()) for (let i = 0; i < m.length; i += 2) m[i] = 0;
    attachMasks(ws, masks);
    const keys = ws.map((w) => w.key);
    expect(revived(masks, await weightsOf(model, keys))).toBeGreaterThan(1000);
    await fit({ model, train: data.train, val: data.val, settings: SETTINGS, log: () => {} });
    expect(revived(masks, await weightsOf(model, keys))).toBe(0);
    detachMasks(ws);
    model.dispose();
  }, 240_000);

  it('refuses bad options naming the argument', async () => {
    const model = createModel('meso4', { size: 32, seed: 1 });
    await expect(prune(model, { amount: 1.5 })).rejects.toThrow(/^prune: options\.amount 1\.5 must be a number in \[0, 1\)$/);
    await expect(prune(model, { amount: 0.2, scope: 'local' as 'layer' })).rejects.toThrow(ArgumentError);
    await expect(prune(model, { amount: 0.2, granularity: 'block:3' as 'block:4' })).rejects.toThrow(/^prune: options\.granularity 'block:3' is not one of/);
    expect(model.namedModules()).toBeTruthy();
    model.dispose();
  });
});

describe('prune() at a structured granularity', () => {
  it("'filter' prunes whole filters (each output row all kept or all pruned), zeroes them and counts in weights", async () => {
    const model = createModel('meso4', { size: 32, seed: 5 });
    const p = await prune(model, { amount: 0.5, granularity: 'filter', scope: 'layer' });
    let prunedFilters = 0;
    for (const w of p.weights) {
      const m = p.masks.get(w.key)!;
      const row = m.length / w.shape[0];
      const data = (await model.stateDict().get(w.key)!.toArray()) as Float32Array;
      for (let o = 0; o < w.shape[0]; o++) {
        const unit = m.subarray(o * row, (o + 1) * row);
        expect(unit.every((v) => v === unit[0]), `${w.key} filter ${o}`).toBe(true);
        if (unit[0] === 0) {
          prunedFilters++;
          expect(data.subarray(o * row, (o + 1) * row).every((v) => v === 0)).toBe(true);
        }
      }
    }
    expect(prunedFilters).toBeGreaterThan(0);
    // Per layer, half of the weights within half a filter.
    for (const w of p.weights) {
      const m = p.masks.get(w.key)!;
      const kept = m.reduce((a, v) => a + v, 0);
      expect(Math.abs(kept - m.length / 2)).toBeLessThanOrEqual(m.length / w.shape[0] / 2);
    }
    p.removeMasks();
    model.dispose();
  }, 120_000);
});

describe('fit on a folder that holds a finished run', () => {
  it('returns the result for the same settings and refuses other settings in one line', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fit-finished-'));
    const model = createModel('meso4', { size: 32, seed: 2 });
    const first = await fit({ model, train: data.train, val: data.val, settings: SETTINGS, dir, log: () => {} });
    const again = await fit({ model, train: data.train, val: data.val, settings: SETTINGS, dir, log: () => {} });
    expect(again).toEqual(first);
    const err = await fit({ model, train: data.train, val: data.val, settings: { ...SETTINGS, epochs: 3, lr: 0.5 }, dir, log: () => {} }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ArgumentError);
    expect((err as Error).message).toBe(`fit: dir ${dir} holds a finished run with other settings (epochs 1 there, 3 here; lr 0.01 there, 0.5 here); choose another folder or remove it`);
    expect(cliMessage(err)).toMatch(/^--out .* holds a finished run with other settings/);
    model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }, 240_000);
});

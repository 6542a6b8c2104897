// Crash safety of the training loop (issue 14): a run interrupted anywhere, in the first epoch or a later
// one, resumes to the same bytes as an uninterrupted run (the best validation loss starts at Infinity and
// must come back as Infinity); a checkpoint's loop state is validated, not trusted; a diverging run stops
// with a one-line error naming the step and the tensor, and keeps its last good checkpoint.
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDataset, type DatasetSplits } from '../../src/data/datasets.js';
import { createModel } from '../../src/nn/models/index.js';
import { DEFAULT_TRAIN, DivergedError, Interrupted, evaluate, fit, parseLoopState, type TrainSettings } from '../../src/train/trainer.js';
import { loadSafetensors, saveSafetensors } from '../../src/io/safetensors.js';
import { parseExact, stringifyExact } from '../../src/util/exact-json.js';
import { RUN_FILES } from '../../src/io/run-paths.js';

const settings: TrainSettings = { ...DEFAULT_TRAIN, epochs: 2, batch: 16, lr: 1e-3, patience: 1, seed: 5 };
const quiet = () => undefined;
const tmp = (name: string) => fs.mkdtempSync(path.join(os.tmpdir(), `resume-${name}-`));
let data: DatasetSplits;

beforeAll(async () => {
  data = await openDataset('synthetic:train=48,val=16,test=16', { size: 32, seed: 0 });
});

async function train(dir: string, o: { stopAt?: number; resume?: boolean; lr?: number } = {}) {
  const model = createModel('meso4', { size: 32, seed: 5 });
  const signal = { stop: false };
  try {
    return await fit({
      model,
      train: data.train,
      val: data.val,
      test: data.test,
      settings: { ...settings, lr: o.lr ?? settings.lr },
      dir,
      resume: o.resume,
      signal,
      captures: o.stopAt ? [{ kind: 'step', at: o.stopAt, capture: async () => void (signal.stop = true) }] : [],
      log: quiet,
    });
  } finally {
    model.dispose();
  }
}

const bytes = (f: string) => fs.readFileSync(f);
/** metrics.jsonl without its timings. */
const metrics = (dir: string) =>
  fs.readFileSync(path.join(dir, RUN_FILES.metrics), 'utf8').trim().split('\n').map((l) => {
    const { seconds: _s, imagesPerSecond: _i, ...r } = JSON.parse(l);
    return r;
  });
const result = (dir: string) => {
  const r = JSON.parse(fs.readFileSync(path.join(dir, RUN_FILES.result), 'utf8'));
  delete r.seconds;
  delete r.imagesPerSecond;
  return r;
};

describe('exact JSON', () => {
  it('round-trips non-finite numbers anywhere in a value', () => {
    const v = { a: Infinity, b: [-Infinity, NaN, 1.5], c: { d: null, e: 'Infinity' } };
    const back = parseExact(stringifyExact(v)) as typeof v;
    expect(back.a).toBe(Infinity);
    expect(back.b[0]).toBe(-Infinity);
    expect(Number.isNaN(back.b[1])).toBe(true);
    expect(back.c).toEqual({ d: null, e: 'Infinity' });
  });
});

describe('resume after an interrupt', () => {
  let ref: string;
  beforeAll(async () => {
    ref = tmp('ref');
    await train(ref);
  });

  // 3 steps per epoch: steps 1 and 2 are inside epoch 1 (before any validation: bestValLoss = Infinity),
  // 3 ends epoch 1, 5 is inside epoch 2.
  for (const stopAt of [1, 2, 3, 5]) {
    it(`interrupted after step ${stopAt}, resumed == uninterrupted`, async () => {
      const dir = tmp(`s${stopAt}`);
      await expect(train(dir, { stopAt })).rejects.toBeInstanceOf(Interrupted);
      await train(dir, { resume: true });
      for (const f of [RUN_FILES.final, RUN_FILES.best]) expect(bytes(path.join(dir, f)).equals(bytes(path.join(ref, f))), f).toBe(true);
      expect(result(dir)).toEqual(result(ref));
      // The epoch's train metrics too: an interrupt inside an epoch once left its first batches out of
      // them (n 32 of 48 after a stop at step 1).
      expect(metrics(dir)).toEqual(metrics(ref));
    });
  }

  it('a kill between an epoch\'s log line and its checkpoint logs that epoch once', async () => {
    const dir = tmp('log');
    await expect(train(dir, { stopAt: 5 })).rejects.toBeInstanceOf(Interrupted);
    // The checkpoint is inside epoch 2; a line for epoch 2 as a killed run would have left it.
    const log = path.join(dir, RUN_FILES.metrics);
    const first = JSON.parse(fs.readFileSync(log, 'utf8').split('\n')[0]);
    fs.appendFileSync(log, JSON.stringify({ ...first, epoch: 1 }) + '\n');
    await train(dir, { resume: true });
    const epochs = (d: string) => fs.readFileSync(path.join(d, RUN_FILES.metrics), 'utf8').trim().split('\n').map((l) => JSON.parse(l).epoch);
    expect(epochs(dir)).toEqual(epochs(ref));
  });
});

describe('checkpoint state is validated', () => {
  const lim = { epochs: 2, stepsPerEpoch: 3, dropouts: 0 };
  const good = { epoch: 1, batch: 2, step: 5, bestValLoss: 0.5, bestEpoch: 0, badEpochs: 0, dropoutDrawn: [], seconds: 1, images: 80, optimizerStep: 5 };
  it('accepts a consistent state and reads the old null best loss as Infinity', () => {
    expect(parseLoopState(stringifyExact(good), 'c', lim).step).toBe(5);
    const old = { ...good, epoch: 0, step: 2, bestEpoch: -1, bestValLoss: null, optimizerStep: 2 };
    expect(parseLoopState(JSON.stringify(old), 'c', lim).bestValLoss).toBe(Infinity);
  });
  for (const [field, value] of [
    ['epoch', -5],
    ['epoch', 3],
    ['epoch', 1.5],
    ['batch', 4],
    ['step', 99],
    ['bestEpoch', 1],
    ['optimizerStep', 4],
    ['bestValLoss', NaN],
    ['dropoutDrawn', [1]],
    ['seconds', -1],
  ] as const) {
    it(`refuses ${field} = ${JSON.stringify(value)} with a one-line error naming the field`, () => {
      const msg = (() => {
        try {
          parseLoopState(stringifyExact({ ...good, [field]: value }), 'dir/checkpoint.safetensors', lim);
          return 'accepted';
        } catch (e) {
          return (e as Error).message;
        }
      })();
      expect(msg).toContain('dir/checkpoint.safetensors');
      expect(msg).toContain(`'${field}'`);
      expect(msg).not.toContain('\n');
    });
  }
  it('a file where the level folder should be is a one-line error naming it', async () => {
    const dir = path.join(tmp('levelfile'), 'level_0');
    fs.writeFileSync(dir, 'x');
    await expect(train(dir)).rejects.toThrow(`${dir} is a file, not a folder`);
    expect(fs.readFileSync(dir, 'utf8')).toBe('x');
  });

  it('a doctored epoch in a real checkpoint fails the resume and changes no file', async () => {
    const dir = tmp('doctored');
    await expect(train(dir, { stopAt: 4 })).rejects.toBeInstanceOf(Interrupted);
    const ck = path.join(dir, RUN_FILES.checkpoint);
    const { tensors, metadata } = await loadSafetensors(ck);
    const st = parseExact(metadata.state) as Record<string, unknown>;
    await saveSafetensors(ck, tensors, { ...metadata, state: stringifyExact({ ...st, epoch: -5 }) });
    const before = new Map(fs.readdirSync(dir).map((f) => [f, bytes(path.join(dir, f))]));
    await expect(train(dir, { resume: true })).rejects.toThrow(/checkpoint field 'epoch' is -5/);
    expect(new Map(fs.readdirSync(dir).map((f) => [f, bytes(path.join(dir, f))]))).toEqual(before);
  });
});

describe('divergence', () => {
  it('an absurd learning rate stops with the step and tensor named, and never finishes', async () => {
    const dir = tmp('diverge');
    const err = await train(dir, { lr: 1e30 }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DivergedError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/diverged at step \d+/);
    expect(msg).toMatch(/tensor '[a-z0-9_.]+' has \d+ of \d+ values NaN\/Inf|logits overflowed/);
    expect(msg).not.toContain('\n');
    for (const f of [RUN_FILES.result, RUN_FILES.final, RUN_FILES.best]) expect(fs.existsSync(path.join(dir, f)), f).toBe(false);
  });

  it('evaluating weights with NaN says so instead of printing metrics', async () => {
    const model = createModel('meso4', { size: 32, seed: 5 });
    const w = model.stateDict().get('conv1.weight')!;
    const nan = new Float32Array(w.size).fill(NaN);
    const { writeTensor } = await import('../../src/tensor/io.js');
    writeTensor(w, nan);
    await expect(evaluate(model, data.test, 16)).rejects.toThrow(/'conv1.weight' has \d+ of \d+ values NaN\/Inf/);
    model.dispose();
  });
});

// `ticketlab check` on a small real run (2 IMP levels, one-shot, both controls, a real mid-level
// checkpoint) and on doctored copies of it: each corruption is caught by the right invariant, with the
// first offending file, tensor and index; the clean run and a PyTorch fixture pass.
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDataset, type DatasetSplits } from '../../src/data/datasets.js';
import { runControls, runImp, runOneShot } from '../../src/prune/imp.js';
import { tinyImpConfig } from './tiny-imp.js';
import { Interrupted } from '../../src/train/trainer.js';
import { runTransfer } from '../../src/prune/transfer.js';
import { openRun } from '../../src/train/run.js';
import { checkRun, formatRunCheck, type InvariantId, type RunCheck } from '../../src/prune/check.js';
import { loadSafetensors, saveSafetensors, type HostTensor } from '../../src/io/safetensors.js';
import { levelDir, runFile } from '../../src/io/run-paths.js';
import { checkCommand } from '../../src/cli/check.js';

const cfg = tinyImpConfig({ train: { epochs: 2, seed: 5, flip: false }, levels: 2, rate: 0.3 });
const quiet = () => undefined;
let data: DatasetSplits;
let run: string;
let interrupted: RunCheck;

const status = (r: RunCheck, id: InvariantId) => r.results.find((x) => x.id === id)!;

function copyRun(): string {
  const dst = fs.mkdtempSync(path.join(os.tmpdir(), 'check-doctored-'));
  fs.cpSync(run, dst, { recursive: true });
  return dst;
}

async function edit(file: string, f: (t: Record<string, HostTensor>) => void): Promise<void> {
  const { tensors, metadata } = await loadSafetensors(file);
  f(tensors);
  await saveSafetensors(file, tensors, metadata);
}

const f32 = (t: HostTensor) => t.data as Float32Array;
const firstIndex = (a: Float32Array, v: number) => a.findIndex((x) => x === v);

beforeAll(async () => {
  data = await openDataset(cfg.data, { size: cfg.size, seed: 0 });
  run = fs.mkdtempSync(path.join(os.tmpdir(), 'check-run-'));
  await openRun(run, { command: 'imp', ...cfg }, { resume: false });
  // Stop at level 2's first step: a real checkpoint with Adam state lands in level_2/.
  const signal = { stop: false };
  const log = (m: string) => {
    if (m.startsWith('level 2')) signal.stop = true;
  };
  await expect(runImp(cfg, { run, data, resume: false, progress: false, signal, log })).rejects.toBeInstanceOf(Interrupted);
  expect(fs.existsSync(runFile(levelDir(run, 2), 'checkpoint'))).toBe(true);
  interrupted = await checkRun(run);
  const ctx = { run, data, resume: true, progress: false, log: quiet };
  await runImp(cfg, ctx);
  const short = { ...cfg, train: { ...cfg.train, epochs: 1 } };
  await runOneShot(short, ctx, [2]);
  await runControls(short, ctx, ['reinit', 'random_prune'], [2]);
  const target = await openDataset('synthetic:train=16,val=16,test=16,difficulty=0.2,seed=9', { size: cfg.size, seed: 0 });
  await runTransfer(short, { source: run, out: path.join(run, 'transfer-b'), data: target, levels: [2], oneshot: true, resume: false, progress: false, log: quiet });
});

describe('ticketlab check on a real run', () => {
  it('an interrupted run passes, its checkpoint (weights and Adam state) included', () => {
    expect(interrupted.ok, formatRunCheck(interrupted)).toBe(true);
    expect(status(interrupted, 'zeros').checked).toBeGreaterThanOrEqual(5);
  });

  it('the finished run passes every invariant, none skipped', async () => {
    const r = await checkRun(run);
    expect(r.ok, formatRunCheck(r)).toBe(true);
    for (const x of r.results) expect(x.status, x.id).toBe('pass');
    expect(r.levels).toEqual([
      'level_0',
      'level_1',
      'level_2',
      'oneshot_global/level_2',
      'controls/random_prune/level_2',
      'controls/reinit/level_2',
      'transfer-b/dense',
      'transfer-b/imp-global_level_2',
      'transfer-b/oneshot-global_level_2',
    ]);
    expect(status(r, 'transfer').checked).toBe(2);
    expect(formatRunCheck(r)).toMatch(/all invariants hold/);
  });

  it('a non-binary mask entry: binary fails naming the file, tensor and index', async () => {
    const d = copyRun();
    await edit(runFile(levelDir(d, 1), 'mask'), (t) => (f32(t['conv2.weight_mask'])[7] = 0.5));
    const r = await checkRun(d);
    expect(r.ok).toBe(false);
    expect(status(r, 'binary').violation).toMatchObject({ file: 'level_1/mask.safetensors', tensor: 'conv2.weight_mask', index: 7 });
    expect(formatRunCheck(r)).toMatch(/FAIL {2}masks are 0\/1 +level_1\/mask\.safetensors: conv2\.weight_mask\[7\] holds 0\.5; masks are 0\/1/);
  });

  it('one flipped mask bit (kept -> pruned): sparsity.json, the target and the zeros catch it', async () => {
    const d = copyRun();
    let at = -1;
    await edit(runFile(levelDir(d, 2), 'mask'), (t) => {
      const m = f32(t['conv3.weight_mask']);
      at = firstIndex(m, 1);
      m[at] = 0;
    });
    const r = await checkRun(d);
    expect(status(r, 'binary').status).toBe('pass');
    expect(status(r, 'monotone').status).toBe('pass');
    expect(status(r, 'sparsity-json').violation).toMatchObject({ file: 'level_2/sparsity.json', tensor: 'conv3.weight' });
    expect(status(r, 'sparsity-json').violation!.message).toMatch(/kept \d+ in sparsity\.json, the mask keeps \d+/);
    expect(status(r, 'target').violation).toMatchObject({ file: 'level_2/mask.safetensors', tensor: '(all layers)' });
    expect(status(r, 'target').violation!.message).toMatch(/IMP level 2: pruning 0\.3/);
    // The trained weight at that index is not zero: final.safetensors now breaks the zeros invariant.
    expect(status(r, 'zeros').violation).toMatchObject({ file: 'level_2/final.safetensors', tensor: 'conv3.weight', index: at });
  });

  it('one non-zero pruned weight (and a -0): zeros fails at that file, tensor and index', async () => {
    const d = copyRun();
    const mask = f32((await loadSafetensors(runFile(levelDir(d, 1), 'mask'))).tensors['conv1.weight_mask']);
    const at = firstIndex(mask, 0);
    await edit(runFile(levelDir(d, 1), 'best'), (t) => (f32(t['conv1.weight'])[at] = 0.25));
    let r = await checkRun(d);
    expect(status(r, 'zeros').violation).toMatchObject({ file: 'level_1/best.safetensors', tensor: 'conv1.weight', index: at });
    expect(formatRunCheck(r)).toContain(`level_1/best.safetensors: conv1.weight[${at}] = 0.25 but is pruned (must be exactly +0)`);
    await edit(runFile(levelDir(d, 1), 'best'), (t) => (f32(t['conv1.weight'])[at] = -0));
    r = await checkRun(d);
    expect(status(r, 'zeros').violation!.message).toMatch(/= -0 but is pruned/);
  });

  it('optimizer state in a checkpoint that is not zero at a pruned entry is caught', async () => {
    const d = copyRun();
    const lvl = levelDir(d, 1);
    const mask = f32((await loadSafetensors(runFile(lvl, 'mask'))).tensors['conv4.weight_mask']);
    const at = firstIndex(mask, 0);
    const { tensors } = await loadSafetensors(runFile(lvl, 'final'));
    const state = new Float32Array(mask.length);
    state[at] = 3;
    await saveSafetensors(runFile(lvl, 'checkpoint'), { ...tensors, 'optimizer.conv4.weight.exp_avg_sq': { dtype: 'F32', shape: tensors['conv4.weight'].shape, data: state } });
    const r = await checkRun(d);
    expect(status(r, 'zeros').violation).toMatchObject({ file: 'level_1/checkpoint.safetensors', tensor: 'optimizer.conv4.weight.exp_avg_sq', index: at });
  });

  it('a grown mask (a pruned weight comes back): monotone fails at that index', async () => {
    const d = copyRun();
    const prev = f32((await loadSafetensors(runFile(levelDir(d, 1), 'mask'))).tensors['conv2.weight_mask']);
    let at = -1;
    await edit(runFile(levelDir(d, 2), 'mask'), (t) => {
      at = firstIndex(prev, 0);
      f32(t['conv2.weight_mask'])[at] = 1;
    });
    const r = await checkRun(d);
    expect(status(r, 'monotone').violation).toMatchObject({ file: 'level_2/mask.safetensors', tensor: 'conv2.weight_mask', index: at });
    expect(status(r, 'monotone').violation!.message).toMatch(/a pruned weight came back/);
    // The reinit control no longer shares the (doctored) ticket's mask.
    expect(status(r, 'reinit').violation).toMatchObject({ file: 'controls/reinit/level_2/mask.safetensors', tensor: 'conv2.weight_mask', index: at });
  });

  it("a transferred ticket whose mask is not its source's: transfer fails there", async () => {
    const d = copyRun();
    const f = path.join(d, 'transfer-b', 'oneshot-global_level_2', 'mask.safetensors');
    let at = -1;
    await edit(f, (t) => {
      const m = f32(t['conv4.weight_mask']);
      at = firstIndex(m, 0);
      m[at] = 1;
    });
    const r = await checkRun(d);
    expect(status(r, 'transfer').violation).toMatchObject({ file: 'transfer-b/oneshot-global_level_2/mask.safetensors', tensor: 'conv4.weight_mask', index: at });
    expect(status(r, 'transfer').violation!.message).toBe('is 1 here, 0 in the other mask');
  });

  it('a level whose mask is gone but whose weights are there: binary fails instead of skipping the level', async () => {
    const d = copyRun();
    fs.rmSync(runFile(levelDir(d, 1), 'mask'));
    const r = await checkRun(d);
    expect(r.ok).toBe(false);
    expect(status(r, 'binary').violation).toMatchObject({ file: 'level_1/mask.safetensors', tensor: '(file)' });
    expect(status(r, 'binary').violation!.message).toMatch(/is missing, but the level has saved weights \(start\.safetensors, final\.safetensors/);
  });

  it('a miscounted sparsity.json: sparsity-json fails naming the field, nothing else does', async () => {
    const d = copyRun();
    const f = runFile(levelDir(d, 1), 'sparsity');
    const sp = JSON.parse(fs.readFileSync(f, 'utf8')) as { kept: number };
    sp.kept += 1;
    fs.writeFileSync(f, JSON.stringify(sp));
    const r = await checkRun(d);
    expect(r.results.filter((x) => x.status === 'fail').map((x) => x.id)).toEqual(['sparsity-json']);
    expect(status(r, 'sparsity-json').violation).toMatchObject({ file: 'level_1/sparsity.json', tensor: '(all layers)' });
    expect(status(r, 'sparsity-json').violation!.message).toBe(`kept ${sp.kept} in sparsity.json, the masks keep ${sp.kept - 1}`);
  });

  it('start weights that are not the rewind point, a random control with other counts', async () => {
    const d = copyRun();
    const mask = f32((await loadSafetensors(runFile(levelDir(d, 2), 'mask'))).tensors['conv1.weight_mask']);
    const kept = firstIndex(mask, 1);
    const pruned = firstIndex(mask, 0);
    let bias = 0;
    await edit(runFile(levelDir(d, 2), 'start'), (t) => {
      f32(t['conv1.weight'])[pruned] += 1; // under the mask: allowed
      bias = f32(t['conv1.bias'])[0];
      f32(t['conv1.bias'])[0] = bias + 1; // not prunable: must equal the rewind point
    });
    let r = await checkRun(d);
    expect(status(r, 'rewind').violation).toMatchObject({ file: 'level_2/start.safetensors', tensor: 'conv1.bias', index: 0 });
    await edit(runFile(levelDir(d, 2), 'start'), (t) => {
      f32(t['conv1.bias'])[0] = bias;
      f32(t['conv1.weight'])[kept] += 1;
    });
    r = await checkRun(d);
    expect(status(r, 'rewind').violation).toMatchObject({ tensor: 'conv1.weight', index: kept });
    expect(status(r, 'rewind').violation!.message).toMatch(/the rewind point holds/);
    await edit(path.join(d, 'controls', 'random_prune', 'level_2', 'mask.safetensors'), (t) => {
      const m = f32(t['conv1.weight_mask']);
      m[firstIndex(m, 1)] = 0;
    });
    r = await checkRun(d);
    expect(status(r, 'random-prune').violation).toMatchObject({ file: 'controls/random_prune/level_2/mask.safetensors', tensor: 'conv1.weight' });
    expect(status(r, 'random-prune').violation!.message).toMatch(/IMP level 2/);
  });

  it('the command exits 1 on a violation and 0 on a clean run; a missing folder is a one-line error', async () => {
    const d = copyRun();
    await edit(runFile(levelDir(d, 1), 'mask'), (t) => (f32(t['conv1.weight_mask'])[0] = 2));
    const write = process.stdout.write.bind(process.stdout);
    let out = '';
    process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
    try {
      expect(await checkCommand.run([run])).toBe(0);
      expect(await checkCommand.run([run, d])).toBe(1);
    } finally {
      process.stdout.write = write;
    }
    expect(out).toMatch(/FAIL {2}masks are 0\/1 +level_1\/mask\.safetensors: conv1\.weight_mask\[0\] holds 2/);
    out = '';
    process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
    try {
      expect(await checkCommand.run([d, '--json'])).toBe(1);
    } finally {
      process.stdout.write = write;
    }
    const json = JSON.parse(out) as RunCheck[];
    expect(json[0].results.find((x) => x.id === 'binary')).toMatchObject({ status: 'fail', violation: { file: 'level_1/mask.safetensors', tensor: 'conv1.weight_mask', index: 0 } });
    await expect(checkCommand.run([d, '--scope', 'diagonal'])).rejects.toThrow(/--scope 'diagonal' is not global or layer/);
    await expect(checkRun(path.join(d, 'nope'))).rejects.toThrow(/nope: no such folder/);
  });
});

describe('ticketlab check on PyTorch torch.nn.utils.prune files', () => {
  const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'torch-prune');

  it('the committed fixture (3 levels of global L1 pruning at 0.2) passes, counts included', async () => {
    const r = await checkRun(fixture, { rate: 0.2, scope: 'global' });
    expect(r.kind).toBe('pytorch');
    expect(r.levels).toEqual(['level_1.safetensors', 'level_2.safetensors', 'level_3.safetensors']);
    expect(r.ok, formatRunCheck(r)).toBe(true);
    for (const id of ['binary', 'monotone', 'target'] as const) expect(status(r, id).status, id).toBe('pass');
    // torch's state dict has weight_orig (dense values by design): its weight is weight_orig * weight_mask.
    expect(status(r, 'zeros')).toMatchObject({ status: 'pass', checked: 3 });
    expect(r.ignored).toEqual([]);
  });

  it('every file is checked or ignored with the reason; prune.remove files are checked against the masks before them or --masks', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'check-torch-'));
    fs.cpSync(fixture, d, { recursive: true });
    // level_4: the state dict after prune.remove: plain weights (weight_orig * mask), no masks.
    const l3 = (await loadSafetensors(path.join(d, 'level_3.safetensors'))).tensors;
    const removed: Record<string, HostTensor> = {};
    for (const [k, t] of Object.entries(l3)) {
      if (k.endsWith('_mask')) continue;
      if (k.endsWith('_orig')) {
        const key = k.slice(0, -'_orig'.length);
        const m = f32(l3[`${key}_mask`]);
        removed[key] = { dtype: 'F32', shape: t.shape, data: f32(t).map((v, i) => v * m[i]) };
      } else removed[k] = t;
    }
    await saveSafetensors(path.join(d, 'level_4.safetensors'), removed);
    fs.writeFileSync(path.join(d, 'level_5.pt'), 'not read');
    fs.writeFileSync(path.join(d, 'notes.txt'), 'x');
    let r = await checkRun(d, { rate: 0.2 });
    expect(r.levels).toEqual(['level_1.safetensors', 'level_2.safetensors', 'level_3.safetensors', 'level_4.safetensors']);
    expect(status(r, 'zeros'), formatRunCheck(r)).toMatchObject({ status: 'pass', checked: 4 });
    expect(r.ignored.map((i) => i.file)).toEqual(['level_5.pt', 'notes.txt']);
    expect(r.ignored[0].reason).toMatch(/pickled PyTorch file, which check cannot read \(only \.safetensors\); convert it: PYTHONPATH=\S+python python3 -c "import torch, ticketlab_torch as t; t\.save_file\(torch\.load\('level_5\.pt', map_location='cpu'\), 'level_5\.safetensors'\)"/);
    expect(formatRunCheck(r)).toMatch(/4 file\(s\) checked, 2 ignored/);
    expect(formatRunCheck(r)).toMatch(/^ {2}ignored {2}notes\.txt: not a \.safetensors file$/m);
    // A pruned weight revived in the removed file fails, naming it.
    const m3 = f32(l3['fc1.weight_mask']);
    const at = firstIndex(m3, 0);
    await edit(path.join(d, 'level_4.safetensors'), (t) => (f32(t['fc1.weight'])[at] = 0.25));
    r = await checkRun(d, { rate: 0.2 });
    expect(r.ok).toBe(false);
    expect(status(r, 'zeros').violation).toMatchObject({ file: 'level_4.safetensors', tensor: 'fc1.weight', index: at });

    // Alone in its folder, the removed file is ignored (nothing checked: not ok) unless --masks names its masks.
    const lone = fs.mkdtempSync(path.join(os.tmpdir(), 'check-torch-'));
    fs.copyFileSync(path.join(d, 'level_4.safetensors'), path.join(lone, 'final.safetensors'));
    r = await checkRun(lone);
    expect(r.ok).toBe(false);
    expect(r.ignored[0]).toMatchObject({ file: 'final.safetensors', reason: expect.stringMatching(/give its masks with --masks FILE/) });
    expect(formatRunCheck(r)).toMatch(/nothing could be checked$/);
    r = await checkRun(lone, { masks: path.join(d, 'level_3.safetensors') });
    expect(status(r, 'zeros').violation).toMatchObject({ file: 'final.safetensors', tensor: 'fc1.weight', index: at });
    await expect(checkRun(lone, { masks: path.join(lone, 'final.safetensors') })).rejects.toThrow(/^checkRun: options\.masks .*final\.safetensors: holds no <layer>\.weight_mask tensors$/);
  });

  it('zeros on a genuine torch state dict: weight_orig * weight_mask must be 0 where pruned (a NaN in weight_orig is not)', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'check-torch-'));
    fs.cpSync(fixture, d, { recursive: true });
    const m = f32((await loadSafetensors(path.join(d, 'level_2.safetensors'))).tensors['conv2.weight_mask']);
    const at = firstIndex(m, 0);
    await edit(path.join(d, 'level_2.safetensors'), (t) => (f32(t['conv2.weight_orig'])[at] = Number.NaN));
    const r = await checkRun(d);
    expect(status(r, 'zeros').violation).toMatchObject({ file: 'level_2.safetensors', tensor: 'conv2.weight', index: at, message: expect.stringMatching(/= NaN but is pruned/) });
  });

  it('a grown torch mask and a wrong rate are caught', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'check-torch-'));
    fs.cpSync(fixture, d, { recursive: true });
    const prev = f32((await loadSafetensors(path.join(d, 'level_2.safetensors'))).tensors['conv1.weight_mask']);
    const at = firstIndex(prev, 0);
    await edit(path.join(d, 'level_3.safetensors'), (t) => (f32(t['conv1.weight_mask'])[at] = 1));
    // A plain weight (after prune.remove) must hold +0 where pruned.
    await edit(path.join(d, 'level_1.safetensors'), (t) => {
      const m = f32(t['fc1.weight_mask']);
      t['fc1.weight'] = { dtype: 'F32', shape: t['fc1.weight_orig'].shape, data: f32(t['fc1.weight_orig']).map((v, i) => (m[i] ? v : 0)) };
      f32(t['fc1.weight'])[firstIndex(m, 0)] = 0.5;
    });
    const r = await checkRun(d, { rate: 0.3 });
    expect(status(r, 'zeros').violation).toMatchObject({ file: 'level_1.safetensors', tensor: 'fc1.weight' });
    expect(status(r, 'monotone').violation).toMatchObject({ file: 'level_3.safetensors', tensor: 'conv1.weight_mask', index: at });
    // The first file is held to one round from the dense model too.
    expect(status(r, 'target').violation).toMatchObject({ file: 'level_1.safetensors', tensor: '(all layers)' });
  });

  it("a torch .weight after prune.remove (weight_orig * mask: -0 where weight_orig < 0) passes zeros", async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'check-torch-'));
    fs.cpSync(fixture, d, { recursive: true });
    let negZeros = 0;
    await edit(path.join(d, 'level_2.safetensors'), (t) => {
      for (const layer of ['conv1', 'conv2', 'fc1']) {
        const m = f32(t[`${layer}.weight_mask`]);
        const w = f32(t[`${layer}.weight_orig`]).map((v, i) => v * m[i]);
        negZeros += w.filter((v) => Object.is(v, -0)).length;
        t[`${layer}.weight`] = { dtype: 'F32', shape: t[`${layer}.weight_orig`].shape, data: w };
      }
    });
    expect(negZeros).toBeGreaterThan(0);
    const r = await checkRun(d, { rate: 0.2 });
    expect(status(r, 'zeros'), formatRunCheck(r)).toMatchObject({ status: 'pass', checked: 3 });
  });

  it('torch rounds the pruning count like Python (halves to even), the first file from dense', async () => {
    // 10 weights, amount 0.25: round(2.5) = 2 in Python, so level 1 keeps 8 (ticketlab would keep 7),
    // then round(8 * 0.25) = 2: level 2 keeps 6.
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'check-torch-'));
    const save = (f: string, kept: number) =>
      saveSafetensors(path.join(d, f), {
        'fc.weight_orig': { dtype: 'F32', shape: [2, 5], data: Float32Array.from({ length: 10 }, (_, i) => i - 4.5) },
        'fc.weight_mask': { dtype: 'F32', shape: [2, 5], data: Float32Array.from({ length: 10 }, (_, i) => (i < 10 - kept ? 0 : 1)) },
      });
    await save('level_1.safetensors', 8);
    await save('level_2.safetensors', 6);
    let r = await checkRun(d, { rate: 0.25 });
    expect(status(r, 'target'), formatRunCheck(r)).toMatchObject({ status: 'pass', checked: 2 });
    await save('level_1.safetensors', 7);
    r = await checkRun(d, { rate: 0.25 });
    expect(status(r, 'target').violation).toMatchObject({ file: 'level_1.safetensors', tensor: '(all layers)', message: expect.stringMatching(/keep 7 weights, .* says 8/) });
  });
});

// The PyTorch bridge shipped in python/ (ticketlab_torch.py, stdlib + torch): ticketlab weights load into
// its modules with load_state_dict(strict=True) and give our engine's logits; a ticketlab run loads with
// load_run; models pruned in PyTorch and saved with save_pruned pass `ticketlab check` and load back into
// our engine with the same logits. Needs a Python with torch (TICKETLAB_PYTHON, the PATH's python3 or
// /usr/bin/python3): skipped, saying so, where there is none.
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { torchPython } from '../../bench/util.js';
import { createModel, MODEL_NAMES, type ModelName } from '../../src/nn/models/index.js';
import { saveModel, readF32Tensors } from '../../src/nn/checkpoint.js';
import { fromArray } from '../../src/tensor/tensor.js';
import { noGrad } from '../../src/autograd/tape.js';
import { saveSafetensors } from '../../src/io/safetensors.js';
import { checkRun, formatRunCheck } from '../../src/prune/check.js';
import { openDataset } from '../../src/data/datasets.js';
import { runImp } from '../../src/prune/imp.js';
import { tinyImpConfig } from '../prune/tiny-imp.js';
import { openRun } from '../../src/train/run.js';
import { seededValues } from '../ref/arb.js';

const PYTHON_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'python');
const py = torchPython();
const why = py ? '' : ' (skipped: no Python with torch; set TICKETLAB_PYTHON to one)';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-bridge-'));
const measured: string[] = [];
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  if (measured.length) console.log(`bridge logits, worst error relative to max(1, |logit|):\n  ${measured.join('\n  ')}`);
});

/** Runs a Python snippet with the bridge importable; returns its stdout parsed as JSON. */
function python<T>(code: string): T {
  const r = spawnSync(py!, ['-c', code], { encoding: 'utf8', env: { ...process.env, PYTHONPATH: PYTHON_DIR }, timeout: 240_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as T;
}

/** Our engine's eval-mode logits for `x` [n, 3, size, size]. */
async function logits(model: ReturnType<typeof createModel>, x: Float32Array, size: number): Promise<number[]> {
  const n = x.length / (3 * size * size);
  return noGrad(async () => {
    const t = fromArray(x, [n, 3, size, size]);
    const y = model.eval().forward(t);
    const out = [...((await y.toArray()) as Float32Array)];
    t.dispose();
    y.dispose();
    return out;
  });
}

/** Worst error relative to the larger logit magnitude (at least 1). */
function relErr(a: readonly number[], b: readonly number[], what: string): number {
  expect(a.length).toBe(b.length);
  const scale = Math.max(1, ...b.map(Math.abs));
  const e = Math.max(...a.map((v, i) => Math.abs(v - b[i]) / scale));
  measured.push(`${what}: ${e.toExponential(2)}`);
  return e;
}

describe.skipIf(!py)(`the PyTorch bridge, python/ticketlab_torch.py${why}`, () => {
  it.each(MODEL_NAMES.map((m) => [m]))('%s: our weights load strictly into its module and give our logits (float64 torch vs float32 engine)', async (name: ModelName) => {
    const size = 64;
    const model = createModel(name, { size, seed: 3 });
    const x = seededValues(2 * 3 * size * size, 11);
    const ours = await logits(model, x, size);
    const wFile = path.join(tmp, `${name}.safetensors`);
    const xFile = path.join(tmp, `${name}-x.safetensors`);
    await saveModel(wFile, model);
    await saveSafetensors(xFile, { x: { dtype: 'F32', shape: [2, 3, size, size], data: x } });
    model.dispose();
    const theirs = python<number[]>(`
import json, torch, ticketlab_torch as tt
m = tt.create_model(${JSON.stringify(name)}, ${size})
w, _ = tt.load_file(${JSON.stringify(wFile)})
m.load_state_dict(w, strict=True)
x, _ = tt.load_file(${JSON.stringify(xFile)})
with torch.no_grad():
    y = m.double().eval()(x["x"].double())
print(json.dumps(y.flatten().tolist()))`);
    expect(relErr(ours, theirs, name), `${name}: ours ${ours} torch ${theirs}`).toBeLessThan(1e-4);
  }, 240_000);

  it('a ticketlab run (IMP level 1 of a trained Meso-4) loads with load_run, masks included, and gives our logits', async () => {
    const run = path.join(tmp, 'run');
    const config = tinyImpConfig({  });
    const data = await openDataset(config.data, { size: 32 });
    await openRun(run, { command: 'imp', ...config }, { resume: false });
    await runImp(config, { run, data, resume: false, progress: false, log: () => {} });
    const model = createModel('meso4', { size: 32 });
    const { tensors } = await readF32Tensors(path.join(run, 'level_1', 'final.safetensors'));
    model.loadStateDict(tensors);
    const x = seededValues(2 * 3 * 32 * 32, 5);
    const ours = await logits(model, x, 32);
    model.dispose();
    const xFile = path.join(tmp, 'run-x.safetensors');
    await saveSafetensors(xFile, { x: { dtype: 'F32', shape: [2, 3, 32, 32], data: x } });
    const r = python<{ logits: number[]; masks: number; zeros: number }>(`
import json, torch, ticketlab_torch as tt
m, masks = tt.load_run(${JSON.stringify(run)}, level=1)
x, _ = tt.load_file(${JSON.stringify(xFile)})
sd = m.state_dict()
# pruned weights are exactly zero in the level's final weights
zeros = sum(int(((sd[k] != 0) & (mk == 0)).sum()) for k, mk in masks.items())
with torch.no_grad():
    y = m.double()(x["x"].double())
print(json.dumps({"logits": y.flatten().tolist(), "masks": len(masks), "zeros": zeros}))`);
    expect(r.masks).toBe(5); // conv1-4 and fc1: the last layer is not pruned (pruneLast false)
    expect(r.zeros).toBe(0);
    expect(relErr(ours, r.logits, 'run level 1 via load_run')).toBeLessThan(1e-4);
  }, 300_000);

  it('save_pruned: torch.nn.utils.prune levels pass ticketlab check and load into our engine with the same logits', async () => {
    const dir = path.join(tmp, 'pruned');
    fs.mkdirSync(dir);
    const xFile = path.join(tmp, 'pruned-x.safetensors');
    const x = seededValues(2 * 3 * 32 * 32, 9);
    await saveSafetensors(xFile, { x: { dtype: 'F32', shape: [2, 3, 32, 32], data: x } });
    const theirs = python<number[]>(`
import json, torch, torch.nn as nn, torch.nn.utils.prune as prune, ticketlab_torch as tt
torch.manual_seed(0)
m = tt.Meso4(32).eval()
params = [(mod, "weight") for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
for level in (1, 2):
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.3)
    tt.save_pruned(m, ${JSON.stringify(dir)} + f"/level_{level}.safetensors")
x, _ = tt.load_file(${JSON.stringify(xFile)})
with torch.no_grad():
    y = m.double()(x["x"].double())
print(json.dumps(y.flatten().tolist()))`);
    const r = await checkRun(dir, { rate: 0.3 });
    expect(r.ok, formatRunCheck(r)).toBe(true);
    for (const id of ['binary', 'monotone', 'target', 'zeros']) expect(r.results.find((x) => x.id === id)!.status, `${id}\n${formatRunCheck(r)}`).toBe('pass');
    const { tensors } = await readF32Tensors(path.join(dir, 'level_2.safetensors'));
    const model = createModel('meso4', { size: 32 });
    model.loadStateDict(new Map([...tensors].filter(([k]) => !k.endsWith('_mask'))));
    const ours = await logits(model, x, 32);
    model.dispose();
    expect(relErr(ours, theirs, 'save_pruned level 2')).toBeLessThan(1e-4);
  }, 240_000);
});

// `ticketlab check` on a folder of PyTorch state dicts (.safetensors), one per pruning level in natural
// order of the file names. Every entry of the folder is either checked or listed as ignored with the
// reason, so that a file can never drop out of a check silently. Three kinds of file are checked:
//   - torch.nn.utils.prune state dicts: `<layer>.weight_orig` + `<layer>.weight_mask`; the weight torch
//     computes is weight_orig * weight_mask, so that product is what must be zero where pruned;
//   - the same with a plain `<layer>.weight` beside the mask (saved by hand): the plain tensor is checked;
//   - files after `prune.remove` (plain `.weight`, no masks): checked against `--masks FILE`, else
//     against the masks of the file before them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readF32Tensors } from '../nn/checkpoint.js';
import { ArgumentError } from '../util/errors.js';
import { asMask, verdicts, type CheckOptions, type FileCache, type IgnoredFile, type InvariantId, type RunCheck, type Tensors, INVARIANTS } from './check-core.js';
import { firstCountOffTarget, firstGrown, firstNonBinary, firstNonZeroPruned, keptCounts, masksIn, naturalOrder, targetAfterRound, type TensorsByKey } from './invariants.js';

/** The bridge's folder (python/ at the package root, beside src/ and dist/). */
const PYTHON_DIR = fileURLToPath(new URL('../../python', import.meta.url));

/** The one line of Python that turns a pickled state dict into a file `check` reads. */
export function convertCommand(file: string): string {
  const out = file.replace(/\.(pt|pth|bin|ckpt)$/i, '.safetensors');
  return `PYTHONPATH=${PYTHON_DIR} python3 -c "import torch, ticketlab_torch as t; t.save_file(torch.load('${file}', map_location='cpu'), '${out}')"`;
}

/** An all-kept mask of each layer's size: the dense model the first pruning round started from. */
function onesLike(m: TensorsByKey): Map<string, Float32Array> {
  return new Map([...m].map(([k, x]) => [k, new Float32Array(x.length).fill(1)]));
}

/**
 * The weights a file's masks apply to, as torch would compute them: a plain `<layer>.weight` where
 * the file has one, else `weight_orig * weight_mask` (float32, like torch's forward pre-hook). A
 * pruned entry of the product is +-0 unless weight_orig holds NaN or Infinity there.
 */
function effectiveWeights(t: Tensors, masks: TensorsByKey): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [k, m] of masks) {
    const plain = t.get(k);
    const orig = t.get(`${k}_orig`);
    if (plain) out.set(k, plain);
    else if (orig && orig.length === m.length) out.set(k, orig.map((v, i) => Math.fround(v * m[i])));
  }
  return out;
}

async function externalMasks(file: string): Promise<Tensors> {
  if (!fs.existsSync(file)) throw new ArgumentError('checkRun', 'options.masks', `${file}: no such file`);
  let t: Tensors;
  try {
    t = new Map([...(await readF32Tensors(file)).tensors].map(([k, x]) => [k, x.data]));
  } catch (e) {
    throw new ArgumentError('checkRun', 'options.masks', `${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  const m = masksIn(t);
  if (!m.size) throw new ArgumentError('checkRun', 'options.masks', `${file}: holds no <layer>.weight_mask tensors`);
  return m;
}

/** Why a folder entry is not a level file, or null when it is one. */
function notALevelFile(e: fs.Dirent): string | null {
  if (e.isDirectory()) return `a folder (check it on its own: ticketlab check ${e.name})`;
  if (/\.(pt|pth|bin|ckpt)$/i.test(e.name)) return `a pickled PyTorch file, which check cannot read (only .safetensors); convert it: ${convertCommand(e.name)}`;
  if (!e.name.endsWith('.safetensors')) return 'not a .safetensors file';
  return null;
}

export async function checkPytorchFolder(run: string, cache: FileCache, o: CheckOptions): Promise<RunCheck> {
  const external = o.masks !== undefined ? await externalMasks(o.masks) : null;
  const entries = fs.readdirSync(run, { withFileTypes: true }).sort((a, b) => naturalOrder(a.name, b.name));
  const v = verdicts();
  const ignored: IgnoredFile[] = [];
  const used: string[] = [];
  // The masks the last checked file had (or implied, after prune.remove): what the next file must respect.
  let prev: Tensors | null = null;
  let prevName = '';
  for (const e of entries) {
    const why = notALevelFile(e);
    if (why) {
      ignored.push({ file: e.name, reason: why });
      continue;
    }
    const f = path.join(run, e.name);
    const rel = cache.rel(f);
    let t: Tensors;
    try {
      t = (await cache.tensors(f))!;
    } catch (err) {
      ignored.push({ file: rel, reason: `unreadable: ${(err as Error).message.split('\n')[0]}` });
      continue;
    }
    const own = masksIn(t);
    if (own.size) {
      used.push(rel);
      v.binary.record(rel, asMask(firstNonBinary(own)));
      if (prev) v.monotone.record(rel, asMask(firstGrown(prev, own)));
      // The first file is one round from the dense model (the documented loop saves after each prune
      // call) unless it keeps everything (a dense level 0 saved before pruning). torch rounds
      // remaining * amount with Python's round(): halves to even.
      const counts = [...keptCounts(own).values()];
      const from = prev ?? (counts.length && counts.every((c) => c.kept === c.total) ? null : onesLike(own));
      if (o.rate !== undefined && from) v.target.record(rel, firstCountOffTarget(own, targetAfterRound(from, o.rate, o.scope ?? 'global', 'half-even')));
      // Either sign of zero: weight_orig * 0 is -0 where weight_orig < 0. A masks-only file has no weights.
      const weights = effectiveWeights(t, own);
      if (weights.size) v.zeros.record(rel, firstNonZeroPruned(own, weights, undefined, { negativeZero: true }));
      prev = own;
      prevName = rel;
      continue;
    }
    // No masks: a state dict after prune.remove (weight = weight_orig * mask made permanent).
    const ref = external ?? prev;
    if (!ref) {
      ignored.push({ file: rel, reason: 'holds no <layer>.weight_mask and no file before it has masks: if it was saved after prune.remove, give its masks with --masks FILE' });
      continue;
    }
    const present = [...ref.keys()].filter((k) => t.has(k));
    if (!present.length) {
      ignored.push({ file: rel, reason: `holds none of the masked weights (${[...ref.keys()].slice(0, 3).join(', ')}${ref.size > 3 ? ', ...' : ''}) and no masks` });
      continue;
    }
    used.push(rel);
    v.zeros.record(rel, firstNonZeroPruned(ref, t, undefined, { negativeZero: true }));
    v.zeros.notes.push(`${rel} against the masks of ${external ? o.masks : prevName}`);
  }
  v.zeros.notes.unshift('weight_orig * weight_mask, or a plain <layer>.weight; either sign of zero');
  const skip: Record<InvariantId, string> = {
    binary: 'no file with masks',
    structure: 'no granularity in a PyTorch folder',
    monotone: 'fewer than two files with masks',
    'sparsity-json': 'not written by PyTorch',
    target: o.rate === undefined ? 'give --rate (and --scope) to check counts' : 'a single dense file',
    zeros: 'no weights beside or after the masks',
    rewind: 'no rewind point in a PyTorch folder',
    'random-prune': 'no controls in a PyTorch folder',
    reinit: 'no controls in a PyTorch folder',
    transfer: 'no transfers in a PyTorch folder',
  };
  const results = INVARIANTS.map((i) => v[i.id].result(skip[i.id]));
  return { run, kind: 'pytorch', levels: used, ignored, results, ok: used.length > 0 && results.every((r) => r.status !== 'fail') };
}

// The faces Grad-CAM is shown on: the same images for every level, balanced real/fake.
//
//   'synthetic'  the run's own synthetic test split (same generator settings as `openDataset` builds for
//                the run: spec seed or the run's seed, spec difficulty, size), with each fake's blend mask,
//                so the maps can be scored against where the manipulation really is
//   a directory  a dataset root whose layout openDataset detects (its test split), or any folder of
//                images; there a path component named real/fake (any case) gives the label, and images
//                with neither are unlabelled
// Selection is deterministic: in index (or sorted path) order, the first floor(n/2) reals and then
// the first n - floor(n/2) fakes (topped up from the other class when one runs short). Rows list the
// reals first, then the fakes.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { SyntheticDeepfakes } from '../data/synthetic.js';
import { detectLayout, openDataset, parseSyntheticSpec, type Dataset } from '../data/datasets.js';
import { decodeImage, toCHWFloat } from '../data/image.js';
import { ArgumentError } from '../util/errors.js';

export interface CamImage {
  /** CHW float32 in [0, 1], 3 x size x size */
  image: Float32Array;
  /** 1 = fake, 0 = real, null = unknown */
  label: 0 | 1 | null;
  /** Where it came from: `synthetic/test/17`, or a file path relative to the folder. */
  source: string;
  /** size x size blend mask of a synthetic fake; null otherwise */
  mask: Float32Array | null;
}

export interface PickOptions {
  /** The run's dataset spec (config.json `data`). */
  runData: string;
  /** Input side in pixels. */
  size: number;
  /** The run's seed (config.json `train.seed`): openDataset's seed for the run's data. */
  seed: number;
  n: number;
}

/** Generator settings of a `synthetic[:k=v,...]` spec, as openDataset resolves them (null: not synthetic). */
export function syntheticSettings(spec: string, seed: number): { seed: number; difficulty?: number; count: Record<string, number> } | null {
  if (spec !== 'synthetic' && !spec.startsWith('synthetic:')) return null;
  const p = parseSyntheticSpec(spec);
  return { seed: p.seed ?? seed, ...(p.difficulty !== undefined ? { difficulty: p.difficulty } : {}), count: { ...p.counts } };
}

/** Indices of a balanced pick: first floor(n/2) reals then the rest fakes, each in order. */
export function balancedPick(labels: readonly (0 | 1 | null)[], n: number): number[] {
  const reals = labels.flatMap((l, i) => (l === 0 ? [i] : []));
  const fakes = labels.flatMap((l, i) => (l === 1 ? [i] : []));
  if (!reals.length && !fakes.length) return labels.slice(0, n).map((_, i) => i);
  let nr = Math.min(Math.floor(n / 2), reals.length);
  const nf = Math.min(n - nr, fakes.length);
  nr = Math.min(n - nf, reals.length);
  return [...reals.slice(0, nr), ...fakes.slice(0, nf)];
}

/** Picks the images (see the file comment). */
export async function pickImages(spec: string, o: PickOptions): Promise<CamImage[]> {
  if (!Number.isInteger(o.n) || o.n < 1) throw new Error(`image count ${o.n} must be a positive integer`);
  if (spec === 'synthetic') return syntheticImages(o);
  const root = path.resolve(spec);
  const st = await fs.stat(root).catch(() => null);
  if (!st) throw new ArgumentError('pickImages', 'spec', `${spec}: no such folder (or pass 'synthetic')`);
  if (!st.isDirectory()) throw new ArgumentError('pickImages', 'spec', `${spec}: not a folder`);
  if (await detectLayout(root)) {
    const data = await openDataset(root, { size: o.size, seed: o.seed });
    return datasetImages(data.test, o.n, root);
  }
  return folderImages(root, o);
}

function syntheticImages(o: PickOptions): CamImage[] {
  const s = syntheticSettings(o.runData, o.seed) ?? { seed: o.seed, count: {} };
  const gen = new SyntheticDeepfakes({ seed: s.seed, size: o.size, difficulty: s.difficulty, count: s.count });
  const total = gen.length('test');
  const labels = Array.from({ length: total }, (_, i) => gen.label('test', i));
  return balancedPick(labels, o.n).map((i) => {
    const smp = gen.sample('test', i);
    return { image: smp.image, label: smp.label, source: `synthetic/test/${i}`, mask: smp.label === 1 ? smp.mask : null };
  });
}

async function datasetImages(ds: Dataset, n: number, root: string): Promise<CamImage[]> {
  const labels = Array.from({ length: ds.length() }, (_, i) => ds.label(i));
  const out: CamImage[] = [];
  for (const i of balancedPick(labels, n)) {
    const s = await ds.get(i);
    out.push({ image: s.image, label: s.label, source: s.path ? path.relative(root, s.path) : `${ds.name}/${i}`, mask: null });
  }
  return out;
}

const IMAGE_EXT = /\.(jpe?g|png)$/i;

async function folderImages(root: string, o: PickOptions): Promise<CamImage[]> {
  const files: string[] = [];
  const walk = async (d: string): Promise<void> => {
    const entries = await fs.readdir(d, { withFileTypes: true });
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (IMAGE_EXT.test(e.name)) files.push(p);
    }
  };
  await walk(root);
  files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (!files.length) throw new ArgumentError('pickImages', 'spec', `${root}: no .jpg/.jpeg/.png images in it`);
  const labels = files.map((f) => labelOf(path.relative(root, f)));
  const out: CamImage[] = [];
  for (const i of balancedPick(labels, o.n)) {
    const img = await decodeImage(files[i]);
    out.push({ image: toCHWFloat(img, o.size), label: labels[i], source: path.relative(root, files[i]), mask: null });
  }
  return out;
}

/** 0/1 from a folder named real/fake on the relative path; null when neither (or both) appear. */
export function labelOf(rel: string): 0 | 1 | null {
  const parts = rel.split(/[\\/]/).slice(0, -1).map((p) => p.toLowerCase());
  const real = parts.includes('real');
  const fake = parts.includes('fake');
  return real === fake ? null : fake ? 1 : 0;
}

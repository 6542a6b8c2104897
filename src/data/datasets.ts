// Datasets: one interface over the layouts we read (image folders incl. the Kaggle sets, OpenForensics'
// COCO release, FaceForensics++'s release, the synthetic generator). A dataset lists its samples and
// their labels up front (cheap: no pixel is decoded), and decodes one sample on demand.
//
// Failure policy: a layout we cannot recognise, or a missing root, is an error at open time (naming the
// path). A single unreadable image is an UnreadableImageError at get() time, which the loader turns into
// a skipped sample with a warning, so one bad JPEG never ends an epoch.
import * as path from "node:path";
import { UnreadableImageError, writeFileAtomic } from "./image.js";
import { SyntheticDeepfakes, type SplitName } from "./synthetic.js";
import {
  type Dataset,
  type DatasetSplits,
  type Layout,
  type OpenOptions,
  type ResolvedOptions,
  type Sample,
  defaultWarn,
  isDir,
  isFile,
} from "./dataset-base.js";
import { imageFolderBase, openImageFolder } from "./dataset-folder.js";
import { cacheDefaults } from "./decoded.js";
import { OF_SPLITS, ofAnnotationFile, openOpenForensics } from "./dataset-openforensics.js";
import { openFaceForensics } from "./dataset-ffpp.js";

export {
  CropModeError, SPLITS, provideFaceCropper, splitByGroup,
  type CropMode, type Dataset, type DetectedFace, type DatasetSplits, type FaceCropper, type Layout, type OpenOptions, type Sample, type SplitName,
} from "./dataset-base.js";
export { frameGroup } from "./dataset-folder.js";
export { boxIoU, cropRect, matchDetections } from "./dataset-openforensics.js";
export { centreSquare, evenlySpaced, listFaceForensics, type FaceForensicsVideo } from "./dataset-ffpp.js";

// =============================================================================================
// synthetic

class SyntheticSplit implements Dataset {
  readonly name: string;
  constructor(private readonly gen: SyntheticDeepfakes, private readonly split: SplitName) {
    this.name = `synthetic/${split}`;
  }
  get size(): number {
    return this.gen.size;
  }
  length(): number {
    return this.gen.length(this.split);
  }
  label(i: number): 0 | 1 {
    return this.gen.label(this.split, i);
  }
  group(i: number): string {
    return `${this.split}/${i}`;
  }
  async get(i: number): Promise<Sample> {
    this.gen.label(this.split, i); // range check before deferring, so a bad index fails at the call
    // Rendering is synchronous CPU work; deferring it to a macrotask lets the loader's prefetch interleave
    // with the consumer (GPU callbacks, logging) instead of rendering K batches in one blocking stretch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const s = this.gen.sample(this.split, i);
    return { image: s.image, label: s.label };
  }
}

/** `synthetic` or `synthetic:difficulty=0.3,train=1000,val=200,test=200,seed=3`. */
export interface SyntheticSpec {
  seed?: number;
  difficulty?: number;
  counts: Partial<Record<SplitName, number>>;
}

export function parseSyntheticSpec(spec: string): SyntheticSpec {
  const out: SyntheticSpec = { counts: {} };
  const rest = spec.slice("synthetic".length);
  if (rest === "") return out;
  if (!rest.startsWith(":")) throw new Error(`bad dataset spec '${spec}' (expected synthetic or synthetic:key=value,...)`);
  for (const kv of rest.slice(1).split(",").filter(Boolean)) {
    const [k, v] = kv.split("=");
    const num = Number(v);
    if (v === undefined || v.trim() === "" || !Number.isFinite(num)) throw new Error(`bad value in dataset spec '${spec}': ${kv}`);
    const range = (lo: number, hi: number, int: boolean): number => {
      if (num < lo || num > hi || (int && !Number.isInteger(num))) {
        throw new RangeError(`dataset spec '${spec}': ${k}=${v} must be ${int ? "an integer" : "a number"} in [${lo}, ${hi}]`);
      }
      return num;
    };
    if (k === "seed") out.seed = range(0, 2 ** 32 - 1, true);
    else if (k === "difficulty") out.difficulty = range(0, 1, false);
    else if (k === "train" || k === "val" || k === "test") out.counts[k] = range(0, MAX_SYNTHETIC_COUNT, true);
    else throw new Error(`unknown key '${k}' in dataset spec '${spec}' (known: seed, difficulty, train, val, test)`);
  }
  return out;
}

/** Most images a synthetic split may have (rendered on demand, but logits and labels are held per image). */
export const MAX_SYNTHETIC_COUNT = 10_000_000;

/**
 * Checks the splits a training command needs before anything is written: a training split with images
 * of both classes, and non-empty validation and test splits. One-line errors naming the dataset.
 */
export function checkTrainingSplits(d: DatasetSplits): void {
  const n = d.train.length();
  if (n === 0) throw new Error(`${d.name}: the training split has no images`);
  const c = classCounts(d.train);
  if (c.real === 0 || c.fake === 0) {
    throw new Error(`${d.name}: the training split has only ${c.real ? "real" : "fake"} images (${n}); a detector needs both real and fake ones`);
  }
  if (d.val.length() === 0) throw new Error(`${d.name}: the validation split has no images (early stopping and the best weights need it)`);
  if (d.test.length() === 0) throw new Error(`${d.name}: the test split has no images`);
}

/**
 * Reads samples of each class of each split until one decodes, so that a split none of whose images
 * can be read (all corrupt, all in an unsupported format) fails before a run folder exists rather than
 * during the first epoch. Costs one decode per class and split when the data is sound.
 */
export async function checkReadableSplits(d: DatasetSplits): Promise<void> {
  const splits: [string, Dataset][] = [["training", d.train], ["validation", d.val], ["test", d.test]];
  for (const [split, ds] of splits) {
    for (const label of [0, 1] as const) {
      let listed = 0;
      let first = "";
      let readable = false;
      for (let i = 0; i < ds.length() && !readable; i++) {
        if (ds.label(i) !== label) continue;
        listed++;
        try {
          await ds.get(i);
          readable = true;
        } catch (e) {
          first ||= (e as Error).message.split("\n")[0];
        }
      }
      if (listed && !readable) {
        throw new Error(`${ds.name}: none of the ${listed} ${label ? "fake" : "real"} images of the ${split} split can be read (first: ${first})`);
      }
    }
  }
}

// =============================================================================================
// open + detect


/** Which layout a directory holds, and the base directory to read it from. Null when none is recognised. */
export async function detectLayout(root: string): Promise<{ layout: Exclude<Layout, "synthetic">; base: string } | null> {
  for (const s of OF_SPLITS) if (await ofAnnotationFile(root, s)) return { layout: "openforensics", base: root };
  if ((await isDir(path.join(root, "original_sequences"))) || (await isDir(path.join(root, "manipulated_sequences")))) {
    return { layout: "faceforensics", base: root };
  }
  const base = await imageFolderBase(root);
  if (base) return { layout: "image-folder", base };
  return null;
}

/**
 * Open a dataset by spec: `synthetic[:k=v,...]` or a directory whose layout is detected (OpenForensics
 * COCO release, FaceForensics++ release, or an image folder such as the Kaggle sets).
 */
export async function openDataset(spec: string, opts: OpenOptions = {}): Promise<DatasetSplits> {
  const o: ResolvedOptions = {
    size: opts.size ?? 64,
    seed: opts.seed ?? 0,
    holdoutFraction: opts.holdoutFraction ?? 0.1,
    cacheDir: opts.cacheDir ?? cacheDefaults().dir,
    warn: opts.warn ?? defaultWarn,
    raw: opts,
  };
  if (!Number.isInteger(o.size) || o.size < 1) throw new Error(`image size must be a positive integer, got ${o.size}`);
  if (!(o.holdoutFraction > 0 && o.holdoutFraction < 1)) throw new Error(`holdoutFraction must be in (0,1), got ${o.holdoutFraction}`);
  if (spec === "synthetic" || spec.startsWith("synthetic:")) {
    const p = parseSyntheticSpec(spec);
    const gen = new SyntheticDeepfakes({
      ...opts.synthetic,
      seed: p.seed ?? o.seed,
      size: o.size,
      difficulty: p.difficulty ?? opts.synthetic?.difficulty,
      count: { ...opts.synthetic?.count, ...p.counts },
    });
    const name = `synthetic(seed=${gen.seed},difficulty=${gen.difficulty})`;
    return {
      name, layout: "synthetic", root: null, size: o.size,
      train: new SyntheticSplit(gen, "train"), val: new SyntheticSplit(gen, "val"), test: new SyntheticSplit(gen, "test"),
    };
  }
  const root = path.resolve(spec);
  if (!(await isDir(root))) {
    throw new Error((await isFile(root)) ? `dataset path is a file, not a directory: ${root}` : `dataset path not found: ${root}`);
  }
  const det = await detectLayout(root);
  if (!det) {
    throw new Error(`no known dataset layout at ${root} (expected [Dataset/]{Train,Validation,Test}/{Real,Fake}/, *_poly.json + Images/, or original_sequences/ + manipulated_sequences/)`);
  }
  switch (det.layout) {
    case "openforensics": return openOpenForensics(det.base, o);
    case "faceforensics": return openFaceForensics(det.base, o);
    case "image-folder": return openImageFolder(root, det.base, o);
  }
}

/** Real/fake counts without decoding. */
export function classCounts(ds: Dataset): { real: number; fake: number } {
  let fake = 0;
  const n = ds.length();
  for (let i = 0; i < n; i++) fake += ds.label(i);
  return { real: n - fake, fake };
}

/**
 * Decode every sample once so later epochs read small cached crops/frames instead of full photos/videos.
 * Samples are visited in dataset order (faces of one photo are adjacent), `concurrency` at a time.
 */
export async function warmCache(ds: Dataset, opts: { concurrency?: number; onProgress?: (done: number, total: number) => void; warn?: (m: string) => void } = {}): Promise<{ done: number; skipped: number }> {
  const total = ds.length();
  const warn = opts.warn ?? defaultWarn;
  let next = 0, done = 0, skipped = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      try {
        await ds.get(i);
      } catch (e) {
        if (!(e instanceof UnreadableImageError)) throw e;
        skipped++;
        warn(e.message);
      }
      done++;
      opts.onProgress?.(done, total);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));
  return { done, skipped };
}

// Re-exported so callers handling skips need only this module.
export { UnreadableImageError, writeFileAtomic };

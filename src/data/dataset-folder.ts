// The image-folder layout: <root>/[Dataset/]<split>/<class>/**/*.{jpg,jpeg,png}, the Kaggle sets
// included (case-insensitive split and class names). Part of data/datasets.ts, which opens it.
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { SPLITS, type SplitName } from "./synthetic.js";
import {
  type Dataset,
  type DatasetSplits,
  type Entry,
  ListDataset,
  type Sample,
  type ResolvedOptions,
  VisitedDirs,
  byteOrder,
  findChildDirs,
  listImages,
  splitByGroup,
} from "./dataset-base.js";
import { CachedDecoder, cacheDefaults, openShardCache, pixelSample, RESIZE_METHOD, type PixelDataset } from "./decoded.js";

export const SPLIT_DIR_NAMES: Record<SplitName, readonly string[]> = {
  train: ["train", "training"],
  val: ["validation", "val", "valid"],
  test: ["test", "testing"],
};
export const CLASS_DIR_NAMES: Record<"real" | "fake", readonly string[]> = { real: ["real"], fake: ["fake"] };

/**
 * The video a Kaggle frame belongs to: `<video>_<frame>` / `<src>_<tgt>_<frame>` minus the frame number.
 * Files without a trailing frame number are their own group.
 */
export function frameGroup(file: string): string {
  const stem = path.basename(file).replace(/\.[^.]+$/, "");
  const m = /^(.+)_\d+$/.exec(stem);
  return m ? m[1] : stem;
}

/**
 * Image files, stretched to size x size by toCHWBytes (antialiased bilinear, rounded to bytes as PIL
 * does), read through the decoded cache when there is one.
 */
export class FileDataset extends ListDataset<Entry> implements PixelDataset {
  constructor(name: string, size: number, entries: readonly Entry[], private readonly decoder: CachedDecoder) {
    super(name, size, entries);
  }
  get cache(): PixelDataset["cache"] {
    return this.decoder.cache;
  }
  async getPixelsInto(i: number, out: Uint8Array, at: number): Promise<void> {
    await this.decoder.read(this.entry(i).path, out, at);
  }
  readCachedInto(i: number, out: Uint8Array, at: number): boolean {
    return this.decoder.readCached(this.entry(i).path, out, at);
  }
  ensureCached(i: number): Promise<"cached" | "decoded"> {
    return this.decoder.ensure(this.entry(i).path);
  }
  flushCache(): Promise<void> {
    return this.decoder.flush();
  }
  get(i: number): Promise<Sample> {
    const e = this.entry(i);
    return pixelSample(this, i, e.label, e.path);
  }
}

/** The decoded cache of an image folder (none with `decodedCache: false`); crops do not apply to folders. */
function folderDecoder(root: string, o: ResolvedOptions): CachedDecoder {
  const cache = (o.raw.decodedCache ?? cacheDefaults().decoded) === false ? null
    : openShardCache(o.cacheDir ?? path.join(root, ".ticketlab-cache"), { size: o.size, pipeline: `image-folder;${RESIZE_METHOD}` }, o.warn);
  return new CachedDecoder(cache, root, o.size, o.warn);
}

export async function imageFolderBase(root: string): Promise<string | null> {
  const candidates = [root, ...(await findChildDirs(root, ["dataset"]))];
  for (const c of candidates) {
    const splits = await findChildDirs(c, [...SPLIT_DIR_NAMES.train, ...SPLIT_DIR_NAMES.val, ...SPLIT_DIR_NAMES.test]);
    for (const s of splits) {
      if ((await findChildDirs(s, [...CLASS_DIR_NAMES.real, ...CLASS_DIR_NAMES.fake])).length > 0) return c;
    }
  }
  return null;
}

export async function openImageFolder(root: string, base: string, o: ResolvedOptions): Promise<DatasetSplits> {
  const found: Partial<Record<SplitName, Entry[]>> = {};
  // Every split and class folder is marked read before any is walked, so a link from inside one class
  // to the split above it (or to another class) is skipped wherever the walk meets it.
  const visited = new VisitedDirs(o.warn);
  await visited.enter(base);
  const classDirs: { split: SplitName; cls: "real" | "fake"; label: 0 | 1; dir: string }[] = [];
  const splitDirs: Partial<Record<SplitName, string[]>> = {};
  for (const split of SPLITS) {
    const dirs = await findChildDirs(base, SPLIT_DIR_NAMES[split]);
    const entered: string[] = [];
    for (const d of dirs) if (await visited.enter(d)) entered.push(d);
    splitDirs[split] = entered;
  }
  for (const split of SPLITS) {
    for (const d of splitDirs[split] ?? []) {
      for (const [cls, label] of [["real", 0], ["fake", 1]] as const) {
        for (const cdir of await findChildDirs(d, CLASS_DIR_NAMES[cls])) {
          if (await visited.enter(cdir)) classDirs.push({ split, cls, label, dir: cdir });
        }
      }
    }
  }
  for (const split of SPLITS) {
    const dirs = splitDirs[split] ?? [];
    if (dirs.length === 0) continue;
    if (dirs.length > 1) o.warn(`${base}: several folders name the ${split} split (${dirs.map((d) => path.basename(d)).join(", ")}); using all of them`);
    const entries: Entry[] = [];
    for (const d of dirs) {
      for (const [cls, label] of [["real", 0], ["fake", 1]] as const) {
        for (const { dir: cdir } of classDirs.filter((c) => c.split === split && c.cls === cls && path.dirname(c.dir) === d)) {
          for (const file of await listImages(cdir, visited)) {
            // Real and fake frames of the same video id are different videos; keep the class in the group.
            entries.push({ label, group: `${cls}/${frameGroup(file)}`, path: file });
          }
        }
      }
    }
    entries.sort((a, b) => byteOrder(a.path, b.path));
    found[split] = entries;
  }
  if (!found.train || found.train.length === 0) throw new Error(`no training images in ${base} (expected ${base}/Train/{Real,Fake}/*.jpg)`);
  await refuseCrossClassLinks(SPLITS.flatMap((sp) => found[sp] ?? []), classDirs);
  let train = found.train;
  for (const split of ["val", "test"] as const) {
    if (!found[split] || found[split].length === 0) {
      const [keep, carve] = splitByGroup(train, o.holdoutFraction, o.seed, split);
      o.warn(`${base}: ${found[split] ? `the ${split} folder holds no image` : `no ${split} folder`}; holding out ${carve.length} of ${train.length} training images instead (by video/file group)`);
      train = keep;
      found[split] = carve;
    }
  }
  const name = `image-folder:${root}`;
  const decoder = folderDecoder(root, o);
  const mk = (s: SplitName, es: Entry[]): Dataset => new FileDataset(`${name}/${s}`, o.size, es, decoder);
  return {
    name, layout: "image-folder", root, size: o.size,
    train: mk("train", train), val: mk("val", found.val ?? []), test: mk("test", found.test ?? []),
  };
}

/**
 * Refuses a file symlink whose target lies under a class folder of the other label (fake/x.jpg -> real/x.jpg):
 * one image would be trained on with both labels. Links within a class are fine.
 */
async function refuseCrossClassLinks(entries: readonly Entry[], classDirs: readonly { label: 0 | 1; dir: string }[]): Promise<void> {
  const homes = await Promise.all(classDirs.map(async (c) => ({ label: c.label, real: await fsp.realpath(c.dir).catch(() => path.resolve(c.dir)) })));
  for (const e of entries) {
    if (!(await fsp.lstat(e.path).catch(() => null))?.isSymbolicLink()) continue;
    const target = await fsp.realpath(e.path).catch(() => null);
    const home = target ? homes.filter((h) => target.startsWith(h.real + path.sep)).sort((a, b) => b.real.length - a.real.length)[0] : undefined;
    if (home && home.label !== e.label) {
      const cls = (l: 0 | 1) => (l ? "fake" : "real");
      throw new Error(`${e.path} is a link to ${target}, an image under a ${cls(home.label)} folder: one image would be both ${cls(e.label)} and ${cls(home.label)}; remove the link`);
    }
  }
}

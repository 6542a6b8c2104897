// The common part of the dataset layouts (data/datasets.ts opens them): what a dataset is, the
// list-backed dataset every layout builds on, directory walking that follows each folder once, and
// grouped splits.
import { promises as fs, type Dirent } from "node:fs";
import * as path from "node:path";
import { type Rect, type RgbImage } from "./image.js";
import { hashKey, hashString, unitFloat } from "./random.js";
import { SPLITS, type SplitName, type SyntheticOptions } from "./synthetic.js";

export type { SplitName } from "./synthetic.js";
export { SPLITS } from "./synthetic.js";

export interface Sample {
  /** CHW float32 in [0,1], 3 x size x size */
  image: Float32Array;
  /** the same image as CHW bytes (image = byte / 255), where the layout reads 8-bit images */
  pixels?: Uint8Array;
  /** 1 = fake */
  label: 0 | 1;
  /** the file (or video) the sample came from, for warnings and reports */
  path?: string;
}

export interface Dataset {
  readonly name: string;
  /** side of the square images `get` returns */
  readonly size: number;
  length(): number;
  /** label without decoding */
  label(i: number): 0 | 1;
  /**
   * The unit that must not be split across train/val/test (a video, an identity pair, a file), so
   * leakage can be checked. Samples that share a group always share a split.
   */
  group(i: number): string;
  get(i: number): Promise<Sample>;
}

export type Layout = "synthetic" | "image-folder" | "openforensics" | "faceforensics";

export interface DatasetSplits {
  readonly name: string;
  readonly layout: Layout;
  /** resolved dataset root; null for synthetic */
  readonly root: string | null;
  readonly size: number;
  readonly train: Dataset;
  readonly val: Dataset;
  readonly test: Dataset;
}

export interface OpenOptions {
  /** output image side (default 64) */
  size?: number;
  /** seeds any split we have to make ourselves (default 0) */
  seed?: number;
  /**
   * Fraction of train carved out (by group, seeded) for a split a layout lacks (default 0.1).
   */
  holdoutFraction?: number;
  /** where derived crops/frames and the decoded shards are cached; default `<root>/.ticketlab-cache` */
  cacheDir?: string;
  /** false: image folders decode every read instead of using the decoded cache (`--no-cache`); default true */
  decodedCache?: boolean;
  warn?: (message: string) => void;
  synthetic?: Omit<SyntheticOptions, "size" | "seed">;
  /**
   * Crop mode of whichever layout is opened (overrides `faceforensics.crop` / `openforensics.crop`):
   * 'face' (both: the detector, default), 'box' (OpenForensics: the annotated boxes), 'centre' (FF++: the
   * centre square). A mode the opened layout lacks is a CropModeError; image folders and synthetic data
   * ignore it.
   */
  crop?: CropMode;
  openforensics?: {
    /** which test set `test` means (default Test-Dev) */
    testSet?: "Test-Dev" | "Test-Challenge";
    /** crop side = max(w,h) * cropScale (default 1.3) */
    cropScale?: number;
    /**
     * 'face' (default): the detector runs on the whole photo, each annotation takes the detection it
     * overlaps at IoU >= 0.5 (greedy by IoU, one detection per annotation) and is cropped to the
     * detector's square (x1.3, as FF++ face crops), cached under `openforensics-faces/`; an annotation
     * no detection matches is cropped to its box (counted, one warning once the split is loaded).
     * Needs a cropper with `faces` (`faceCrop` here or provideFaceCropper); without one, 'box' with a
     * warning. 'box': the annotated box x cropScale (cached under `openforensics/`).
     */
    crop?: "face" | "box";
    /** as faceforensics.faceCrop; must have `faces` */
    faceCrop?: FaceCropper;
  };
  faceforensics?: {
    /** raw | c23 | c40; default: c23 if present, else raw, else c40 */
    compression?: string;
    /** manipulation methods to include; default every folder under manipulated_sequences except DeepFakeDetection */
    methods?: string[];
    /** frames per video, evenly spaced (default 40) */
    framesPerVideo?: number;
    /** include original_sequences/actors and DeepFakeDetection (not in the official splits; split by actor, seeded) */
    includeActors?: boolean;
    /** directory holding train/val/test.json; default `<root>/splits` */
    splitsDir?: string;
    /** ffmpeg binary (default: `ffmpeg` on PATH) */
    ffmpeg?: string;
    /**
     * 'face' (default): frames are cropped around the face that the cropper finds (cached under
     * `ffpp-faces/`); 'centre': the centre square of the frame (cached under `ffpp/`).
     */
    crop?: "face" | "centre";
    /**
     * The face cropper. data/ knows no GPU, so the detector is injected from above: here, or once per
     * process with provideFaceCropper (the CLI does that). With neither, 'face' falls back to the centre.
     */
    faceCrop?: FaceCropper;
  };
}

export type CropMode = "face" | "box" | "centre";

/** A crop mode the opened layout does not have; the CLI names its --crop flag. */
export class CropModeError extends Error {
  constructor(readonly mode: string, readonly layout: string, readonly modes: readonly string[]) {
    super(`crop mode '${mode}' does not apply to ${layout} (its modes: ${modes.join(", ")})`);
  }
}

/** One detected face: its box in image pixels and the square crop the cropper would take around it. */
export interface DetectedFace {
  box: { x: number; y: number; width: number; height: number };
  crop: Rect;
}

/**
 * Picks the crop of a frame (e.g. the largest detected face with a margin). `faces`, when present,
 * lists every detected face with its crop (the OpenForensics loader matches them to annotations).
 */
export type FaceCropper = ((img: RgbImage) => Promise<Rect>) & { faces?: (img: RgbImage) => Promise<DetectedFace[]> };

export let faceCropperProvider: (() => Promise<FaceCropper>) | null = null;

/** Registers (or clears) the process-wide source of face croppers for FF++ and OpenForensics (see OpenOptions). */
export function provideFaceCropper(provider: (() => Promise<FaceCropper>) | null): void {
  faceCropperProvider = provider;
}

/** How a layout crops: the modes it has, and for 'face' what happens without a detector. */
export interface CropLayout {
  name: string;
  root: string;
  modes: readonly CropMode[];
  fallback: string;
  /** A cropper without a `faces` list counts as none (the OpenForensics loader matches every face). */
  needsFaces?: boolean;
}
type OwnCrop = { crop?: CropMode; faceCrop?: FaceCropper } | undefined;

/** The crop mode a layout runs (`OpenOptions.crop`, else the layout's own `crop`, else 'face'), checked. */
export function cropMode(o: ResolvedOptions, own: OwnCrop, layout: CropLayout): CropMode {
  const mode = o.raw.crop ?? own?.crop ?? "face";
  if (!layout.modes.includes(mode)) throw new CropModeError(mode, layout.name, layout.modes);
  return mode;
}

/**
 * In 'face' mode, the layout's face cropper: its own `faceCrop`, else the provided one. A 'face' asked
 * for by name with no cropper is warned about (`fallback` says what happens instead); the default is
 * silent. Null in the other modes.
 */
export async function faceCropperFor(o: ResolvedOptions, own: OwnCrop, layout: CropLayout): Promise<FaceCropper | null> {
  if (cropMode(o, own, layout) !== "face") return null;
  const found = own?.faceCrop ?? (faceCropperProvider ? await faceCropperProvider() : null);
  const cropper = found && (!layout.needsFaces || found.faces) ? found : null;
  if (!cropper && (o.raw.crop ?? own?.crop) === "face") o.warn(`${layout.root}: no face detector was provided; ${layout.fallback}`);
  return cropper;
}

export const IMAGE_EXT = /\.(jpe?g|png)$/i;

export function defaultWarn(message: string): void {
  process.stderr.write(`warning: ${message}\n`);
}

export async function isDir(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

export async function isFile(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isFile();
  } catch {
    return false;
  }
}

export async function readDirSafe(p: string): Promise<Dirent[]> {
  try {
    return await fs.readdir(p, { withFileTypes: true });
  } catch {
    return [];
  }
}

export async function direntIsDir(parent: string, d: Dirent): Promise<boolean> {
  if (d.isDirectory()) return true;
  if (d.isSymbolicLink()) return isDir(path.join(parent, d.name));
  return false;
}

/** Child directories of `dir` whose lower-cased name is in `names`, in the order of `names`. */
export async function findChildDirs(dir: string, names: readonly string[]): Promise<string[]> {
  const entries = await readDirSafe(dir);
  const out: string[] = [];
  for (const want of names) {
    for (const e of entries) {
      if (e.name.toLowerCase() === want && (await direntIsDir(dir, e))) out.push(path.join(dir, e.name));
    }
  }
  return out;
}

/**
 * Folders already read while listing one dataset, by device and inode (what a symlink resolves to), so
 * that a link loop (`train/real/loop -> ..`) or a link into another class or split is followed once and
 * reported, instead of multiplying images and labelling fakes real.
 */
export class VisitedDirs {
  private readonly seen = new Map<string, string>();
  constructor(private readonly warn: (m: string) => void) {}
  /** Marks `dir` as read; false (with a warning) when it, or the folder it links to, was read already. */
  async enter(dir: string): Promise<boolean> {
    let key: string;
    try {
      const st = await fs.stat(dir);
      key = `${st.dev}:${st.ino}`;
    } catch {
      return false; // vanished or a dangling link: nothing to read
    }
    const first = this.seen.get(key);
    if (first !== undefined) {
      this.warn(`${dir} is the folder ${first} again (a symlink loop or a link into another class or split); skipped, each folder is read once`);
      return false;
    }
    this.seen.set(key, dir);
    return true;
  }
}

/**
 * All image files below `dir` (which the caller has entered), sorted by path (byte order) so sample
 * indices are stable across machines. Sub-folders are followed once each (see VisitedDirs).
 */
export async function listImages(dir: string, visited: VisitedDirs): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readDirSafe(d)) {
      if (e.name.startsWith(".")) continue;
      const p = path.join(d, e.name);
      if (await direntIsDir(d, e)) {
        if (await visited.enter(p)) await walk(p);
      } else if (IMAGE_EXT.test(e.name)) out.push(p);
    }
  };
  await walk(dir);
  return out.sort(byteOrder);
}

export function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// =============================================================================================
// Generic list-backed dataset

export interface Entry {
  label: 0 | 1;
  group: string;
  path: string;
}

export abstract class ListDataset<E extends Entry> implements Dataset {
  constructor(readonly name: string, readonly size: number, protected readonly entries: readonly E[]) {}
  length(): number {
    return this.entries.length;
  }
  label(i: number): 0 | 1 {
    return this.entry(i).label;
  }
  group(i: number): string {
    return this.entry(i).group;
  }
  protected entry(i: number): E {
    const e = this.entries[i];
    if (!Number.isInteger(i) || e === undefined) throw new RangeError(`${this.name}: index ${i} out of range (length ${this.entries.length})`);
    return e;
  }
  abstract get(i: number): Promise<Sample>;
}

/**
 * Seeded split of entries by group: whole groups go to one side, so frames of one video never straddle
 * the boundary. Returns [kept, carved].
 */
export function splitByGroup<E extends { group: string }>(entries: readonly E[], fraction: number, seed: number, salt: string): [E[], E[]] {
  const keep: E[] = [];
  const carve: E[] = [];
  const saltKey = hashString(salt);
  for (const e of entries) {
    const u = unitFloat(hashKey(seed, saltKey, hashString(e.group)));
    (u < fraction ? carve : keep).push(e);
  }
  return [keep, carve];
}

export interface ResolvedOptions {
  size: number;
  seed: number;
  holdoutFraction: number;
  cacheDir: string | undefined;
  warn: (m: string) => void;
  raw: OpenOptions;
}

// Datasets: one interface over the layouts we read (image folders incl. the Kaggle sets, OpenForensics'
// COCO release, FaceForensics++'s release, the synthetic generator). A dataset lists its samples and
// their labels up front (cheap: no pixel is decoded), and decodes one sample on demand.
//
// Failure policy: a layout we cannot recognise, or a missing root, is an error at open time (naming the
// path). A single unreadable image is an UnreadableImageError at get() time, which the loader turns into
// a skipped sample with a warning, so one bad JPEG never ends an epoch.
import { execFile } from "node:child_process";
import { constants as fsConstants, promises as fs, type Dirent } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import {
  cropImage, decodeImage, resizeRgb, toCHWFloat, UnreadableImageError, writeFileAtomic, writePng,
  type Rect, type RgbImage,
} from "./image.js";
import { hashKey, hashString, unitFloat } from "./random.js";
import { SPLITS, SyntheticDeepfakes, type SplitName, type SyntheticOptions } from "./synthetic.js";

export type { SplitName } from "./synthetic.js";
export { SPLITS } from "./synthetic.js";

export interface Sample {
  /** CHW float32 in [0,1], 3 x size x size */
  image: Float32Array;
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
  /** where derived crops/frames are cached; default `<root>/.ticketlab-cache` */
  cacheDir?: string;
  warn?: (message: string) => void;
  synthetic?: Omit<SyntheticOptions, "size" | "seed">;
  openforensics?: {
    /** which test set `test` means (default Test-Dev) */
    testSet?: "Test-Dev" | "Test-Challenge";
    /** crop side = max(w,h) * cropScale (default 1.3) */
    cropScale?: number;
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

/** Picks the crop of a frame (e.g. the largest detected face with a margin). */
export type FaceCropper = (img: RgbImage) => Promise<Rect>;

let faceCropperProvider: (() => Promise<FaceCropper>) | null = null;

/** Registers (or clears) the process-wide source of face croppers for FF++ frames (see OpenOptions). */
export function provideFaceCropper(provider: (() => Promise<FaceCropper>) | null): void {
  faceCropperProvider = provider;
}

const IMAGE_EXT = /\.(jpe?g|png)$/i;

function defaultWarn(message: string): void {
  process.stderr.write(`warning: ${message}\n`);
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isFile();
  } catch {
    return false;
  }
}

async function readDirSafe(p: string): Promise<Dirent[]> {
  try {
    return await fs.readdir(p, { withFileTypes: true });
  } catch {
    return [];
  }
}

async function direntIsDir(parent: string, d: Dirent): Promise<boolean> {
  if (d.isDirectory()) return true;
  if (d.isSymbolicLink()) return isDir(path.join(parent, d.name));
  return false;
}

/** Child directories of `dir` whose lower-cased name is in `names`, in the order of `names`. */
async function findChildDirs(dir: string, names: readonly string[]): Promise<string[]> {
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
class VisitedDirs {
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
async function listImages(dir: string, visited: VisitedDirs): Promise<string[]> {
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

function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// =============================================================================================
// Generic list-backed dataset

interface Entry {
  label: 0 | 1;
  group: string;
  path: string;
}

abstract class ListDataset<E extends Entry> implements Dataset {
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

class FileDataset extends ListDataset<Entry> {
  async get(i: number): Promise<Sample> {
    const e = this.entry(i);
    const img = await decodeImage(e.path);
    return { image: toCHWFloat(img, this.size), label: e.label, path: e.path };
  }
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

// =============================================================================================
// image-folder: <root>/[Dataset/]<split>/<class>/**/*.{jpg,jpeg,png}

const SPLIT_DIR_NAMES: Record<SplitName, readonly string[]> = {
  train: ["train", "training"],
  val: ["validation", "val", "valid"],
  test: ["test", "testing"],
};
const CLASS_DIR_NAMES: Record<"real" | "fake", readonly string[]> = { real: ["real"], fake: ["fake"] };

/**
 * The video a Kaggle frame belongs to: `<video>_<frame>` / `<src>_<tgt>_<frame>` minus the frame number.
 * Files without a trailing frame number are their own group.
 */
export function frameGroup(file: string): string {
  const stem = path.basename(file).replace(/\.[^.]+$/, "");
  const m = /^(.+)_\d+$/.exec(stem);
  return m ? m[1] : stem;
}

async function imageFolderBase(root: string): Promise<string | null> {
  const candidates = [root, ...(await findChildDirs(root, ["dataset"]))];
  for (const c of candidates) {
    const splits = await findChildDirs(c, [...SPLIT_DIR_NAMES.train, ...SPLIT_DIR_NAMES.val, ...SPLIT_DIR_NAMES.test]);
    for (const s of splits) {
      if ((await findChildDirs(s, [...CLASS_DIR_NAMES.real, ...CLASS_DIR_NAMES.fake])).length > 0) return c;
    }
  }
  return null;
}

async function openImageFolder(root: string, base: string, o: ResolvedOptions): Promise<DatasetSplits> {
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
  const mk = (s: SplitName, es: Entry[]): Dataset => new FileDataset(`${name}/${s}`, o.size, es);
  return {
    name, layout: "image-folder", root, size: o.size,
    train: mk("train", train), val: mk("val", found.val ?? []), test: mk("test", found.test ?? []),
  };
}

// =============================================================================================
// OpenForensics (COCO json + Images/<Split>/*.jpg): one sample per face box.

const OF_SPLITS = ["Train", "Val", "Test-Dev", "Test-Challenge"] as const;
type OfSplit = (typeof OF_SPLITS)[number];

/**
 * Square crop of side max(w,h)*scale centred on the box, clipped to the image (so crops at the border are
 * not square; they are stretched to the model size later, as the reference preprocessing does).
 */
export function cropRect(bbox: readonly [number, number, number, number], imgW: number, imgH: number, scale = 1.3): Rect {
  const [x, y, w, h] = bbox;
  const side = Math.max(w, h) * scale;
  const cx = x + w / 2, cy = y + h / 2;
  let left = Math.round(cx - side / 2), top = Math.round(cy - side / 2);
  let right = Math.round(cx + side / 2), bottom = Math.round(cy + side / 2);
  left = Math.min(Math.max(left, 0), imgW - 1);
  top = Math.min(Math.max(top, 0), imgH - 1);
  right = Math.min(Math.max(right, left + 1), imgW);
  bottom = Math.min(Math.max(bottom, top + 1), imgH);
  return { left, top, width: right - left, height: bottom - top };
}

interface OfEntry extends Entry {
  bbox: [number, number, number, number];
  cache: string;
}

interface CocoJson {
  images?: Array<{ id: number | string; file_name: string; width?: number; height?: number }>;
  annotations?: Array<{ id?: number | string; image_id: number | string; category_id: number | string; bbox?: number[]; iscrowd?: number }>;
  categories?: Array<{ id: number | string; name?: string }>;
}

class OpenForensicsDataset extends ListDataset<OfEntry> {
  // Several faces share a photo: keep a few decoded photos (and in-flight decodes) so a photo with k faces
  // is not decoded k times when its faces are requested together (e.g. during cache warm-up).
  private recent = new Map<string, Promise<RgbImage>>();
  private cacheBroken = false;

  constructor(name: string, size: number, entries: readonly OfEntry[], private readonly scale: number,
              private readonly warn: (m: string) => void) {
    super(name, size, entries);
  }

  async get(i: number): Promise<Sample> {
    const e = this.entry(i);
    try {
      const cached = await decodeImage(e.cache);
      if (cached.width === this.size && cached.height === this.size) {
        return { image: toCHWFloat(cached, this.size), label: e.label, path: e.path };
      }
    } catch {
      // not cached yet (or a torn/foreign file): rebuild it below
    }
    const photo = await this.photo(e.path);
    const crop = resizeRgb(cropImage(photo, cropRect(e.bbox, photo.width, photo.height, this.scale)), this.size, this.size);
    if (!this.cacheBroken) {
      await writePng(e.cache, crop).catch((err: unknown) => {
        this.cacheBroken = true;
        this.warn(`cannot write crop cache ${e.cache} (${err instanceof Error ? err.message : String(err)}); continuing without a cache`);
      });
    }
    // Quantised to 8 bits exactly as the cached PNG, so the first epoch sees the same bits as later ones.
    return { image: toCHWFloat(crop, this.size), label: e.label, path: e.path };
  }

  private photo(file: string): Promise<RgbImage> {
    let p = this.recent.get(file);
    if (p) {
      this.recent.delete(file);
      this.recent.set(file, p);
      return p;
    }
    p = decodeImage(file);
    this.recent.set(file, p);
    p.catch(() => this.recent.delete(file));
    while (this.recent.size > 8) {
      const oldest = this.recent.keys().next().value;
      if (oldest === undefined) break;
      this.recent.delete(oldest);
    }
    return p;
  }
}

async function ofAnnotationFile(root: string, split: OfSplit): Promise<string | null> {
  const want = `${split}_poly.json`.toLowerCase();
  for (const e of await readDirSafe(root)) if (e.name.toLowerCase() === want && e.isFile()) return path.join(root, e.name);
  return null;
}

function cocoLabel(catId: number | string, cats: Map<string, string>): 0 | 1 | null {
  const name = cats.get(String(catId));
  if (name !== undefined) {
    if (/fake/i.test(name)) return 1;
    if (/real/i.test(name)) return 0;
  }
  // OpenForensics: 0 = Real, 1 = Fake.
  if (String(catId) === "0") return 0;
  if (String(catId) === "1") return 1;
  return null;
}

async function loadOfSplit(root: string, split: OfSplit, cacheRoot: string, o: ResolvedOptions): Promise<OfEntry[] | null> {
  const jsonPath = await ofAnnotationFile(root, split);
  if (!jsonPath) return null;
  let coco: CocoJson;
  try {
    coco = JSON.parse(await fs.readFile(jsonPath, "utf8")) as CocoJson;
  } catch (e) {
    throw new Error(`cannot read annotations ${jsonPath}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
  }
  const cats = new Map((coco.categories ?? []).map((c) => [String(c.id), c.name ?? ""] as const));
  const images = new Map((coco.images ?? []).map((im) => [String(im.id), im] as const));
  const imgDirs = await findChildDirs(root, ["images"]);
  const splitDir = imgDirs.length ? (await findChildDirs(imgDirs[0], [split.toLowerCase()]))[0] : undefined;
  // file_name may be a bare name (Images/<Split>/<name>) or a path relative to the root; decide once, from
  // the first image, rather than stat'ing every file at open time.
  const first = coco.images?.[0];
  let inSplitDir = splitDir !== undefined;
  if (first && splitDir && !(await isFile(path.join(splitDir, path.basename(first.file_name))))) {
    inSplitDir = !(await isFile(path.join(root, first.file_name)));
  }
  const out: OfEntry[] = [];
  let dropped = 0;
  (coco.annotations ?? []).forEach((a, k) => {
    const im = images.get(String(a.image_id));
    const label = cocoLabel(a.category_id, cats);
    const b = a.bbox;
    if (!im || label === null || !b || b.length < 4 || !(b[2] > 0) || !(b[3] > 0)) {
      dropped++;
      return;
    }
    const file = inSplitDir && splitDir ? path.join(splitDir, path.basename(im.file_name)) : path.join(root, im.file_name);
    const annId = a.id !== undefined ? String(a.id) : `k${k}`;
    out.push({
      label,
      // Faces in one photo are one group: a photo never straddles splits we carve ourselves.
      group: `${split}/${String(a.image_id)}`,
      path: file,
      bbox: [b[0], b[1], b[2], b[3]],
      cache: path.join(cacheRoot, String(o.size), "openforensics", split, `${annId.replace(/[^\w.-]/g, "_")}.png`),
    });
  });
  if (dropped > 0) o.warn(`${jsonPath}: ${dropped} annotations without an image, a box or a Real/Fake category were ignored`);
  return out;
}

async function openOpenForensics(root: string, o: ResolvedOptions): Promise<DatasetSplits> {
  const cacheRoot = o.cacheDir ?? path.join(root, ".ticketlab-cache");
  const scale = o.raw.openforensics?.cropScale ?? 1.3;
  const testSet: OfSplit = o.raw.openforensics?.testSet ?? "Test-Dev";
  const wanted: Record<SplitName, OfSplit> = { train: "Train", val: "Val", test: testSet };
  const lists: Partial<Record<SplitName, OfEntry[]>> = {};
  for (const s of SPLITS) {
    const l = await loadOfSplit(root, wanted[s], cacheRoot, o);
    if (l) lists[s] = l;
  }
  if (!lists.train) throw new Error(`no Train_poly.json in ${root}`);
  let train = lists.train;
  for (const s of ["val", "test"] as const) {
    if (!lists[s]) {
      const [keep, carve] = splitByGroup(train, o.holdoutFraction, o.seed, s);
      o.warn(`${root}: no ${wanted[s]}_poly.json; holding out ${carve.length} of ${train.length} training faces (by photo)`);
      train = keep;
      lists[s] = carve;
    }
  }
  const name = `openforensics:${root}`;
  const mk = (s: SplitName, es: OfEntry[]): Dataset => new OpenForensicsDataset(`${name}/${s}`, o.size, es, scale, o.warn);
  return { name, layout: "openforensics", root, size: o.size, train: mk("train", train), val: mk("val", lists.val ?? []), test: mk("test", lists.test ?? []) };
}

// =============================================================================================
// FaceForensics++: original_sequences / manipulated_sequences, frames from images/ or videos/ (ffmpeg).

interface FfVideo {
  label: 0 | 1;
  /** e.g. original_sequences/youtube/c23/000 or manipulated_sequences/Deepfakes/c23/000_003 */
  rel: string;
  /** video ids whose faces appear in it (target first) */
  ids: string[];
  /** sorted frame images, when extracted frames exist */
  frames: string[] | null;
  video: string | null;
}

interface FfEntry extends Entry {
  video: FfVideo;
  /** which of the N evenly spaced frames */
  k: number;
  n: number;
  cache: string;
}

/** Indices of n evenly spaced items out of total (centres of n equal bins). */
export function evenlySpaced(total: number, n: number): number[] {
  if (total <= 0) return [];
  const m = Math.min(n, total);
  return Array.from({ length: m }, (_, k) => Math.min(total - 1, Math.floor(((k + 0.5) * total) / m)));
}

/** Centre square crop of a frame: the fallback when no face cropper is given. */
export function centreSquare(img: RgbImage): Rect {
  const side = Math.min(img.width, img.height);
  return { left: Math.floor((img.width - side) / 2), top: Math.floor((img.height - side) / 2), width: side, height: side };
}

async function onPath(bin: string): Promise<string | null> {
  if (bin.includes("/")) return (await isExecutable(bin)) ? bin : null;
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, bin);
    if (await isExecutable(p)) return p;
  }
  return null;
}

async function isExecutable(p: string): Promise<boolean> {
  try {
    await fs.access(p, fsConstants.X_OK);
    return (await fs.stat(p)).isFile();
  } catch {
    return false;
  }
}

const execFileP = promisify(execFile);

class FaceForensicsDataset extends ListDataset<FfEntry> {
  // One ffmpeg run extracts all N frames of a video; requests for its frames share it.
  private extracting = new Map<string, Promise<void>>();

  constructor(name: string, size: number, entries: readonly FfEntry[], private readonly ffmpeg: string | null,
              private readonly crop: FaceCropper | null) {
    super(name, size, entries);
  }

  private async square(img: RgbImage): Promise<RgbImage> {
    const r = this.crop ? await this.crop(img) : centreSquare(img);
    return resizeRgb(cropImage(img, r), this.size, this.size);
  }

  async get(i: number): Promise<Sample> {
    const e = this.entry(i);
    const v = e.video;
    if (v.frames) {
      const frames = v.frames;
      const file = frames[evenlySpaced(frames.length, e.n)[e.k] ?? frames.length - 1];
      if (this.crop) {
        // Detection is slow: face crops of extracted frames are cached like video frames.
        const cached = await decodeImage(e.cache).catch(() => null);
        if (cached && cached.width === this.size && cached.height === this.size) return { image: toCHWFloat(cached, this.size), label: e.label, path: file };
        const sq = await this.square(await decodeImage(file));
        await writePng(e.cache, sq);
        return { image: toCHWFloat(sq, this.size), label: e.label, path: file };
      }
      const sq = await this.square(await decodeImage(file));
      return { image: toCHWFloat(sq, this.size), label: e.label, path: file };
    }
    try {
      const cached = await decodeImage(e.cache);
      return { image: toCHWFloat(cached, this.size), label: e.label, path: v.video ?? v.rel };
    } catch {
      // not extracted yet
    }
    await this.extract(e);
    const cached = await decodeImage(e.cache);
    return { image: toCHWFloat(cached, this.size), label: e.label, path: v.video ?? v.rel };
  }

  private extract(e: FfEntry): Promise<void> {
    const v = e.video;
    const key = e.cache;
    const dir = path.dirname(key);
    let p = this.extracting.get(dir);
    if (!p) {
      // Kept once done, so a request that missed the cache just before the last frame landed does not
      // start a second ffmpeg run; dropped on failure so a later epoch may retry.
      p = this.runFfmpeg(v, e.n, dir).catch((err: unknown) => {
        this.extracting.delete(dir);
        throw err;
      });
      this.extracting.set(dir, p);
    }
    return p;
  }

  private async runFfmpeg(v: FfVideo, n: number, outDir: string): Promise<void> {
    const video = v.video ?? v.rel;
    if (!this.ffmpeg || !v.video) throw new UnreadableImageError(video, "no extracted frames and no ffmpeg on PATH");
    const ffprobe = path.join(path.dirname(this.ffmpeg), "ffprobe");
    let total = 0;
    try {
      const { stdout } = await execFileP(ffprobe, ["-v", "error", "-select_streams", "v:0", "-count_packets",
        "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", v.video]);
      total = parseInt(stdout.trim(), 10);
    } catch (err) {
      throw new UnreadableImageError(v.video, `ffprobe failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!(total > 0)) throw new UnreadableImageError(v.video, "video has no frames");
    const idx = evenlySpaced(total, n);
    const tmp = `${outDir}.tmp-${process.pid}`;
    await fs.rm(tmp, { recursive: true, force: true });
    await fs.mkdir(tmp, { recursive: true });
    try {
      const select = idx.map((f) => `eq(n\\,${f})`).join("+");
      await execFileP(this.ffmpeg, ["-v", "error", "-nostdin", "-i", v.video, "-vf", `select='${select}'`,
        "-vsync", "0", path.join(tmp, "%04d.png")], { maxBuffer: 1 << 20 });
      const files = (await readDirSafe(tmp)).map((d) => d.name).filter((f) => f.endsWith(".png")).sort(byteOrder);
      if (files.length === 0) throw new Error("ffmpeg wrote no frames");
      for (let k = 0; k < n; k++) {
        // Fewer frames than asked (short video): reuse the nearest extracted one.
        const src = files[Math.min(files.length - 1, Math.floor((k * files.length) / n))];
        const img = await decodeImage(path.join(tmp, src));
        await writePng(path.join(outDir, `${String(k).padStart(4, "0")}.png`), await this.square(img));
      }
    } catch (err) {
      if (err instanceof UnreadableImageError) throw err;
      throw new UnreadableImageError(v.video, `ffmpeg failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  }
}

async function listVideosIn(dir: string, label: 0 | 1, relBase: string, idsOf: (name: string) => string[]): Promise<FfVideo[]> {
  const byName = new Map<string, FfVideo>();
  const imagesDir = path.join(dir, "images");
  for (const e of await readDirSafe(imagesDir)) {
    if (!(await direntIsDir(imagesDir, e))) continue;
    const frames = (await readDirSafe(path.join(imagesDir, e.name)))
      .filter((f) => IMAGE_EXT.test(f.name)).map((f) => path.join(imagesDir, e.name, f.name)).sort(byteOrder);
    if (frames.length === 0) continue;
    byName.set(e.name, { label, rel: path.join(relBase, e.name), ids: idsOf(e.name), frames, video: null });
  }
  const videosDir = path.join(dir, "videos");
  for (const e of await readDirSafe(videosDir)) {
    if (!/\.(mp4|avi|mov|mkv)$/i.test(e.name)) continue;
    const name = e.name.replace(/\.[^.]+$/, "");
    const prev = byName.get(name);
    if (prev) prev.video = path.join(videosDir, e.name);
    else byName.set(name, { label, rel: path.join(relBase, name), ids: idsOf(name), frames: null, video: path.join(videosDir, e.name) });
  }
  return [...byName.values()].sort((a, b) => byteOrder(a.rel, b.rel));
}

/** youtube: `000` real, `000_003` fake (target 000, source 003). actors: `01__scene`, `01_02__scene__hash`. */
function ffIds(name: string, actors: boolean): string[] {
  if (actors) {
    const m = /^(\d+)(?:_(\d+))?__/.exec(name);
    return m ? ["actor" + m[1], ...(m[2] ? ["actor" + m[2]] : [])] : [name];
  }
  return name.split("_");
}

/** Union-find over video ids: a fake joins its target and source, so identities never straddle splits. */
function groupIds(videos: readonly FfVideo[]): Map<string, string> {
  const parent = new Map<string, string>();
  const find = (x: string): string => {
    let r = x;
    while (parent.get(r) !== r) {
      const p = parent.get(r);
      if (p === undefined) {
        parent.set(r, r);
        break;
      }
      r = p;
    }
    let y = x;
    while (parent.get(y) !== r) {
      const next = parent.get(y) as string;
      parent.set(y, r);
      y = next;
    }
    return r;
  };
  for (const v of videos) {
    for (const id of v.ids) if (!parent.has(id)) parent.set(id, id);
    for (let k = 1; k < v.ids.length; k++) {
      const a = find(v.ids[0]), b = find(v.ids[k]);
      if (a !== b) parent.set(a < b ? b : a, a < b ? a : b);
    }
  }
  const out = new Map<string, string>();
  for (const id of parent.keys()) out.set(id, find(id));
  return out;
}

async function readOfficialSplits(dir: string): Promise<Map<string, SplitName> | null> {
  const map = new Map<string, SplitName>();
  let any = false;
  for (const s of SPLITS) {
    const f = path.join(dir, `${s}.json`);
    if (!(await isFile(f))) continue;
    let pairs: unknown;
    try {
      pairs = JSON.parse(await fs.readFile(f, "utf8"));
    } catch (e) {
      throw new Error(`cannot read split file ${f}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
    }
    if (!Array.isArray(pairs)) throw new Error(`split file ${f} is not a list of [target, source] pairs`);
    any = true;
    for (const p of pairs) {
      if (!Array.isArray(p)) throw new Error(`split file ${f} is not a list of [target, source] pairs`);
      for (const id of p) {
        const prev = map.get(String(id));
        if (prev && prev !== s) throw new Error(`split files in ${dir} put video ${String(id)} in both ${prev} and ${s}`);
        map.set(String(id), s);
      }
    }
  }
  return any ? map : null;
}

type FaceForensicsOptions = NonNullable<OpenOptions["faceforensics"]>;

/** A FaceForensics++ video (or frame folder) with its split and leakage group. */
export interface FaceForensicsVideo extends FfVideo {
  split: SplitName;
  /** identity group: a fake joins its target and source, so identities never straddle splits */
  group: string;
}

/**
 * Lists a FaceForensics++ release: the videos and frame folders of the chosen compression, labelled,
 * split by the official split files (`splits/{train,val,test}.json`) when present, else seeded by identity
 * group in the official 720/140/140 proportions. Videos in no official split are dropped with a warning.
 * Shared by the dataset below and by `ticketlab faces`.
 */
export async function listFaceForensics(root: string, ff: FaceForensicsOptions = {}, seed = 0,
                                        warn: (m: string) => void = defaultWarn): Promise<FaceForensicsVideo[]> {
  const origDir = path.join(root, "original_sequences");
  const manipDir = path.join(root, "manipulated_sequences");
  let comp = ff.compression;
  if (!comp) {
    for (const c of ["c23", "raw", "c40"]) {
      if ((await isDir(path.join(origDir, "youtube", c))) || (await isDir(path.join(manipDir, "Deepfakes", c)))) {
        comp = c;
        break;
      }
    }
    if (!comp) {
      // Any compression folder under any method will do.
      for (const m of await readDirSafe(manipDir)) {
        const cs = (await readDirSafe(path.join(manipDir, m.name))).filter((d) => /^(raw|c\d+)$/.test(d.name));
        if (cs.length) {
          comp = cs[0].name;
          break;
        }
      }
    }
  }
  if (!comp) throw new Error(`no compression folder (raw/c23/c40) under ${root}`);
  const videos: FfVideo[] = [];
  const sources = ff.includeActors ? ["youtube", "actors"] : ["youtube"];
  for (const src of sources) {
    const dir = path.join(origDir, src, comp);
    videos.push(...(await listVideosIn(dir, 0, path.join("original_sequences", src, comp), (nm) => ffIds(nm, src === "actors"))));
  }
  const methodDirs = (await readDirSafe(manipDir)).map((d) => d.name).sort(byteOrder);
  const methods = ff.methods ?? methodDirs.filter((m) => m !== "DeepFakeDetection" || ff.includeActors);
  for (const m of methods) {
    if (!methodDirs.includes(m)) throw new Error(`no manipulation method ${m} in ${manipDir} (have: ${methodDirs.join(", ") || "none"})`);
    const dir = path.join(manipDir, m, comp);
    videos.push(...(await listVideosIn(dir, 1, path.join("manipulated_sequences", m, comp), (nm) => ffIds(nm, m === "DeepFakeDetection"))));
  }
  if (videos.length === 0) throw new Error(`no FaceForensics++ videos or frame folders for ${comp} under ${root}`);
  const official = await readOfficialSplits(ff.splitsDir ?? path.join(root, "splits"));
  const groups = groupIds(videos);
  const byVideoSplit = (v: FfVideo): SplitName | null => {
    if (official && !v.ids[0].startsWith("actor")) {
      const ss = new Set(v.ids.map((id) => official.get(id)));
      if (ss.size !== 1 || ss.has(undefined)) return null;
      return [...ss][0] ?? null;
    }
    // Seeded split by identity group, in the official proportions (720/140/140).
    const g = groups.get(v.ids[0]) ?? v.ids[0];
    const u = unitFloat(hashKey(seed, hashString("ffpp"), hashString(g)));
    return u < 0.72 ? "train" : u < 0.86 ? "val" : "test";
  };
  const out: FaceForensicsVideo[] = [];
  let unassigned = 0;
  for (const v of videos) {
    const split = byVideoSplit(v);
    if (split) out.push({ ...v, split, group: `video:${groups.get(v.ids[0]) ?? v.ids[0]}` });
    else unassigned++;
  }
  if (unassigned > 0) warn(`${root}: ${unassigned} videos are in no official split (or their pair straddles splits); skipped`);
  return out;
}

async function openFaceForensics(root: string, o: ResolvedOptions): Promise<DatasetSplits> {
  const ff = o.raw.faceforensics ?? {};
  const n = ff.framesPerVideo ?? 40;
  if (!Number.isInteger(n) || n < 1) throw new Error(`framesPerVideo must be a positive integer, got ${n}`);
  const cacheRoot = o.cacheDir ?? path.join(root, ".ticketlab-cache");
  const videos = await listFaceForensics(root, ff, o.seed, o.warn);
  const ffmpeg = await onPath(ff.ffmpeg ?? "ffmpeg");
  const crop = ff.crop === "centre" ? null : ff.faceCrop ?? (faceCropperProvider ? await faceCropperProvider() : null);
  if (!crop && ff.crop === "face") o.warn(`${root}: no face detector was provided; FF++ frames are centre-cropped`);
  // Face crops and centre crops are cached apart: switching the crop never reuses the other's frames.
  const frameCache = (v: FfVideo): string => path.join(cacheRoot, String(o.size), crop ? "ffpp-faces" : "ffpp", v.rel);
  const usable: FaceForensicsVideo[] = [];
  for (const v of videos) {
    // Frames decoded on an earlier run stay usable on a machine without ffmpeg.
    if (v.frames || (v.video && ffmpeg)) usable.push(v);
    else if ((await readDirSafe(frameCache(v))).filter((d) => d.name.endsWith(".png")).length >= n) usable.push(v);
  }
  if (usable.length < videos.length) {
    o.warn(`${root}: ${videos.length - usable.length} videos have no extracted frames and ffmpeg is not on PATH; skipped`);
  }
  const lists: Record<SplitName, FfEntry[]> = { train: [], val: [], test: [] };
  for (const v of usable) {
    const count = v.frames ? Math.min(n, v.frames.length) : n;
    for (let k = 0; k < count; k++) {
      lists[v.split].push({
        label: v.label,
        group: v.group,
        path: v.frames ? v.frames[0] : (v.video ?? v.rel),
        video: v,
        k,
        n: count,
        cache: path.join(frameCache(v), `${String(k).padStart(4, "0")}.png`),
      });
    }
  }
  const name = `faceforensics:${root}`;
  const mk = (s: SplitName): Dataset => new FaceForensicsDataset(`${name}/${s}`, o.size, lists[s], ffmpeg, crop);
  return { name, layout: "faceforensics", root, size: o.size, train: mk("train"), val: mk("val"), test: mk("test") };
}

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

// =============================================================================================
// open + detect

interface ResolvedOptions {
  size: number;
  seed: number;
  holdoutFraction: number;
  cacheDir: string | undefined;
  warn: (m: string) => void;
  raw: OpenOptions;
}

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
    cacheDir: opts.cacheDir,
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

// OpenForensics (COCO json + Images/<Split>/*.jpg): one sample per annotated face box, cropped around
// the face the detector finds there ('face', the square FF++ face crops use) or around the annotated box
// at 1.3x ('box'). With the decoded cache (the default) a face's bytes are kept in shards keyed by its
// photo, its annotation and box, the crop mode and scale; a photo is decoded once for all its faces (on
// the decode pool in box mode). With --no-cache, crops are cached as PNGs per mode as before. Part of
// data/datasets.ts, which opens it.
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { cropImage, cropRect, decodeImage, imageSize, resizeRgb, toCHWBytes, UnreadableImageError, writePng, type Rect, type RgbImage } from "./image.js";
import { CachedDecoder, cacheDefaults, cropCacheName, openShardCache, pixelSample, RESIZE_METHOD, unchangedSince, type PixelDataset } from "./decoded.js";
import { decodePool } from "./decode-pool.js";
import { SPLITS, type SplitName } from "./synthetic.js";
import {
  type Dataset,
  type DetectedFace,
  type FaceCropper,
  type DatasetSplits,
  type Entry,
  ListDataset,
  type ResolvedOptions,
  type Sample,
  faceCropperFor,
  findChildDirs,
  isFile,
  readDirSafe,
  splitByGroup,
} from "./dataset-base.js";

export { cropRect } from "./image.js";

export const OF_SPLITS = ["Train", "Val", "Test-Dev", "Test-Challenge"] as const;
export type OfSplit = (typeof OF_SPLITS)[number];

/** IoU of two [x, y, w, h] boxes. */
export function boxIoU(a: readonly [number, number, number, number], b: readonly [number, number, number, number]): number {
  const iw = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
  const ih = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
  if (!(iw > 0) || !(ih > 0)) return 0;
  const inter = iw * ih;
  return inter / (a[2] * a[3] + b[2] * b[3] - inter);
}

/**
 * Matches detections to annotation boxes: pairs at IoU >= minIoU, greedily by IoU (highest first), each
 * detection and each annotation used once. Returns, per annotation, the index of its detection or -1.
 */
export function matchDetections(annotations: ReadonlyArray<readonly [number, number, number, number]>,
                                detections: ReadonlyArray<readonly [number, number, number, number]>, minIoU = 0.5): number[] {
  const pairs: Array<[number, number, number]> = [];
  annotations.forEach((a, i) => detections.forEach((d, j) => {
    const iou = boxIoU(a, d);
    if (iou >= minIoU) pairs.push([iou, i, j]);
  }));
  pairs.sort((p, q) => q[0] - p[0] || p[1] - q[1] || p[2] - q[2]);
  const out = annotations.map(() => -1);
  const used = new Set<number>();
  for (const [, i, j] of pairs) {
    if (out[i] !== -1 || used.has(j)) continue;
    out[i] = j;
    used.add(j);
  }
  return out;
}

export interface OfEntry extends Entry {
  bbox: [number, number, number, number];
  /** the annotation's id (its index in the json when it has none) */
  ann: string;
  /** its PNG crop (the crop cache used with --no-cache) */
  cache: string;
}

export interface CocoJson {
  images?: Array<{ id: number | string; file_name: string; width?: number; height?: number }>;
  annotations?: Array<{ id?: number | string; image_id: number | string; category_id: number | string; bbox?: number[]; iscrowd?: number }>;
  categories?: Array<{ id: number | string; name?: string }>;
}

/** The bytes of one face of a photo, and whether face mode fell back to its annotation box. */
interface FaceBytes {
  pixels: Uint8Array;
  fallback: boolean;
}

export class OpenForensicsDataset extends ListDataset<OfEntry> implements PixelDataset {
  // Several faces share a photo: keep a few decoded photos (and in-flight decodes) so a photo with k faces
  // is not decoded k times when its faces are requested together (e.g. during cache warm-up).
  private recent = new Map<string, Promise<RgbImage>>();
  // Face mode: the detector runs once per photo; its match of every annotation of that photo is kept
  // for the photo's other faces (same LRU bound as the photos).
  private matches = new Map<string, Promise<Map<number, Rect | null>>>();
  // With the decoded cache: one pass per photo makes the bytes of all its faces and caches them.
  private passes = new Map<string, Promise<Map<number, FaceBytes>>>();
  private readonly byPhoto = new Map<string, number[]>();
  private readonly seen = new Set<number>();
  private readonly fallbacks = new Set<number>();
  // Faces this process's photo passes put in the cache (`prepare` counts them as decoded now).
  private readonly madeHere = new Set<number>();
  private reported = false;
  private cacheBroken = false;
  private scratch: Uint8Array | null = null;

  /** `faces`: the detector's face list in face mode, null in box mode. */
  constructor(name: string, size: number, entries: readonly OfEntry[], private readonly scale: number,
              private readonly warn: (m: string) => void,
              private readonly faces: FaceCropper["faces"] | null,
              private readonly decoder: CachedDecoder) {
    super(name, size, entries);
    entries.forEach((e, i) => {
      const l = this.byPhoto.get(e.path);
      if (l) l.push(i);
      else this.byPhoto.set(e.path, [i]);
    });
  }

  get cache(): PixelDataset["cache"] {
    return this.decoder.cache;
  }

  /** Annotations (of those loaded so far) that no detection matched and were cropped to their box. */
  fallbackCount(): number {
    return this.fallbacks.size;
  }

  /**
   * Which of its photo's cache entries face i is: its annotation and box, and in face mode whether it
   * holds the detector's crop or the box fallback (so a hit still counts the fallbacks). The crop mode and
   * scale are in the cache's configuration.
   */
  private detail(i: number, fallback: boolean): string {
    const e = this.entry(i);
    return `ann=${e.ann};bbox=${e.bbox.join(",")};${this.faces ? (fallback ? "face-fallback-box" : "face") : "box"}`;
  }

  readCachedInto(i: number, out: Uint8Array, at: number): boolean {
    const file = this.entry(i).path;
    const first = this.fallbacks.has(i);
    for (const fallback of this.faces ? [first, !first] : [false]) {
      if (this.decoder.readCached(file, out, at, this.detail(i, fallback))) {
        this.counted(i, fallback);
        return true;
      }
    }
    return false;
  }

  async getPixelsInto(i: number, out: Uint8Array, at: number): Promise<void> {
    if (this.readCachedInto(i, out, at)) return;
    try {
      if (this.decoder.cache) {
        const f = (await this.photoPass(this.entry(i).path)).get(i);
        if (!f) throw new Error(`${this.name}: face ${i} missing from its photo's pass`);
        if (f instanceof UnreadableImageError) throw f;
        out.set(f.pixels, at);
      } else {
        toCHWBytes(await this.load(i, this.entry(i)), this.size, out.subarray(at, at + 3 * this.size * this.size));
      }
    } finally {
      this.seen.add(i);
      this.report();
    }
  }

  async ensureCached(i: number): Promise<"cached" | "decoded"> {
    if (!this.decoder.cache) throw new Error(`no decoded cache to fill for ${this.entry(i).path} (--no-cache)`);
    this.scratch ??= new Uint8Array(3 * this.size * this.size);
    if (this.readCachedInto(i, this.scratch, 0)) return this.madeHere.has(i) ? "decoded" : "cached";
    await this.getPixelsInto(i, this.scratch, 0);
    return "decoded";
  }

  flushCache(): Promise<void> {
    return this.decoder.flush();
  }

  get(i: number): Promise<Sample> {
    const e = this.entry(i);
    return pixelSample(this, i, e.label, e.path);
  }

  private counted(i: number, fallback: boolean): void {
    if (fallback) this.fallbacks.add(i);
    else this.fallbacks.delete(i);
    this.seen.add(i);
    this.report();
  }

  /**
   * Decodes a photo once for all its faces, crops and resizes each (box mode: on the decode pool;
   * face mode: on this thread, after the detector), and puts every face in the decoded cache. A photo
   * that changes while it is read is an unreadable sample this time (nothing of it is cached); a face
   * whose box lies outside its photo is an unreadable sample of its own (offImage).
   */
  private photoPass(file: string): Promise<Map<number, FaceBytes | UnreadableImageError>> {
    const idx = this.byPhoto.get(file) ?? [];
    const before = this.decoder.sourceOf(file, idx.flatMap((j) => [this.detail(j, false), this.detail(j, true)]));
    // Passes, photos and detections are remembered by the photo's identity, so a photo rewritten
    // since an earlier pass of this process is read again, never served from that pass.
    const id = `${file}\0${before.bytes}\0${before.mtimeMs}`;
    return recentPromise(this.passes, id, async () => {
      const per = 3 * this.size * this.size;
      const got = new Map<number, FaceBytes | UnreadableImageError>();
      const { width, height } = this.faces ? await this.photo(file, id) : await imageSize(file);
      const inside = idx.filter((j) => {
        const bad = offImage(this.entry(j), width, height);
        if (bad) got.set(j, bad);
        return !bad;
      });
      if (this.faces) {
        const photo = await this.photo(file, id);
        const matched = await this.match(file, photo, id);
        for (const j of inside) {
          const m = matched.get(j) ?? null;
          const rect = m ?? cropRect(this.entry(j).bbox, photo.width, photo.height, this.scale);
          got.set(j, { pixels: toCHWBytes(photo, this.size, undefined, rect), fallback: !m });
        }
      } else if (inside.length) {
        const all = await decodePool().decode(file, this.size, inside.map((j) => ({ box: this.entry(j).bbox, scale: this.scale })));
        inside.forEach((j, k) => got.set(j, { pixels: all.subarray(k * per, (k + 1) * per), fallback: false }));
      }
      const made = inside.map((j) => [j, got.get(j) as FaceBytes] as const);
      this.decoder.addMany(file, before, made.map(([j, f]) => ({ detail: this.detail(j, f.fallback), pixels: f.pixels })));
      for (const [j, f] of made) {
        if (this.faces) this.counted(j, f.fallback);
        this.madeHere.add(j);
      }
      return got;
    });
  }

  /**
   * Without the decoded cache: face i's crop at the training size, through the PNG crop cache. A crop's
   * name holds a hash of its photo's identity and its annotation and box (cropCacheName), so a photo or
   * box changed since it was cropped is cropped afresh; a photo that changes while it is read is not cached.
   */
  private async load(i: number, e: OfEntry): Promise<RgbImage> {
    const before = this.decoder.sourceOf(e.path, []);
    const id = `${e.path}\0${before.bytes}\0${before.mtimeMs}`;
    const own = e.cache.replace(/\.png$/, `-${cropCacheName(before, `ann=${e.ann};bbox=${e.bbox.join(",")}`)}.png`);
    // Face mode caches an annotation that fell back to its box as <name>.box.png, so later runs count it too.
    const fallbackCache = own.replace(/\.png$/, ".box.png");
    for (const file of this.faces ? [own, fallbackCache] : [own]) {
      try {
        const cached = await decodeImage(file);
        if (cached.width === this.size && cached.height === this.size) {
          if (file === fallbackCache) this.fallbacks.add(i);
          return cached;
        }
      } catch {
        // not cached yet (or a torn/foreign file): rebuild it below
      }
    }
    const photo = await this.photo(e.path, id);
    const bad = offImage(e, photo.width, photo.height);
    if (bad) throw bad;
    const matched = this.faces ? (await this.match(e.path, photo, id)).get(i) ?? null : null;
    if (this.faces && !matched) this.fallbacks.add(i);
    const rect = matched ?? cropRect(e.bbox, photo.width, photo.height, this.scale);
    const crop = resizeRgb(cropImage(photo, rect), this.size, this.size);
    if (!this.cacheBroken && unchangedSince(e.path, before)) {
      await writePng(this.faces && !matched ? fallbackCache : own, crop).catch((err: unknown) => {
        this.cacheBroken = true;
        this.warn(`cannot write crop cache ${own} (${err instanceof Error ? err.message : String(err)}); continuing without a cache`);
      });
    }
    return crop;
  }

  /** Once every sample has been requested: one warning with the number of box fallbacks. */
  private report(): void {
    if (this.reported || this.seen.size < this.length()) return;
    this.reported = true;
    if (this.fallbacks.size > 0) {
      this.warn(`${this.name}: ${this.fallbacks.size} of ${this.length()} annotated faces matched no detected face (IoU >= 0.5); cropped to their annotation boxes instead`);
    }
  }

  private match(file: string, photo: RgbImage, key = file): Promise<Map<number, Rect | null>> {
    const faces = this.faces!;
    return recentPromise(this.matches, key, () =>
      faces(photo).then((dets: DetectedFace[]) => {
        const idx = this.byPhoto.get(file) ?? [];
        const m = matchDetections(idx.map((k) => this.entry(k).bbox), dets.map((d) => [d.box.x, d.box.y, d.box.width, d.box.height] as const));
        return new Map(idx.map((k, n) => [k, m[n] >= 0 ? dets[m[n]].crop : null] as const));
      }),
    );
  }

  private photo(file: string, key = file): Promise<RgbImage> {
    return recentPromise(this.recent, key, () => decodeImage(file));
  }
}

/** A face whose annotated box does not overlap its photo (cropRect would clamp it to an edge's pixels), named. */
function offImage(e: OfEntry, width: number, height: number): UnreadableImageError | null {
  const [x, y, w, h] = e.bbox;
  if (x < width && y < height && x + w > 0 && y + h > 0) return null;
  return new UnreadableImageError(e.path, `annotation ${e.ann}: box [${e.bbox.join(", ")}] lies outside the ${width}x${height} image`);
}

/** One promise per key, the `bound` most recently used kept; a rejected one is forgotten (retried). */
function recentPromise<T>(cache: Map<string, Promise<T>>, key: string, make: () => Promise<T>, bound = 8): Promise<T> {
  const p = cache.get(key);
  if (p) {
    cache.delete(key);
    cache.set(key, p);
    return p;
  }
  const made = make();
  cache.set(key, made);
  made.catch(() => {
    if (cache.get(key) === made) cache.delete(key);
  });
  while (cache.size > bound) {
    const oldest = cache.keys().next().value;
    if (oldest === undefined) break;
    cache.delete(oldest);
  }
  return made;
}

export async function ofAnnotationFile(root: string, split: OfSplit): Promise<string | null> {
  const want = `${split}_poly.json`.toLowerCase();
  for (const e of await readDirSafe(root)) if (e.name.toLowerCase() === want && e.isFile()) return path.join(root, e.name);
  return null;
}

export function cocoLabel(catId: number | string, cats: ReadonlyMap<string, string>): 0 | 1 | null {
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

type Box = [number, number, number, number];
type CocoImage = NonNullable<CocoJson["images"]>[number];

const isId = (v: unknown): v is number | string => (typeof v === "number" && Number.isFinite(v)) || (typeof v === "string" && v !== "");
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const what = (v: unknown): string => (v === null ? "null" : Array.isArray(v) ? "a list" : typeof v);

/** A COCO list field: absent is empty; anything but a list makes the whole file unusable (one line naming it). */
function listField(coco: Record<string, unknown>, key: string, jsonPath: string): unknown[] {
  const v = coco[key];
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new Error(`annotations ${jsonPath}: "${key}" is ${what(v)}, not a list`);
  return v;
}

/** Why images[k] cannot be used, or null. */
function imageProblem(im: unknown): string | null {
  if (!isRecord(im)) return `is ${what(im)}, not an object`;
  if (!isId(im.id)) return `has no usable id (${JSON.stringify(im.id) ?? "missing"})`;
  if (typeof im.file_name !== "string" || im.file_name === "") return `has no file_name string`;
  return null;
}

/** Why annotations[k] cannot be used (its box: four finite numbers, positive width and height), or null. */
function annotationProblem(a: unknown, images: ReadonlyMap<string, CocoImage>, cats: ReadonlyMap<string, string>): string | null {
  if (!isRecord(a)) return `is ${what(a)}, not an object`;
  if (!isId(a.image_id)) return `has no usable image_id`;
  if (!images.has(String(a.image_id))) return `names image ${String(a.image_id)}, which is not in "images"`;
  if (!isId(a.category_id) || cocoLabel(a.category_id, cats) === null) return `has no Real/Fake category_id`;
  const b = a.bbox;
  if (!Array.isArray(b) || b.length < 4 || !b.slice(0, 4).every((v) => typeof v === "number" && Number.isFinite(v))) return `has no bbox of four numbers`;
  if (!(b[2] > 0 && b[3] > 0)) return `has a box of width or height <= 0`;
  return null;
}

/**
 * Reads one split's COCO annotations. A file that is not JSON, or whose top level, "images" or
 * "annotations" has the wrong shape, is a one-line error naming it; single images and annotations that
 * cannot be used are left out with one warning line each kind, naming the first (boxes outside their
 * photo are found when the photo is read: see offImage).
 */
export async function loadOfSplit(root: string, split: OfSplit, cacheRoot: string, o: ResolvedOptions,
                                  cacheDir = "openforensics"): Promise<OfEntry[] | null> {
  const jsonPath = await ofAnnotationFile(root, split);
  if (!jsonPath) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(await fs.readFile(jsonPath, "utf8"));
  } catch (e) {
    throw new Error(`cannot read annotations ${jsonPath}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
  }
  if (!isRecord(parsed)) throw new Error(`annotations ${jsonPath}: the top level is ${what(parsed)}, not a COCO object`);
  const cats = new Map<string, string>();
  for (const c of listField(parsed, "categories", jsonPath)) {
    if (isRecord(c) && isId(c.id)) cats.set(String(c.id), typeof c.name === "string" ? c.name : "");
  }
  const images = new Map<string, CocoImage>();
  const badImages: string[] = [];
  listField(parsed, "images", jsonPath).forEach((im, k) => {
    const why = imageProblem(im);
    if (why) badImages.push(`images[${k}] ${why}`);
    else images.set(String((im as CocoImage).id), im as CocoImage);
  });
  if (badImages.length > 0) o.warn(`${jsonPath}: ${badImages.length} images were ignored (first: ${badImages[0]})`);
  const imgDirs = await findChildDirs(root, ["images"]);
  const splitDir = imgDirs.length ? (await findChildDirs(imgDirs[0], [split.toLowerCase()]))[0] : undefined;
  // file_name may be a bare name (Images/<Split>/<name>) or a path relative to the root; decide once, from
  // the first image, rather than stat'ing every file at open time.
  const first = images.values().next().value;
  let inSplitDir = splitDir !== undefined;
  if (first && splitDir && !(await isFile(path.join(splitDir, path.basename(first.file_name))))) {
    inSplitDir = !(await isFile(path.join(root, first.file_name)));
  }
  const out: OfEntry[] = [];
  const dropped: string[] = [];
  listField(parsed, "annotations", jsonPath).forEach((a, k) => {
    const why = annotationProblem(a, images, cats);
    const ref = isRecord(a) && isId(a.id) ? `annotation ${String(a.id)}` : `annotations[${k}]`;
    if (why) {
      dropped.push(`${ref} ${why}`);
      return;
    }
    const ann = a as { id?: number | string; image_id: number | string; category_id: number | string; bbox: number[] };
    const im = images.get(String(ann.image_id)) as CocoImage;
    const b = ann.bbox;
    const file = inSplitDir && splitDir ? path.join(splitDir, path.basename(im.file_name)) : path.join(root, im.file_name);
    const annId = isId(ann.id) ? String(ann.id) : `k${k}`;
    out.push({
      label: cocoLabel(ann.category_id, cats) as 0 | 1,
      // Faces in one photo are one group: a photo never straddles splits we carve ourselves.
      group: `${split}/${String(ann.image_id)}`,
      path: file,
      bbox: [b[0], b[1], b[2], b[3]] as Box,
      ann: annId,
      cache: path.join(cacheRoot, String(o.size), cacheDir, split, `${annId.replace(/[^\w.-]/g, "_")}.png`),
    });
  });
  if (dropped.length > 0) o.warn(`${jsonPath}: ${dropped.length} annotations without an image, a box or a Real/Fake category were ignored (first: ${dropped[0]})`);
  return out;
}

export async function openOpenForensics(root: string, o: ResolvedOptions): Promise<DatasetSplits> {
  const cacheRoot = o.cacheDir ?? path.join(root, ".ticketlab-cache");
  const scale = o.raw.openforensics?.cropScale ?? 1.3;
  const testSet: OfSplit = o.raw.openforensics?.testSet ?? "Test-Dev";
  // Without a detector (library use, and the defaults of earlier versions): the annotated boxes.
  const cropper = await faceCropperFor(o, o.raw.openforensics, {
    name: "an OpenForensics release", root, modes: ["face", "box"], needsFaces: true,
    fallback: "OpenForensics faces are cropped to their annotation boxes",
  });
  const list = cropper?.faces;
  const faces: FaceCropper["faces"] | null = list ? (img: RgbImage) => list.call(cropper, img) : null;
  // Detector crops and box crops are cached apart: switching the mode never reuses the other's crops.
  const cacheDir = faces ? "openforensics-faces" : "openforensics";
  const wanted: Record<SplitName, OfSplit> = { train: "Train", val: "Val", test: testSet };
  const lists: Partial<Record<SplitName, OfEntry[]>> = {};
  for (const s of SPLITS) {
    const l = await loadOfSplit(root, wanted[s], cacheRoot, o, cacheDir);
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
  // Decoded shards: an entry is keyed by its photo (path, size, mtime) and its annotation and box (the
  // sample detail); the crop mode and scale are in the configuration. The face detector is the one
  // ticketlab ships (its weights are part of the package version), as for FaceForensics++.
  const shards = (o.raw.decodedCache ?? cacheDefaults().decoded) === false ? null
    : openShardCache(cacheRoot, { size: o.size, pipeline: `openforensics;crop=${faces ? "face" : "box"};scale=${scale};${RESIZE_METHOD}` }, o.warn);
  const decoder = new CachedDecoder(shards, root, o.size, o.warn);
  const mk = (s: SplitName, es: OfEntry[]): Dataset => new OpenForensicsDataset(`${name}/${s}`, o.size, es, scale, o.warn, faces, decoder);
  return { name, layout: "openforensics", root, size: o.size, train: mk("train", train), val: mk("val", lists.val ?? []), test: mk("test", lists.test ?? []) };
}

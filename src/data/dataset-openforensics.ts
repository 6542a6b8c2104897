// OpenForensics (COCO json + Images/<Split>/*.jpg): one sample per annotated face box, cropped around
// the face the detector finds there ('face', the square FF++ face crops use) or around the annotated box
// at 1.3x ('box'), and cached per mode on first use. Part of data/datasets.ts, which opens it.
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { cropImage, decodeImage, resizeRgb, toCHWFloat, writePng, type Rect, type RgbImage } from "./image.js";
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

export const OF_SPLITS = ["Train", "Val", "Test-Dev", "Test-Challenge"] as const;
export type OfSplit = (typeof OF_SPLITS)[number];

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
  cache: string;
}

export interface CocoJson {
  images?: Array<{ id: number | string; file_name: string; width?: number; height?: number }>;
  annotations?: Array<{ id?: number | string; image_id: number | string; category_id: number | string; bbox?: number[]; iscrowd?: number }>;
  categories?: Array<{ id: number | string; name?: string }>;
}

export class OpenForensicsDataset extends ListDataset<OfEntry> {
  // Several faces share a photo: keep a few decoded photos (and in-flight decodes) so a photo with k faces
  // is not decoded k times when its faces are requested together (e.g. during cache warm-up).
  private recent = new Map<string, Promise<RgbImage>>();
  // Face mode: the detector runs once per photo; its match of every annotation of that photo is kept
  // for the photo's other faces (same LRU bound as the photos).
  private matches = new Map<string, Promise<Map<number, Rect | null>>>();
  private readonly byPhoto = new Map<string, number[]>();
  private readonly seen = new Set<number>();
  private readonly fallbacks = new Set<number>();
  private reported = false;
  private cacheBroken = false;

  /** `faces`: the detector's face list in face mode, null in box mode. */
  constructor(name: string, size: number, entries: readonly OfEntry[], private readonly scale: number,
              private readonly warn: (m: string) => void,
              private readonly faces: FaceCropper["faces"] | null = null) {
    super(name, size, entries);
    entries.forEach((e, i) => {
      const l = this.byPhoto.get(e.path);
      if (l) l.push(i);
      else this.byPhoto.set(e.path, [i]);
    });
  }

  /** Annotations (of those loaded so far) that no detection matched and were cropped to their box. */
  fallbackCount(): number {
    return this.fallbacks.size;
  }

  async get(i: number): Promise<Sample> {
    const e = this.entry(i);
    try {
      return await this.load(i, e);
    } finally {
      this.seen.add(i);
      this.report();
    }
  }

  private async load(i: number, e: OfEntry): Promise<Sample> {
    // Face mode caches an annotation that fell back to its box as <id>.box.png, so later runs count it too.
    const fallbackCache = e.cache.replace(/\.png$/, ".box.png");
    for (const file of this.faces ? [e.cache, fallbackCache] : [e.cache]) {
      try {
        const cached = await decodeImage(file);
        if (cached.width === this.size && cached.height === this.size) {
          if (file === fallbackCache) this.fallbacks.add(i);
          return { image: toCHWFloat(cached, this.size), label: e.label, path: e.path };
        }
      } catch {
        // not cached yet (or a torn/foreign file): rebuild it below
      }
    }
    const photo = await this.photo(e.path);
    const matched = this.faces ? (await this.match(e.path, photo)).get(i) ?? null : null;
    if (this.faces && !matched) this.fallbacks.add(i);
    const rect = matched ?? cropRect(e.bbox, photo.width, photo.height, this.scale);
    const crop = resizeRgb(cropImage(photo, rect), this.size, this.size);
    if (!this.cacheBroken) {
      await writePng(this.faces && !matched ? fallbackCache : e.cache, crop).catch((err: unknown) => {
        this.cacheBroken = true;
        this.warn(`cannot write crop cache ${e.cache} (${err instanceof Error ? err.message : String(err)}); continuing without a cache`);
      });
    }
    // Quantised to 8 bits exactly as the cached PNG, so the first epoch sees the same bits as later ones.
    return { image: toCHWFloat(crop, this.size), label: e.label, path: e.path };
  }

  /** Once every sample has been requested: one warning with the number of box fallbacks. */
  private report(): void {
    if (this.reported || this.seen.size < this.length()) return;
    this.reported = true;
    if (this.fallbacks.size > 0) {
      this.warn(`${this.name}: ${this.fallbacks.size} of ${this.length()} annotated faces matched no detected face (IoU >= 0.5); cropped to their annotation boxes instead`);
    }
  }

  private match(file: string, photo: RgbImage): Promise<Map<number, Rect | null>> {
    const faces = this.faces!;
    return recentPromise(this.matches, file, () =>
      faces(photo).then((dets: DetectedFace[]) => {
        const idx = this.byPhoto.get(file) ?? [];
        const m = matchDetections(idx.map((k) => this.entry(k).bbox), dets.map((d) => [d.box.x, d.box.y, d.box.width, d.box.height] as const));
        return new Map(idx.map((k, n) => [k, m[n] >= 0 ? dets[m[n]].crop : null] as const));
      }),
    );
  }

  private photo(file: string): Promise<RgbImage> {
    return recentPromise(this.recent, file, () => decodeImage(file));
  }
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

export function cocoLabel(catId: number | string, cats: Map<string, string>): 0 | 1 | null {
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

export async function loadOfSplit(root: string, split: OfSplit, cacheRoot: string, o: ResolvedOptions,
                                  cacheDir = "openforensics"): Promise<OfEntry[] | null> {
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
      cache: path.join(cacheRoot, String(o.size), cacheDir, split, `${annId.replace(/[^\w.-]/g, "_")}.png`),
    });
  });
  if (dropped > 0) o.warn(`${jsonPath}: ${dropped} annotations without an image, a box or a Real/Fake category were ignored`);
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
  const mk = (s: SplitName, es: OfEntry[]): Dataset => new OpenForensicsDataset(`${name}/${s}`, o.size, es, scale, o.warn, faces);
  return { name, layout: "openforensics", root, size: o.size, train: mk("train", train), val: mk("val", lists.val ?? []), test: mk("test", lists.test ?? []) };
}

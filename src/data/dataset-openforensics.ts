// OpenForensics (COCO json + Images/<Split>/*.jpg): one sample per annotated face box, cropped at 1.3x
// the box and cached on first use. Part of data/datasets.ts, which opens it.
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { cropImage, decodeImage, resizeRgb, toCHWFloat, writePng, type Rect, type RgbImage } from "./image.js";
import { SPLITS, type SplitName } from "./synthetic.js";
import {
  type Dataset,
  type DatasetSplits,
  type Entry,
  ListDataset,
  type ResolvedOptions,
  type Sample,
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

export async function loadOfSplit(root: string, split: OfSplit, cacheRoot: string, o: ResolvedOptions): Promise<OfEntry[] | null> {
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

export async function openOpenForensics(root: string, o: ResolvedOptions): Promise<DatasetSplits> {
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

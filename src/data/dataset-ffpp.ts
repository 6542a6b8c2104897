// FaceForensics++: original_sequences / manipulated_sequences, frames from images/ or videos/ (ffmpeg),
// split by video with the official split files; face crops through an injected cropper. Part of
// data/datasets.ts, which opens it.
import { execFile } from "node:child_process";
import { constants as fsConstants, promises as fs } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { cropImage, decodeImage, resizeRgb, toCHWBytes, UnreadableImageError, writePng, type Rect, type RgbImage } from "./image.js";
import { CachedDecoder, cacheDefaults, cropCacheName, openShardCache, pixelSample, RESIZE_METHOD, unchangedSince, type PixelDataset } from "./decoded.js";
import { hashKey, hashString, unitFloat } from "./random.js";
import { statSource, type SourceId } from "./shard-cache.js";
import { SPLITS, type SplitName } from "./synthetic.js";
import {
  type Dataset,
  type DatasetSplits,
  type Entry,
  type FaceCropper,
  IMAGE_EXT,
  ListDataset,
  type OpenOptions,
  type ResolvedOptions,
  type Sample,
  byteOrder,
  defaultWarn,
  direntIsDir,
  cropMode,
  faceCropperFor,
  type CropLayout,
  isDir,
  isFile,
  readDirSafe,
} from "./dataset-base.js";

export interface FfVideo {
  label: 0 | 1;
  /** e.g. original_sequences/youtube/c23/000 or manipulated_sequences/Deepfakes/c23/000_003 */
  rel: string;
  /** video ids whose faces appear in it (target first) */
  ids: string[];
  /** sorted frame images, when extracted frames exist */
  frames: string[] | null;
  video: string | null;
}

export interface FfEntry extends Entry {
  video: FfVideo;
  /** which of the N evenly spaced frames */
  k: number;
  n: number;
  /** the video's PNG crop cache folder (crop mode and size in its path; see cropCacheName) */
  cropDir: string;
}

/** Where a video's extracted (and cropped) frames are cached while it has the identity `src`. */
function videoCropDir(cropDir: string, src: SourceId, n: number): string {
  return path.join(cropDir, cropCacheName(src, `n=${n}`));
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

export async function onPath(bin: string): Promise<string | null> {
  if (bin.includes("/")) return (await isExecutable(bin)) ? bin : null;
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, bin);
    if (await isExecutable(p)) return p;
  }
  return null;
}

export async function isExecutable(p: string): Promise<boolean> {
  try {
    await fs.access(p, fsConstants.X_OK);
    return (await fs.stat(p)).isFile();
  } catch {
    return false;
  }
}

export const execFileP = promisify(execFile);

export class FaceForensicsDataset extends ListDataset<FfEntry> implements PixelDataset {
  // One ffmpeg run extracts all N frames of a video; requests for its frames share it.
  private extracting = new Map<string, Promise<void>>();

  constructor(name: string, size: number, entries: readonly FfEntry[], private readonly ffmpeg: string | null,
              private readonly crop: FaceCropper | null, private readonly decoder: CachedDecoder) {
    super(name, size, entries);
  }

  private async square(img: RgbImage): Promise<RgbImage> {
    const r = this.crop ? await this.crop(img) : centreSquare(img);
    return resizeRgb(cropImage(img, r), this.size, this.size);
  }

  get cache(): PixelDataset["cache"] {
    return this.decoder.cache;
  }

  /** The file sample i comes from (a frame image, the video, or its extracted frame) and which of its samples it is. */
  private source(i: number): { file: string; detail: string; path: string } {
    const e = this.entry(i);
    const v = e.video;
    const detail = `${e.k}/${e.n}`;
    if (v.frames) {
      const file = v.frames[evenlySpaced(v.frames.length, e.n)[e.k] ?? v.frames.length - 1];
      return { file, detail, path: file };
    }
    const video = this.videoFile(v);
    return { file: video, detail, path: video };
  }

  /** A video entry's file (listVideosIn gives every entry without frames a video). */
  private videoFile(v: FfVideo): string {
    return v.video ?? path.join(this.decoder.root, v.rel);
  }

  async getPixelsInto(i: number, out: Uint8Array, at: number): Promise<void> {
    const s = this.source(i);
    await this.decoder.read(s.file, out, at, { detail: s.detail, produce: async () => toCHWBytes(await this.cropAtSize(i), this.size) });
  }

  readCachedInto(i: number, out: Uint8Array, at: number): boolean {
    const s = this.source(i);
    return this.decoder.readCached(s.file, out, at, s.detail);
  }

  ensureCached(i: number): Promise<"cached" | "decoded"> {
    const s = this.source(i);
    return this.decoder.ensure(s.file, { detail: s.detail, produce: async () => toCHWBytes(await this.cropAtSize(i), this.size) });
  }

  flushCache(): Promise<void> {
    return this.decoder.flush();
  }

  get(i: number): Promise<Sample> {
    return pixelSample(this, i, this.entry(i).label, this.source(i).path);
  }

  /**
   * Sample i's crop at the training size (decoding, extracting and detecting as needed). Crops are
   * cached as PNGs named by their source's identity (cropCacheName), so a changed source is cropped
   * afresh; a crop made from a source that changed while it was read is not cached.
   */
  private async cropAtSize(i: number): Promise<RgbImage> {
    const e = this.entry(i);
    const v = e.video;
    if (v.frames) {
      const frames = v.frames;
      const file = frames[evenlySpaced(frames.length, e.n)[e.k] ?? frames.length - 1];
      if (!this.crop) return this.square(await decodeImage(file));
      // Detection is slow: face crops of extracted frames are cached like video frames.
      const before = this.decoder.sourceOf(file, []);
      const png = path.join(e.cropDir, `${path.parse(file).name}-${cropCacheName(before)}.png`);
      const cached = await decodeImage(png).catch(() => null);
      if (cached && cached.width === this.size && cached.height === this.size) return cached;
      const sq = await this.square(await decodeImage(file));
      if (unchangedSince(file, before)) await writePng(png, sq);
      return sq;
    }
    const dir = videoCropDir(e.cropDir, this.decoder.sourceOf(this.videoFile(v), []), e.n);
    const png = path.join(dir, `${String(e.k).padStart(4, "0")}.png`);
    const cached = await decodeImage(png).catch(() => null);
    if (cached) return cached;
    await this.extract(e, dir);
    return decodeImage(png);
  }

  private extract(e: FfEntry, dir: string): Promise<void> {
    let p = this.extracting.get(dir);
    if (!p) {
      // Kept once done, so a request that missed the cache just before the last frame landed does not
      // start a second ffmpeg run; dropped on failure so a later epoch may retry.
      p = this.runFfmpeg(e.video, e.n, dir).catch((err: unknown) => {
        this.extracting.delete(dir);
        throw err;
      });
      this.extracting.set(dir, p);
    }
    return p;
  }

  /**
   * Extracts a video's n frames and crops them into `outDir` (named by the video's identity): the crops
   * are written aside and the folder renamed into place whole, and only when the video did not change
   * meanwhile, so the folder never holds a partial set or another version's frames.
   */
  private async runFfmpeg(v: FfVideo, n: number, outDir: string): Promise<void> {
    const video = v.video ?? v.rel;
    if (!this.ffmpeg || !v.video) throw new UnreadableImageError(video, "no extracted frames and no ffmpeg on PATH");
    const before = this.decoder.sourceOf(v.video, []);
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
    const crops = path.join(tmp, "crops");
    await fs.rm(tmp, { recursive: true, force: true });
    await fs.mkdir(crops, { recursive: true });
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
        await writePng(path.join(crops, `${String(k).padStart(4, "0")}.png`), await this.square(img));
      }
      if (!unchangedSince(v.video, before)) throw new UnreadableImageError(v.video, "changed while it was being read; it is read again next time");
      await fs.rename(crops, outDir).catch((err: NodeJS.ErrnoException) => {
        // Another process published this identity's frames first: the same frames.
        if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
      });
    } catch (err) {
      if (err instanceof UnreadableImageError) throw err;
      throw new UnreadableImageError(v.video, `ffmpeg failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  }
}

/** How many of a video's n frames an earlier run extracted from it as it is now (0 if it cannot be stat'ed). */
async function extractedFrames(cropDir: string, video: string, root: string, n: number): Promise<number> {
  let src: SourceId;
  try {
    src = statSource(video, root);
  } catch {
    return 0;
  }
  return (await readDirSafe(videoCropDir(cropDir, src, n))).filter((d) => d.name.endsWith(".png")).length;
}

export async function listVideosIn(dir: string, label: 0 | 1, relBase: string, idsOf: (name: string) => string[]): Promise<FfVideo[]> {
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
export function ffIds(name: string, actors: boolean): string[] {
  if (actors) {
    const m = /^(\d+)(?:_(\d+))?__/.exec(name);
    return m ? ["actor" + m[1], ...(m[2] ? ["actor" + m[2]] : [])] : [name];
  }
  return name.split("_");
}

/** Union-find over video ids: a fake joins its target and source, so identities never straddle splits. */
export function groupIds(videos: readonly FfVideo[]): Map<string, string> {
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

export async function readOfficialSplits(dir: string): Promise<Map<string, SplitName> | null> {
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

export type FaceForensicsOptions = NonNullable<OpenOptions["faceforensics"]>;

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

export async function openFaceForensics(root: string, o: ResolvedOptions): Promise<DatasetSplits> {
  const ff = o.raw.faceforensics ?? {};
  const cropLayout: CropLayout = { name: "a FaceForensics++ release", root, modes: ["face", "centre"], fallback: "FF++ frames are centre-cropped" };
  cropMode(o, ff, cropLayout);
  const n = ff.framesPerVideo ?? 40;
  if (!Number.isInteger(n) || n < 1) throw new Error(`framesPerVideo must be a positive integer, got ${n}`);
  const cacheRoot = o.cacheDir ?? path.join(root, ".ticketlab-cache");
  const videos = await listFaceForensics(root, ff, o.seed, o.warn);
  const ffmpeg = await onPath(ff.ffmpeg ?? "ffmpeg");
  const crop = await faceCropperFor(o, ff, cropLayout);
  // Face crops and centre crops are cached apart: switching the crop never reuses the other's frames.
  const frameCache = (v: FfVideo): string => path.join(cacheRoot, String(o.size), crop ? "ffpp-faces" : "ffpp", v.rel);
  const usable: FaceForensicsVideo[] = [];
  for (const v of videos) {
    // Frames extracted on an earlier run from the video as it is now stay usable without ffmpeg.
    if (v.frames || (v.video && ffmpeg)) usable.push(v);
    else if (v.video && (await extractedFrames(frameCache(v), v.video, root, n)) >= n) usable.push(v);
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
        cropDir: frameCache(v),
      });
    }
  }
  const name = `faceforensics:${root}`;
  // Decoded shards are keyed by the frame's source (video or frame image) and the crop mode; the face
  // detector is the one ticketlab ships (its weights are part of the package version).
  const shards = (o.raw.decodedCache ?? cacheDefaults().decoded) === false ? null
    : openShardCache(cacheRoot, { size: o.size, pipeline: `faceforensics;crop=${crop ? "face" : "centre"};${RESIZE_METHOD}` }, o.warn);
  const decoder = new CachedDecoder(shards, root, o.size, o.warn);
  const mk = (s: SplitName): Dataset => new FaceForensicsDataset(`${name}/${s}`, o.size, lists[s], ffmpeg, crop, decoder);
  return { name, layout: "faceforensics", root, size: o.size, train: mk("train"), val: mk("val"), test: mk("test") };
}

// Datasets whose samples are 8-bit images at the training size can hand the loader bytes (CHW uint8)
// instead of floats; those backed by files read them through the decoded cache (shard-cache.ts) and
// decode the misses on the pool (decode-pool.ts). This module is the seam between the two.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { ShardCache, statSource, type CacheConfig, type SourceId } from './shard-cache.js';
import { decodePool, type Decoded } from './decode-pool.js';
import { bytesToUnit, UnreadableImageError } from './image.js';
import type { Dataset, Sample } from './dataset-base.js';

/** A dataset that can give a sample's pixels as CHW bytes at `size` (what `get` divides by 255). */
export interface PixelDataset extends Dataset {
  /** Writes sample i's 3*size*size bytes into `out` at `at`. */
  getPixelsInto(i: number, out: Uint8Array, at: number): Promise<void>;
  /** Copies sample i from the cache without waiting (the warm path); false on a miss. */
  readCachedInto(i: number, out: Uint8Array, at: number): boolean;
  /** Decodes sample i into the cache unless it is there already: 'cached' or 'decoded'. */
  ensureCached(i: number): Promise<'cached' | 'decoded'>;
  /** Writes out what the cache holds in memory (end of an epoch, of `prepare`). */
  flushCache(): Promise<void>;
  readonly cache: ShardCache | null;
}

export function isPixelDataset(ds: Dataset): ds is PixelDataset {
  return typeof (ds as Partial<PixelDataset>).getPixelsInto === 'function';
}

/** Sample i of a pixel dataset as `get` returns it: its bytes, and the same image as floats (byte / 255). */
export async function pixelSample(ds: PixelDataset, i: number, label: 0 | 1, file: string): Promise<Sample> {
  const pixels = new Uint8Array(3 * ds.size * ds.size);
  await ds.getPixelsInto(i, pixels, 0);
  return { image: bytesToUnit(pixels), pixels, label, path: file };
}

/** The decoded cache's folder under a dataset's cache root. */
export function decodedCacheRoot(cacheRoot: string): string {
  return path.join(cacheRoot, 'decoded');
}

/** The resize method every file layout uses (image.ts toCHWBytes); part of the cache key. */
export const RESIZE_METHOD = 'antialias-bilinear-f32-round-u8';

/** The process's defaults where OpenOptions say nothing (the CLI's --cache / --no-cache). */
export interface CacheDefaults {
  dir?: string;
  decoded: boolean;
}
let defaults: CacheDefaults = { decoded: true };

export function setCacheDefaults(d: CacheDefaults): void {
  defaults = { ...d };
}

export function cacheDefaults(): Readonly<CacheDefaults> {
  return defaults;
}

const caches = new Map<string, ShardCache>();

/**
 * The process's ShardCache for (folder, configuration): one per pair, so the train/val/test splits and
 * every loader of a run share one index and one writer.
 */
export function openShardCache(cacheRoot: string, cfg: CacheConfig, warn: (m: string) => void): ShardCache {
  const root = decodedCacheRoot(cacheRoot);
  const key = `${root}\0${cfg.size}\0${cfg.pipeline}`;
  let c = caches.get(key);
  if (!c) {
    c = new ShardCache(root, cfg, warn);
    caches.set(key, c);
  }
  return c;
}

/** Forgets the process's open caches (tests that damage a cache between "runs" reopen it from disk). */
export function closeShardCaches(): void {
  for (const c of caches.values()) c.close();
  caches.clear();
}

/** Which sample of a source file, and how its bytes are made on a miss (see CachedDecoder.read). */
export interface SampleSource {
  detail?: string;
  produce?: () => Promise<Uint8Array>;
}

interface Identity {
  src: SourceId;
  key: string;
}

function sourceName(file: string, detail: string | undefined): string {
  return detail === undefined ? file : `${file}#${detail}`;
}

function withDetail(src: SourceId, detail: string | undefined): SourceId {
  return detail === undefined ? src : { ...src, rel: `${src.rel}#${detail}` };
}

/**
 * A name for a crop cached as a PNG (FaceForensics++ frames, OpenForensics faces without the decoded
 * cache): a hash of its source's identity as it is now (path, size, modification time) and of what else
 * picks its pixels (`extra`: which frames of a video, which annotation and box), so a source changed
 * after it was cropped gets new crops instead of the earlier ones. The crop mode and size are in the
 * folder the name goes in; the face detector is the package's own.
 */
export function cropCacheName(src: SourceId, extra = ''): string {
  return createHash('sha256').update([src.rel, String(src.bytes), String(src.mtimeMs), extra].join('\0')).digest('hex').slice(0, 16);
}

/** Whether `file` still has the size and modification time of `before` (false once it is gone). */
export function unchangedSince(file: string, before: Pick<SourceId, 'bytes' | 'mtimeMs'>): boolean {
  try {
    const st = fs.statSync(file);
    return st.size === before.bytes && st.mtimeMs === before.mtimeMs;
  } catch {
    return false;
  }
}

/**
 * Reads one source file's bytes through the cache: a hit copies them from a shard; a miss (first pass,
 * changed file) decodes on the pool and queues them for the next shard. A source deleted or changed
 * after it was cached is named (once per file): never served stale.
 */
export class CachedDecoder {
  private readonly told = new Set<string>();
  constructor(readonly cache: ShardCache | null, readonly root: string, readonly size: number, private readonly warn: (m: string) => void) {}

  /**
   * Sample bytes of `file` into `out` at `at`. `o.detail` tells apart several samples of one source
   * (frame k of n of a video); `o.produce` makes the bytes on a miss (default: decode and resize the
   * file on the pool).
   */
  async read(file: string, out: Uint8Array, at: number, o: SampleSource = {}): Promise<void> {
    const cache = this.cache;
    if (!cache) {
      out.set((await this.produce(file, o)).pixels, at);
      return;
    }
    const id = this.identify(cache, file, o.detail);
    if (cache.readInto(id.key, out, at, sourceName(file, o.detail))) return;
    out.set(await this.decodeMiss(cache, file, id, o), at);
  }

  /** The synchronous hit path of `read`: false on a miss, or when the file cannot be stat'ed (read reports it). */
  readCached(file: string, out: Uint8Array, at: number, detail?: string): boolean {
    const cache = this.cache;
    if (!cache) return false;
    // The warm path, once per image per epoch: a plain stat, no exception on a missing file, and the
    // key from the last identity this sample had (no path or hash work while the file is unchanged).
    const st = fs.statSync(file, { throwIfNoEntry: false });
    if (!st) return false;
    return cache.readInto(this.identityOf(cache, file, detail, st).key, out, at, sourceName(file, detail));
  }

  private produce(file: string, o: SampleSource): Promise<Decoded> {
    return o.produce ? o.produce().then((pixels) => ({ pixels })) : decodePool().decodeChecked(file, this.size);
  }

  // Each sample's last identity and entry key: a hash (and path.relative) per image per epoch was a
  // measurable part of a warm epoch.
  private readonly seen = new Map<string, Identity>();
  private identityOf(cache: ShardCache, file: string, detail: string | undefined, st: { size: number; mtimeMs: number }): Identity {
    const name = sourceName(file, detail);
    const m = this.seen.get(name);
    if (m && m.src.bytes === st.size && m.src.mtimeMs === st.mtimeMs) return m;
    const src = withDetail(statSource(file, this.root, st), detail);
    const id = { src, key: cache.keyOf(src) };
    if (this.seen.size > 1_000_000) this.seen.clear();
    this.seen.set(name, id);
    return id;
  }

  /** Puts `file` in the cache unless it is there (`ticketlab prepare`): no bytes are read on a hit. */
  async ensure(file: string, o: SampleSource = {}): Promise<'cached' | 'decoded'> {
    const cache = this.cache;
    if (!cache) throw new Error(`no decoded cache to fill for ${file} (--no-cache)`);
    const id = this.identify(cache, file, o.detail);
    if (cache.has(id.key)) return 'cached';
    await this.decodeMiss(cache, file, id, o);
    return 'decoded';
  }

  private identify(cache: ShardCache, file: string, detail?: string): Identity {
    return this.identityOf(cache, file, detail, this.statNamed(file, [detail]));
  }

  /**
   * stat(2) of a source; one that cannot be stat'ed is an UnreadableImageError, which says it was
   * deleted after it was cached when any of `details` (the samples of it being asked for) was.
   */
  private statNamed(file: string, details: readonly (string | undefined)[]): fs.Stats {
    try {
      return fs.statSync(file);
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      const rel = path.relative(this.root, file);
      const cached = details.some((d) => this.cache?.hadPath(d === undefined ? rel : `${rel}#${d}`));
      throw new UnreadableImageError(file, cached ? `deleted after it was cached (${why}); its cache ${details.length > 1 ? 'entries are' : 'entry is'} not used` : why);
    }
  }

  /** Names a source whose sample `src` misses because the source changed since it was cached (once per file). */
  private noteChanged(cache: ShardCache, file: string, src: SourceId): void {
    if (cache.hadPath(src.rel) && !this.told.has(file)) {
      this.told.add(file);
      this.warn(`${file} changed since it was cached (size or modification time); decoded afresh`);
    }
  }

  private async decodeMiss(cache: ShardCache, file: string, id: Identity, o: SampleSource): Promise<Uint8Array> {
    const src = id.src;
    this.noteChanged(cache, file, src);
    const { pixels, crc } = await this.produce(file, o);
    // A file rewritten while it was being decoded must not be cached under the identity read before.
    // The key is the one looked up (no second hash); the checksum the worker's, when a worker made them.
    if (unchangedSince(file, src)) cache.add(src, pixels, { key: id.key, crc });
    return pixels;
  }

  /**
   * Several samples made by one read of a source (OpenForensics: every face of a photo), in two halves
   * around that read. `sourceOf` gives the identity before it (a missing source is named as `read`
   * names it, "deleted after it was cached" if any of `details` was); `addMany` then caches each
   * sample under that identity, or, if the source changed meanwhile, caches nothing and throws an
   * UnreadableImageError saying it is read again next time.
   */
  sourceOf(file: string, details: readonly string[]): SourceId {
    return statSource(file, this.root, this.statNamed(file, details));
  }

  addMany(file: string, before: SourceId, made: Iterable<{ detail: string; pixels: Uint8Array }>): void {
    const cache = this.cache;
    if (!cache) return;
    if (!unchangedSince(file, before)) throw new UnreadableImageError(file, 'changed while it was being read; it is read again next time');
    for (const { detail, pixels } of made) {
      const src = withDetail(before, detail);
      if (cache.has(cache.keyOf(src))) continue;
      this.noteChanged(cache, file, src);
      cache.add(src, pixels);
    }
  }

  async flush(): Promise<void> {
    if (this.cache) {
      await this.cache.flush();
      this.cache.rescan();
    }
  }
}

export interface FillResult {
  images: number;
  decoded: number;
  cached: number;
  skipped: number;
}

/**
 * Puts every sample of `ds` in its decoded cache (`ticketlab prepare`): misses decode on the pool, on
 * every core; what was cached already is only stat'ed. Unreadable images are warned about and counted.
 */
export async function fillDecodedCache(ds: PixelDataset, o: { concurrency?: number; onProgress?: (n: number) => void; warn: (m: string) => void }): Promise<FillResult> {
  const total = ds.length();
  const res: FillResult = { images: total, decoded: 0, cached: 0, skipped: 0 };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      try {
        res[await ds.ensureCached(i)]++;
      } catch (e) {
        if (!(e instanceof UnreadableImageError)) throw e;
        res.skipped++;
        o.warn(e.message);
      }
      o.onProgress?.(1);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 2 * availableParallelism()) }, worker));
  } finally {
    await ds.flushCache();
  }
  return res;
}

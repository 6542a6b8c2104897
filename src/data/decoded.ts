// Datasets whose samples are 8-bit images at the training size can hand the loader bytes (CHW uint8)
// instead of floats; those backed by files read them through the decoded cache (shard-cache.ts) and
// decode the misses on the pool (decode-pool.ts). This module is the seam between the two.
import * as path from 'node:path';
import { ShardCache, statSource, type CacheConfig, type SourceId } from './shard-cache.js';
import { decodePool } from './decode-pool.js';
import { UnreadableImageError } from './image.js';
import type { Dataset } from './dataset-base.js';

/** A dataset that can give a sample's pixels as CHW bytes at `size` (what `get` divides by 255). */
export interface PixelDataset extends Dataset {
  /** Writes sample i's 3*size*size bytes into `out` at `at`. */
  getPixelsInto(i: number, out: Uint8Array, at: number): Promise<void>;
  /** Writes out what the cache holds in memory (end of an epoch, of `prepare`). */
  flushCache(): Promise<void>;
  readonly cache: ShardCache | null;
}

export function isPixelDataset(ds: Dataset): ds is PixelDataset {
  return typeof (ds as Partial<PixelDataset>).getPixelsInto === 'function';
}

/** The decoded cache's folder under a dataset's cache root. */
export function decodedCacheRoot(cacheRoot: string): string {
  return path.join(cacheRoot, 'decoded');
}

/** The resize method every file layout uses (image.ts toCHWBytes); part of the cache key. */
export const RESIZE_METHOD = 'antialias-bilinear-f32-round-u8';

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

/**
 * Reads one source file's bytes through the cache: a hit copies them from a shard; a miss (first pass,
 * changed file) decodes on the pool and queues them for the next shard. A source deleted or changed
 * after it was cached is named (once per file): never served stale.
 */
export class CachedDecoder {
  private readonly told = new Set<string>();
  constructor(readonly cache: ShardCache | null, readonly root: string, readonly size: number, private readonly warn: (m: string) => void) {}

  async read(file: string, out: Uint8Array, at: number): Promise<void> {
    const cache = this.cache;
    if (!cache) {
      out.set(await decodePool().decode(file, this.size), at);
      return;
    }
    const rel = path.relative(this.root, file);
    let src: SourceId;
    try {
      src = statSource(file, this.root);
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new UnreadableImageError(file, cache.hadPath(rel) ? `deleted after it was cached (${why}); its cache entry is not used` : why);
    }
    if (cache.readInto(cache.keyOf(src), out, at)) return;
    if (cache.hadPath(rel) && !this.told.has(file)) {
      this.told.add(file);
      this.warn(`${file} changed since it was cached (size or modification time); decoded afresh`);
    }
    const pixels = await decodePool().decode(file, this.size);
    out.set(pixels, at);
    // A file rewritten while it was being decoded must not be cached under the identity read before.
    let after: SourceId | null = null;
    try {
      after = statSource(file, this.root);
    } catch {
      // gone meanwhile: nothing to cache
    }
    if (after && after.bytes === src.bytes && after.mtimeNs === src.mtimeNs) cache.add(src, pixels);
  }

  async flush(): Promise<void> {
    if (this.cache) {
      await this.cache.flush();
      this.cache.rescan();
    }
  }
}

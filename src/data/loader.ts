// Batches for training and evaluation: seeded per-epoch shuffling, NCHW packing, optional flip and
// normalisation, and decode-ahead of the next batches with bounded concurrency (sharp decodes on libuv's
// thread pool, so several images really are decoded in parallel while the GPU works on the current batch).
import type { Dataset, Sample } from "./datasets.js";
import { availableParallelism } from "node:os";
import { UnreadableImageError } from "./image.js";
import { isPixelDataset } from "./decoded.js";
import { hashKey, Rng, unitFloat } from "./random.js";

export interface Normalize {
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

/** ImageNet statistics, for torchvision-style pretrained weights. */
export const IMAGENET_NORMALIZE: Normalize = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

export interface LoaderOptions {
  batchSize: number;
  /** default true; evaluation loaders pass false to keep dataset order */
  shuffle?: boolean;
  seed?: number;
  /** drop the last batch when it is smaller than batchSize (default false) */
  dropLast?: boolean;
  /** horizontal flip with probability 0.5 (true) or the given probability; default off */
  flip?: boolean | number;
  normalize?: Normalize;
  /** batches decoded ahead of the one being consumed (default 2) */
  prefetch?: number;
  /** samples decoded at once (default 4) */
  concurrency?: number;
  /** where skipped-file warnings go (default stderr); each file is reported once per loader */
  warn?: (message: string) => void;
}

/**
 * A batch as bytes (datasets of 8-bit images): the floats are `table[c * 256 + byte]` of each row's
 * channel c, read mirrored in x where `flips` says so. The trainer uploads these bytes and makes the
 * floats on the device (tensor/ops/convert.ts); `Batch.x` makes the same floats on the host.
 */
export interface PixelBatch {
  /** n x 3 x S x S bytes, unflipped; the length is padded to a multiple of 4 (whole u32 words) */
  data: Uint8Array;
  /** 1 where the row is flipped horizontally */
  flips: Uint8Array;
  /** 3 x 256 floats: byte v of channel c becomes table[c * 256 + v] (normalised when asked) */
  table: Float32Array;
  /**
   * Hands `data` back to the loader once its bytes are on the device (train/batch-input.ts calls it),
   * so a later batch fills the same memory: a fresh 6 MiB array per batch (256 px, 32 images) cost
   * more than reading its images from the page cache. `Batch.x` must be read before, or it throws.
   */
  recycle?: () => void;
}

export interface Batch {
  /** NCHW float32 (for a pixel batch, made from `pixels` on first read) */
  readonly x: Float32Array;
  /** the same batch as bytes, when the dataset reads 8-bit images */
  pixels?: PixelBatch;
  /** labels as float32 (1 = fake), length n */
  y: Float32Array;
  n: number;
  shape: [number, 3, number, number];
  /** dataset indices of the rows, in row order */
  indices: Int32Array;
  epoch: number;
  /** batch number within the epoch */
  batch: number;
}

// Salts so the flip stream and the order stream never coincide for the same seed.
const ORDER_SALT = 0x5eed0001;
const FLIP_SALT = 0x5eed0002;

/**
 * Byte -> float per channel, exactly as the float path computes it: the float32 of byte / 255, then
 * (value - mean) * (1 / std) in double precision rounded to float32 (Float32Array stores).
 */
export function conversionTable(norm: Normalize | undefined): Float32Array {
  const t = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    for (let v = 0; v < 256; v++) {
      const u = Math.fround(v / 255);
      t[c * 256 + v] = norm ? (u - norm.mean[c]) * (1 / norm.std[c]) : u;
    }
  }
  return t;
}

/** The host twin of the device conversion: NCHW floats of a pixel batch. */
export function pixelsToFloat(pb: PixelBatch, n: number, size: number): Float32Array {
  const plane = size * size;
  const per = 3 * plane;
  const out = new Float32Array(n * per);
  const { data, flips, table } = pb;
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < 3; c++) {
      const t = c * 256;
      for (let y = 0; y < size; y++) {
        const row = r * per + c * plane + y * size;
        if (flips[r]) for (let x = 0; x < size; x++) out[row + x] = table[t + data[row + size - 1 - x]];
        else for (let x = 0; x < size; x++) out[row + x] = table[t + data[row + x]];
      }
    }
  }
  return out;
}

type Limiter = <T>(task: () => Promise<T>) => Promise<T>;

/** FIFO promise pool: earlier batches' decodes start first, so prefetching never starves the next batch. */
function limiter(max: number): Limiter {
  let active = 0;
  const queue: Array<() => void> = [];
  const release = (): void => {
    active--;
    const next = queue.shift();
    if (next) next();
  };
  return <T>(task: () => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const run = (): void => {
        active++;
        let p: Promise<T>;
        try {
          p = task();
        } catch (e) {
          p = Promise.reject(e);
        }
        p.then(resolve, reject).finally(release);
      };
      if (active < max) run();
      else queue.push(run);
    });
}

export class DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly flipProb: number;
  readonly normalize: Normalize | undefined;
  readonly prefetch: number;
  readonly concurrency: number;
  /** samples skipped (unreadable) in the current or most recent epoch */
  skipped = 0;
  /** samples skipped over the loader's lifetime */
  skippedTotal = 0;
  private readonly warn: (m: string) => void;
  private readonly warned = new Set<string>();
  private nextEpoch = 0;
  private readonly table: Float32Array;
  /** byte arrays of recycled batches, reused by the next ones (PixelBatch.recycle) */
  private readonly spare: Uint8Array[] = [];

  constructor(readonly dataset: Dataset, opts: LoaderOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new Error(`batchSize must be a positive integer, got ${opts.batchSize}`);
    this.batchSize = opts.batchSize;
    this.shuffle = opts.shuffle ?? true;
    this.seed = opts.seed ?? 0;
    this.dropLast = opts.dropLast ?? false;
    this.flipProb = opts.flip === true ? 0.5 : opts.flip === false || opts.flip === undefined ? 0 : opts.flip;
    if (!(this.flipProb >= 0 && this.flipProb <= 1)) throw new Error(`flip probability must be in [0,1], got ${String(opts.flip)}`);
    this.normalize = opts.normalize;
    if (this.normalize && this.normalize.std.some((s) => !(s > 0))) throw new Error("normalize.std must be positive");
    this.prefetch = Math.max(0, opts.prefetch ?? 2);
    // Pixel datasets decode on a pool of worker threads, one per core with two images each in flight.
    this.concurrency = Math.max(1, opts.concurrency ?? (isPixelDataset(dataset) ? Math.max(4, 2 * availableParallelism()) : 4));
    this.table = conversionTable(this.normalize);
    this.warn = opts.warn ?? ((m) => process.stderr.write(`warning: ${m}\n`));
  }

  get size(): number {
    return this.dataset.size;
  }

  numBatches(): number {
    const n = this.dataset.length();
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /**
   * The epoch's sample order: a Fisher-Yates permutation keyed by (seed, epoch), so it is reproducible and
   * differs between epochs (and between seeds at the same epoch, unlike a plain seed+epoch).
   */
  order(epoch: number): Int32Array {
    const n = this.dataset.length();
    const idx = new Int32Array(n);
    for (let i = 0; i < n; i++) idx[i] = i;
    if (!this.shuffle) return idx;
    const r = new Rng(hashKey(this.seed, ORDER_SALT, epoch));
    for (let i = n - 1; i > 0; i--) {
      const j = r.int(i + 1);
      const t = idx[i];
      idx[i] = idx[j];
      idx[j] = t;
    }
    return idx;
  }

  /** Whether sample `index` is flipped in `epoch`: a pure function, so prefetch order cannot change it. */
  flipped(epoch: number, index: number): boolean {
    return this.flipProb > 0 && unitFloat(hashKey(this.seed, FLIP_SALT, epoch, index)) < this.flipProb;
  }

  /** Iterate the next epoch (0, 1, 2, ... on successive loops). */
  [Symbol.asyncIterator](): AsyncGenerator<Batch> {
    return this.epoch(this.nextEpoch++);
  }

  /**
   * The batches of one epoch, from `startBatch` on (a resumed run continues mid-epoch; the order is a
   * pure function of seed and epoch, so the skipped batches are exactly the ones already trained).
   */
  async *epoch(epoch: number, startBatch = 0): AsyncGenerator<Batch> {
    this.skipped = 0;
    const order = this.order(epoch);
    const nb = this.numBatches();
    const limit = limiter(this.concurrency);
    const pending: Array<Promise<Batch | null>> = [];
    let launched = Math.max(0, Math.min(nb, startBatch));
    const launch = (): void => {
      while (pending.length <= this.prefetch && launched < nb) {
        const p = this.assemble(epoch, order, launched++, limit);
        // Marked handled now; the error still surfaces when this batch is awaited in turn.
        p.catch(() => undefined);
        pending.push(p);
      }
    };
    launch();
    try {
      while (pending.length > 0) {
        const p = pending.shift() as Promise<Batch | null>;
        launch();
        const b = await p;
        if (b) yield b;
      }
    } finally {
      // What this epoch decoded goes to disk even when the consumer stops early (Ctrl-C, a test).
      if (isPixelDataset(this.dataset)) {
        await Promise.allSettled(pending);
        await this.dataset.flushCache();
      }
    }
    if (this.skipped > 0) this.warn(`epoch ${epoch}: skipped ${this.skipped} unreadable of ${this.dataset.length()} samples in ${this.dataset.name}`);
  }

  /** A sample's read with the skip policy: an unreadable image is warned about (once per file) and null. */
  private skipUnreadable<T>(i: number, read: Promise<T>): Promise<T | null> {
    return read.then((s) => s, (e: unknown): null => {
      if (!(e instanceof UnreadableImageError)) throw e;
      this.skipped++;
      this.skippedTotal++;
      if (!this.warned.has(e.path)) {
        this.warned.add(e.path);
        this.warn(`skipping unreadable sample ${i} of ${this.dataset.name}: ${e.message}`);
      }
      return null;
    });
  }

  private async assemble(epoch: number, order: Int32Array, b: number, limit: Limiter): Promise<Batch | null> {
    const start = b * this.batchSize;
    const idx = order.subarray(start, Math.min(order.length, start + this.batchSize));
    const ds = this.dataset;
    if (isPixelDataset(ds)) return this.assemblePixels(epoch, idx, b, limit);
    const results = await Promise.all(Array.from(idx, (i) => this.skipUnreadable(i, limit(() => ds.get(i)))));
    const S = ds.size;
    const plane = S * S;
    const per = 3 * plane;
    const n = results.reduce((k, s) => k + (s ? 1 : 0), 0);
    if (n === 0) return null;
    const x = new Float32Array(n * per);
    const y = new Float32Array(n);
    const indices = new Int32Array(n);
    const norm = this.normalize;
    let row = 0;
    for (let k = 0; k < results.length; k++) {
      const s = results[k];
      if (!s) continue;
      const i = idx[k];
      if (s.image.length !== per) {
        throw new Error(`${ds.name}: sample ${i}${s.path ? ` (${s.path})` : ""} has ${s.image.length} values, expected 3x${S}x${S}`);
      }
      const off = row * per;
      if (this.flipped(epoch, i)) {
        for (let c = 0; c < 3; c++) {
          for (let yy = 0; yy < S; yy++) {
            const src = c * plane + yy * S;
            const dst = off + src;
            for (let xx = 0; xx < S; xx++) x[dst + xx] = s.image[src + S - 1 - xx];
          }
        }
      } else {
        x.set(s.image, off);
      }
      if (norm) {
        for (let c = 0; c < 3; c++) {
          const m = norm.mean[c], inv = 1 / norm.std[c];
          const o = off + c * plane;
          for (let p = 0; p < plane; p++) x[o + p] = (x[o + p] - m) * inv;
        }
      }
      y[row] = s.label;
      indices[row] = i;
      row++;
    }
    return { x, y, n, shape: [n, 3, S, S], indices, epoch, batch: b };
  }

  /** A recycled byte array of `length` bytes, or a new one. */
  private takeBytes(length: number): Uint8Array {
    const i = this.spare.findIndex((a) => a.length === length);
    return i < 0 ? new Uint8Array(length) : this.spare.splice(i, 1)[0];
  }

  /** A batch of bytes: each sample read straight into its row, no float made on the host. */
  private async assemblePixels(epoch: number, idx: Int32Array, b: number, limit: Limiter): Promise<Batch | null> {
    const ds = this.dataset;
    if (!isPixelDataset(ds)) throw new Error("assemblePixels needs a pixel dataset");
    const S = ds.size;
    const per = 3 * S * S;
    const bytes = (k: number): number => Math.ceil((k * per) / 4) * 4;
    let data = this.takeBytes(bytes(idx.length));
    // Cached samples are copied at once, in one synchronous pass (a warm batch makes no promise per
    // image); only misses (decode on the pool) take the limiter's slots.
    const ok: Array<true | null> = new Array<true | null>(idx.length).fill(true);
    const misses: Array<Promise<void>> = [];
    for (let k = 0; k < idx.length; k++) {
      const i = idx[k];
      if (ds.readCachedInto(i, data, k * per)) continue;
      misses.push(this.skipUnreadable(i, limit(() => ds.getPixelsInto(i, data, k * per))).then((r) => void (ok[k] = r === null ? null : true)));
    }
    if (misses.length > 0) await Promise.all(misses);
    const n = ok.reduce<number>((a, r) => a + (r === null ? 0 : 1), 0);
    if (n === 0) return null;
    if (n < idx.length) {
      // Close the gaps the skipped samples left, keeping row order.
      const packed = new Uint8Array(bytes(n));
      let row = 0;
      ok.forEach((r, k) => {
        if (r !== null) packed.set(data.subarray(k * per, (k + 1) * per), row++ * per);
      });
      data = packed;
    }
    const kept = Array.from(idx).filter((_, k) => ok[k] !== null);
    const y = new Float32Array(kept.map((i) => ds.label(i)));
    const flips = new Uint8Array(kept.map((i) => (this.flipped(epoch, i) ? 1 : 0)));
    let x: Float32Array | null = null;
    let recycled = false;
    const pixels: PixelBatch = {
      data, flips, table: this.table,
      recycle: () => {
        if (recycled) return;
        recycled = true;
        if (this.spare.length > this.prefetch + 1) this.spare.shift();
        this.spare.push(data);
      },
    };
    return {
      get x(): Float32Array {
        if (x === null && recycled) throw new Error(`batch ${b} of epoch ${epoch}: its bytes went back to the loader after their upload (batchInput); read Batch.x before batchInput`);
        x ??= pixelsToFloat(pixels, n, S);
        return x;
      },
      pixels, y, n, shape: [n, 3, S, S], indices: Int32Array.from(kept), epoch, batch: b,
    };
  }
}

// Size-class pool of GPU storage buffers.
//
// Why: creating a GPUBuffer costs far more than a dispatch, and training re-allocates the same
// shapes every step. Buffers are rounded up to size classes (powers of two with a 1.5x step between)
// so a freed buffer fits the next request of a similar size; waste is bounded by 33%.
//
// Hazard this class guards against: queue.writeBuffer() runs before any not-yet-submitted commands.
// A buffer that a pending (unsubmitted) dispatch still reads or writes must not be handed out for a
// host upload, or the upload would be overwritten/observed out of order. So each buffer remembers the
// batch in which it was last used; uploads take only buffers whose last use is already submitted.
import { device, onDeviceClose } from './device.js';

export interface PooledBuffer {
  /** @internal: the published declarations name no WebGPU type (see Device.gpu). */
  readonly buffer: GPUBuffer;
  /** Bytes of the size class, >= what was asked for. */
  readonly bytes: number;
  /** Batch id of the last command batch that used this buffer. */
  lastBatch: number;
  /** Bytes asked for by the current holder (<= bytes): what the queue's byte counts charge for a binding. */
  used: number;
  /**
   * Byte offset of this range in `buffer`: set on views into an arena (tensor/arena.ts), whose
   * bindings, copies and uploads start there; absent (0) for a buffer of its own.
   */
  readonly offset?: number;
}

export interface PoolStats {
  /** Bytes in buffers that exist on the GPU (in use + free in the pool). */
  allocatedBytes: number;
  inUseBytes: number;
  freeBytes: number;
  buffers: number;
  creates: number;
  reuses: number;
}

const MIN_BYTES = 256;

export function sizeClass(bytes: number): number {
  if (bytes <= MIN_BYTES) return MIN_BYTES;
  const p = 2 ** Math.ceil(Math.log2(bytes));
  const mid = (p / 4) * 3; // 1.5 x the previous power of two
  const c = bytes <= mid ? mid : p;
  // 4-byte alignment is required for storage buffers; size classes above 256 are multiples of 64.
  return c;
}

const USAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export class BufferPool {
  private free = new Map<number, PooledBuffer[]>();
  private stats_: PoolStats = { allocatedBytes: 0, inUseBytes: 0, freeBytes: 0, buffers: 0, creates: 0, reuses: 0 };
  private observers = new Set<(bytes: number) => void>();

  /** Calls `fn` with the bytes of every request until the returned function is called (train/limits.ts). */
  observe(fn: (bytes: number) => void): () => void {
    this.observers.add(fn);
    return () => this.observers.delete(fn);
  }

  /**
   * A buffer of at least `bytes`. `submittedBatch` is the id of the last submitted batch: with
   * `forUpload`, only buffers untouched since then are reused (see the hazard above).
   */
  acquire(bytes: number, forUpload: boolean, submittedBatch: number): PooledBuffer {
    const cls = sizeClass(bytes);
    for (const fn of this.observers) fn(bytes);
    const list = this.free.get(cls);
    if (list && list.length) {
      let idx = list.length - 1;
      if (forUpload) {
        while (idx >= 0 && list[idx].lastBatch > submittedBatch) idx--;
      }
      if (idx >= 0) {
        const b = list[idx];
        list.splice(idx, 1);
        this.stats_.freeBytes -= cls;
        this.stats_.inUseBytes += cls;
        this.stats_.reuses++;
        b.used = bytes;
        return b;
      }
    }
    const buffer = device().gpu.createBuffer({ size: cls, usage: USAGE() });
    this.stats_.allocatedBytes += cls;
    this.stats_.inUseBytes += cls;
    this.stats_.buffers++;
    this.stats_.creates++;
    return { buffer, bytes: cls, lastBatch: -1, used: bytes };
  }

  release(b: PooledBuffer): void {
    if (b.offset !== undefined) throw new Error('pool: a view into an arena was released to the pool (its arena owns the buffer)');
    let list = this.free.get(b.bytes);
    if (!list) this.free.set(b.bytes, (list = []));
    list.push(b);
    this.stats_.inUseBytes -= b.bytes;
    this.stats_.freeBytes += b.bytes;
  }

  /** Destroys every free buffer (memory pressure, or tests that want a clean slate). */
  trim(): void {
    for (const list of this.free.values()) {
      for (const b of list) {
        b.buffer.destroy();
        this.stats_.allocatedBytes -= b.bytes;
        this.stats_.freeBytes -= b.bytes;
        this.stats_.buffers--;
      }
    }
    this.free.clear();
  }

  stats(): PoolStats {
    return { ...this.stats_ };
  }

  reset(): void {
    this.free.clear();
    this.stats_ = { allocatedBytes: 0, inUseBytes: 0, freeBytes: 0, buffers: 0, creates: 0, reuses: 0 };
  }
}

export const pool = new BufferPool();
onDeviceClose(() => pool.reset());

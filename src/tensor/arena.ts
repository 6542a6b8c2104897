// Arenas: one pooled buffer that holds several tensors as views (aligned byte ranges of it).
//
// Why: a kernel can bind at most maxStorageBuffersPerShaderStage buffers (Dawn offers 8 to 16), so a
// dispatch that updates every parameter of a model must find them in a few buffers. The optimizer
// keeps its parameters, their moments and their masks in arenas (nn/optim/optimizer.ts), and one
// dispatch binds each arena once (tensor/ops/optim.ts). Every other kernel sees an arena view as an
// ordinary tensor: a view's PooledBuffer carries its byte offset, which the queue adds to every
// binding, copy and upload (queue.ts, io.ts).
//
// Views start at multiples of minStorageBufferOffsetAlignment (256 bytes on every adapter we met), the
// alignment a binding offset needs. A view shares its arena's `lastBatch` (the pool's upload hazard
// is about the GPU buffer, not the range), and each live view holds a reference on the arena: the
// buffer goes back to the pool when the arena's owner and every view have let go.
import { device } from './device.js';
import { pool, type PooledBuffer } from './pool.js';
import { queue } from './queue.js';
import { keep, numel, Storage, Tensor, type Shape } from './tensor.js';
import { mapRaw } from './ops/map.js';

/** Element offset alignment of arena views (the binding offset alignment, in f32 elements). */
export function arenaAlign(): number {
  return Math.max(1, (device().limits.minStorageBufferOffsetAlignment ?? 256) / 4);
}

/** The most f32 elements one binding may cover (maxStorageBufferBindingSize). */
export function maxBindingElements(): number {
  return Math.floor((device().limits.maxStorageBufferBindingSize ?? 134217728) / 4);
}

/** Element offsets of consecutive views of the given sizes, each aligned; `total` elements in all. */
export function arenaLayout(sizes: readonly number[], align = arenaAlign()): { offsets: number[]; total: number } {
  const offsets: number[] = [];
  let at = 0;
  for (const n of sizes) {
    offsets.push(at);
    at += Math.ceil(Math.max(n, 1) / align) * align;
  }
  return { offsets, total: Math.max(at, align) };
}

/** A view's storage: releasing its last reference releases one reference on the arena. */
class ViewStorage extends Storage {
  constructor(
    buf: PooledBuffer,
    size: number,
    private readonly arena: Arena,
  ) {
    super(buf, size);
  }
  override release(): void {
    if (--this.refs === 0) this.arena.release();
  }
}

export class Arena {
  /** The whole buffer (bind it to reach every view at once). */
  readonly buf: PooledBuffer;
  private refs = 1;

  /** An arena of `elements` f32 values, zero-filled (padding between views stays 0). */
  constructor(readonly elements: number) {
    this.buf = pool.acquire(elements * 4, false, queue.submittedBatch);
    this.zero();
  }

  /** Fills the whole arena with +0, in slices a binding can take (maxStorageBufferBindingSize). */
  zero(): void {
    const align = arenaAlign();
    const slice = Math.max(align, Math.floor(maxBindingElements() / align) * align);
    for (let at = 0; at < this.elements; at += slice) {
      const v = new Tensor(this.storage(at, Math.min(slice, this.elements - at)), [Math.min(slice, this.elements - at)]);
      mapRaw('fill_f32', 'p.alpha', [], v.shape, 'f32', 0, 0, v);
      v.dispose();
    }
  }

  /** A storage over elements [offset, offset + size) (offset aligned as arenaLayout gives it). */
  private storage(offset: number, size: number): Storage {
    if (offset % arenaAlign() !== 0 || offset + size > this.elements) throw new Error(`arena: view [${offset}, ${offset + size}) of ${this.elements} elements`);
    const parent = this.buf;
    const view: PooledBuffer = {
      buffer: parent.buffer,
      offset: (parent.offset ?? 0) + offset * 4,
      bytes: Math.min(Math.ceil(Math.max(size, 1) / arenaAlign()) * arenaAlign(), this.elements - offset) * 4,
      used: size * 4,
      get lastBatch() {
        return parent.lastBatch;
      },
      set lastBatch(b: number) {
        parent.lastBatch = Math.max(parent.lastBatch, b);
      },
    };
    this.refs++;
    return new ViewStorage(view, size, this);
  }

  /** A tensor of `shape` on elements from `offset`, exempt from tidy() scopes: the caller disposes it. */
  view(offset: number, shape: Shape): Tensor {
    return keep(new Tensor(this.storage(offset, numel(shape)), shape));
  }

  /**
   * Moves `t` onto elements from `offset`: copies its values there (one copy kernel) and gives the
   * tensor that storage, keeping its identity.
   */
  adopt(t: Tensor, offset: number): void {
    if (t.dtype !== 'f32') throw new Error(`arena: ${t} is not f32`);
    const s = this.storage(offset, t.size);
    const dst = new Tensor(s, t.shape);
    s.retain();
    mapRaw('copy', 'x0', [{ t }], t.shape, 'f32', 0, 0, dst);
    dst.dispose();
    t.adoptStorage(s);
  }

  /** True when `t` lives in this arena. */
  holds(t: Tensor): boolean {
    return !t.disposed && t.buf.buffer === this.buf.buffer && t.buf.offset !== undefined;
  }

  /** Element offset of a tensor that lives in this arena. */
  offsetOf(t: Tensor): number {
    if (!this.holds(t)) throw new Error(`arena: ${t} is not in this arena`);
    return ((t.buf.offset ?? 0) - (this.buf.offset ?? 0)) / 4;
  }

  /** Drops the owner's reference (views keep the buffer until they go). */
  release(): void {
    if (--this.refs === 0) pool.release(this.buf);
  }
}
